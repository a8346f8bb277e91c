"""Settings for chatsite: every value that varies between machines comes from the environment.

Each variable read here is listed, with its default, in `.env.example`.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value.strip() else default


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def env_list(name: str, default: str = "") -> list[str]:
    value = os.environ.get(name, "")
    return [
        item.strip() for item in (value if value.strip() else default).split(",") if item.strip()
    ]


DEBUG = env_bool("DJANGO_DEBUG", default=False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        # No fallback: a key anyone can read in this file would let them forge sessions.
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it to a long random value, e.g. the output of "
            "`python -c 'from django.core.management.utils import get_random_secret_key; "
            "print(get_random_secret_key())'`, or set DJANGO_DEBUG=true for development."
        )
    SECRET_KEY = "django-insecure-dev-only-set-DJANGO_SECRET_KEY"  # DEBUG on: a laptop
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")

INSTALLED_APPS = [
    "daphne",
    "chat",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    "csp",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # A page that meets the database or Redis away answers 503 at once (chat/middleware.py).
    "chat.middleware.ServiceUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # No cache keeps a page: Back asks for it again (chat/middleware.py).
    "chat.middleware.PagesNotKeptMiddleware",
    # django-csp's, with the policy's text built once (chat/middleware.py).
    "chat.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a refused login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "chatsite.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "chat.context_processors.upstream",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "chatsite.asgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=0,
        # Each connection is checked as it is taken from the pool (chatsite/postgresql: one
        # used in the last 2 s by a look at its socket, a round trip only if the server sent
        # something; an older one by a round trip): one that broke while the database
        # restarted is replaced before any query fails on it.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Persistent connections: each ORM call of a consumer or a reply (and each request) opened
    # and closed its own before, about a tenth of a turn's CPU. Django keeps one per thread
    # and async context; PostgreSQL has its pool instead (which refuses CONN_MAX_AGE).
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 600)
    # WAL lets the web process read while the streaming consumer writes; IMMEDIATE
    # transactions take the write lock up front instead of failing on upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file, not memory: the end-to-end tests share the test database with the server
    # process they start.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("CHATSITE_TEST_SQLITE_NAME") or str(BASE_DIR / "test-db.sqlite3")
    }

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend, with a cheaper and quicker check of each connection taken from the
    # pool.
    DATABASES["default"]["ENGINE"] = "chatsite.postgresql"
    # A pool: under ASGI each request's sync code runs in its own thread, and 200 at once
    # would exceed PostgreSQL's connection limit.
    # While the database is away a request waits DATABASE_POOL_TIMEOUT seconds for a
    # connection, then answers 503 (chat/middleware.py); a connection attempt gives up after
    # DATABASE_CONNECT_TIMEOUT (2 at least: libpq's minimum). While the pool goes on serving
    # others (load, not an outage) it waits on, up to DATABASE_POOL_BUSY_TIMEOUT in all.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": env_int("DATABASE_POOL_SIZE", 20),
        "timeout": env_float("DATABASE_POOL_TIMEOUT", 1.0),
        "busy_timeout": env_float("DATABASE_POOL_BUSY_TIMEOUT", 10.0),
    }
    DATABASES["default"]["OPTIONS"]["connect_timeout"] = env_int("DATABASE_CONNECT_TIMEOUT", 2)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis, riding out a Redis restart (chat/streaming/channel_layers.py).
            "BACKEND": "chat.streaming.channel_layers.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 made socket_timeout default to 5 s, which breaks channels-redis's
                # blocking 5 s BZPOPMIN (channels_redis issue #422): set it above that.
                "hosts": [
                    {"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 5}
                ],
                # Deltas are coalesced to ~33 frames/s per stream, so a browser that stops
                # reading for a few seconds still fits; one that falls further behind is
                # resynchronised from a snapshot instead of losing text silently.
                "capacity": env_int("CHANNEL_LAYER_CAPACITY", 1000),
                "expiry": 60,
                "group_expiry": 86400,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.streaming.channel_layers.InProcessChannelLayer",
            "CONFIG": {"capacity": env_int("CHANNEL_LAYER_CAPACITY", 1000), "expiry": 60},
        }
    }

# One process keeps its cache in memory; several (with Redis) share it through Redis, so
# what one counts (failed logins, the model list) all see.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "chatsite",
            # One pool for the process, not one (and a new connection) per request.
            "OPTIONS": {"pool_class": "chatsite.redis_cache.SharedConnectionPool"},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Without Redis (one process) sessions are read from that process's memory, written through
# to the database: a page skips the session query (logout and expiry reach both). With Redis
# they stay in the database alone: Django's cached sessions write the cache unguarded on a
# miss, and pages must still show while Redis is away. Sockets check their session against
# the database either way (chat/socket_auth.py). Django's stores, with their read compiled
# (chat/sessions).
SESSION_ENGINE = "chat.sessions.db" if REDIS_URL else "chat.sessions.cached_db"

# Login throttling (django-axes) on every login form, the admin's included: after
# DJANGO_LOGIN_FAILURE_LIMIT failures for one username, or from one address, logins for it
# are refused, even with the right password, for DJANGO_LOGIN_COOLOFF_MINUTES. The address
# is REMOTE_ADDR, which daphne --proxy-headers takes from nginx's X-Forwarded-For.
# Django's ModelBackend checks passwords; a logged-in session's user is read on every request
# by chat.backends.SessionUserBackend (the same rules, a query compiled once).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "chat.backends.SessionUserBackend",
]
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_FAILURE_LIMIT = env_int("DJANGO_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("DJANGO_LOGIN_COOLOFF_MINUTES", 15.0))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
# A success does not reset the counts: an attacker with an account of their own could otherwise
# clear their address's count between guesses at other accounts. Counts expire with the cool-off.
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The cache handler keeps no rows, so the admin's attempt pages would stay empty.
AXES_ENABLE_ADMIN = False
# axes.W001 warns that a local-memory cache is not shared between processes: without Redis
# chatsite runs as one process, which sees every attempt.
SILENCED_SYSTEM_CHECKS = [] if REDIS_URL else ["axes.W001"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:start"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# HTTPS, as served by deploy/nginx.conf: TLS ends at nginx, which tells daphne the scheme in
# X-Forwarded-Proto. DJANGO_HTTPS switches on everything below; each has its own override.
# (DJANGO_SECURE_COOKIES alone, the older switch, still means HTTPS.)
HTTPS = not DEBUG and env_bool("DJANGO_HTTPS", default=env_bool("DJANGO_SECURE_COOKIES"))
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", default=HTTPS)
# Trust X-Forwarded-Proto only behind a proxy that always sets it (nginx's proxy_set_header
# replaces a client's own); otherwise any client could claim HTTPS.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https")
    if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=HTTPS)
    else None
)
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", default=HTTPS)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", default=HTTPS)
# Pages (and sockets, chatsite/websocket_origin.py) posted from these origins are trusted besides
# the request's own scheme and host: by default each allowed host over HTTPS, so a form still
# works if a proxy in front forgets X-Forwarded-Proto. A leading dot allows subdomains.
CSRF_TRUSTED_ORIGINS = env_list(
    "DJANGO_CSRF_TRUSTED_ORIGINS",
    ",".join(
        f"https://{'*' if host.startswith('.') else ''}{host}"
        for host in ALLOWED_HOSTS
        if host != "*"
    ),
)

# Content Security Policy: our own scripts and styles only, no inline code, no images or
# connections to other origins (a model reply can never load a tracking pixel).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- The model upstream -------------------------------------------------------------------
# With neither OPENAI_BASE_URL nor OPENAI_API_KEY set, the built-in demo upstream answers.
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL", "").rstrip("/")
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY", "")
if OPENAI_API_KEY and not OPENAI_BASE_URL:
    OPENAI_BASE_URL = "https://api.openai.com/v1"
CHAT_DEMO_MODE = not OPENAI_BASE_URL and not OPENAI_API_KEY
CHAT_MODEL = os.environ.get("CHAT_MODEL", "") or ("demo" if CHAT_DEMO_MODE else "gpt-4o-mini")
# Models offered per conversation; empty: ask the upstream's /models (cached for 10 minutes).
CHAT_MODELS = [m.strip() for m in os.environ.get("CHAT_MODELS", "").split(",") if m.strip()]
# A short title is generated by the model after the first exchange.
CHAT_GENERATE_TITLES = env_bool("CHAT_GENERATE_TITLES", default=True)
# Demo upstream speed in tokens per second (a range, like a real model varies).
CHAT_DEMO_TOKENS_PER_SECOND = (
    env_float("CHAT_DEMO_MIN_TPS", 30.0),
    env_float("CHAT_DEMO_MAX_TPS", 60.0),
)

# Timeouts for the upstream, in seconds: connect, the longest gap between two chunks, and a
# deadline for the whole reply.
CHAT_CONNECT_TIMEOUT = env_float("CHAT_CONNECT_TIMEOUT", 10.0)
CHAT_IDLE_TIMEOUT = env_float("CHAT_IDLE_TIMEOUT", 60.0)
CHAT_TOTAL_TIMEOUT = env_float("CHAT_TOTAL_TIMEOUT", 600.0)
CHAT_MAX_RETRIES = env_int("CHAT_MAX_RETRIES", 3)
CHAT_RETRY_BASE_DELAY = env_float("CHAT_RETRY_BASE_DELAY", 0.5)
CHAT_RETRY_MAX_DELAY = env_float("CHAT_RETRY_MAX_DELAY", 20.0)
CHAT_MAX_TOKENS = env_int("CHAT_MAX_TOKENS", 0) or None
# A reply (answer and reasoning together) stops at this many characters: the upstream is no
# longer read, and the reply is saved complete with a notice. Its HTML must stay something a
# page can load; max_tokens is the upstream's to honour, this is ours.
CHAT_MAX_REPLY_CHARS = env_int("CHAT_MAX_REPLY_CHARS", 200_000)
# The conversation sent with each request stops at about this many characters (about 100,000
# tokens): the oldest turns are left out, the system prompt and the last turn always go. A
# long conversation keeps working, and one user cannot make each request ever larger (0: all).
CHAT_MAX_PROMPT_CHARS = env_int("CHAT_MAX_PROMPT_CHARS", 400_000)

# Mail, for password reset only: without a mail server the reset pages are not served.
EMAIL_HOST = os.environ.get("DJANGO_EMAIL_HOST", "")
EMAIL_PORT = env_int("DJANGO_EMAIL_PORT", 587)
EMAIL_HOST_USER = os.environ.get("DJANGO_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("DJANGO_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = env_bool("DJANGO_EMAIL_USE_TLS", default=True)
DEFAULT_FROM_EMAIL = os.environ.get("DJANGO_DEFAULT_FROM_EMAIL", "chatsite@localhost")
PASSWORD_RESET_ENABLED = bool(EMAIL_HOST)

# Fair limits per user (0: none). A user or group can be given other limits in the admin
# (Usage limits). Counters live in the cache: per process without Redis, shared with it.
CHAT_LIMIT_CONCURRENT_REPLIES = env_int("CHAT_LIMIT_CONCURRENT_REPLIES", 3)
CHAT_LIMIT_MESSAGES_PER_MINUTE = env_int("CHAT_LIMIT_MESSAGES_PER_MINUTE", 20)
CHAT_LIMIT_TOKENS_PER_DAY = env_int("CHAT_LIMIT_TOKENS_PER_DAY", 500_000)
CHAT_LIMIT_CONVERSATIONS_PER_MINUTE = env_int("CHAT_LIMIT_CONVERSATIONS_PER_MINUTE", 10)

# How many generations one streaming consumer process runs at the same time.
CHAT_MAX_CONCURRENT_GENERATIONS = env_int("CHAT_MAX_CONCURRENT_GENERATIONS", 100)
# An open WebSocket checks its session again at least this often (seconds, with jitter), for
# what sends no signal: a session that expired, or was deleted from the store.
CHAT_SOCKET_SESSION_CHECK_SECONDS = env_float("CHAT_SOCKET_SESSION_CHECK_SECONDS", 300.0)
# Sockets one user may have open in a process (a tab has one; 0: no limit).
CHAT_SOCKETS_PER_USER = env_int("CHAT_SOCKETS_PER_USER", 50)
# Deltas are coalesced: the first goes at once, then at most one frame per window.
CHAT_COALESCE_SECONDS = env_float("CHAT_COALESCE_MS", 30.0) / 1000.0
# While the process is behind (its event loop late) the window widens, up to this: fewer,
# larger frames cost less. At or below CHAT_COALESCE_MS the window stays fixed.
CHAT_COALESCE_MAX_SECONDS = env_float("CHAT_COALESCE_MAX_MS", 120.0) / 1000.0
# Partial text is written to the database at most this often while a reply streams.
CHAT_CHECKPOINT_SECONDS = env_float("CHAT_CHECKPOINT_SECONDS", 2.0)
# A streaming reply whose worker has not renewed its lease for this long is interrupted.
CHAT_LEASE_SECONDS = env_float("CHAT_LEASE_SECONDS", 15.0)
# A worker of this machine whose process has ended gives up its leases at once, not when they
# lapse (chat.streaming.liveness). Off for machines restored from one memory snapshot.
CHAT_DETECT_DEAD_WORKERS = env_bool("CHAT_DETECT_DEAD_WORKERS", default=True)
# A pending reply no worker has claimed after this long is offered to the workers again.
CHAT_REQUEUE_SECONDS = env_float("CHAT_REQUEUE_SECONDS", 60.0)
# On SIGTERM a worker waits this long for replies in flight before saving them interrupted
# (with all their text); one with no text yet goes back to the queue for another worker.
CHAT_SHUTDOWN_GRACE_SECONDS = env_float("CHAT_SHUTDOWN_GRACE_SECONDS", 0.0)
# A reply rides out Redis being away this long (its frames are skipped, tabs catch up when
# their socket is back); past it, the reply ends interrupted with all its text.
CHAT_REDIS_OUTAGE_SECONDS = env_float("CHAT_REDIS_OUTAGE_SECONDS", 10.0)
# A finished reply waits this long in memory for the database to come back and save it.
CHAT_DATABASE_OUTAGE_SECONDS = env_float("CHAT_DATABASE_OUTAGE_SECONDS", 60.0)
# The web process runs the streaming consumer too: it generates the replies it is asked for
# (with Redis, their frames then reach its own sockets without crossing Redis, and it takes
# other replies off the shared channel while it has free slots). false: it only serves, and
# `runworker chat-stream` processes generate every reply.
CHAT_EMBEDDED_WORKER = env_bool("CHAT_EMBEDDED_WORKER", default=True)
CHAT_STREAM_CHANNEL = "chat-stream"
# Serve /static/ from the ASGI server itself (development and tests; DEBUG implies it).
CHAT_SERVE_STATIC = env_bool("CHAT_SERVE_STATIC", default=False)
CHAT_TOOLS_ENABLED = env_bool("CHAT_TOOLS_ENABLED", default=False)
CHAT_MAX_TOOL_ROUNDS = env_int("CHAT_MAX_TOOL_ROUNDS", 4)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "chat": {
            "handlers": ["console"],
            "level": os.environ.get("CHAT_LOG_LEVEL", "INFO"),
            "propagate": False,
        },
        # The development server's request log, once (not again through Django's handler).
        "django.channels.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # httpx logs every request URL at INFO; keep it quiet so nothing sensitive leaks.
        "httpx": {"level": "WARNING"},
        # The pool logs each failed connection attempt while the database is away; chat.outages
        # logs the outage once.
        "psycopg.pool": {"level": "ERROR"},
        "httpcore": {"level": "WARNING"},
    },
}
