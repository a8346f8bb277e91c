from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

pytest.register_assert_rewrite("tests.e2e.scenarios", "tests.live", "tests.db_writes")

from tests.fake_upstream import FakeUpstream  # noqa: E402
from tests.live import TEST_API_KEY, ServerProcess  # noqa: E402


@pytest.fixture(scope="session")
def fake_upstream_server() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture
def fake_upstream(fake_upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    fake_upstream_server.reset()
    yield fake_upstream_server
    fake_upstream_server.reset()


@pytest.fixture
def start_server(transactional_db: None, fake_upstream: FakeUpstream) -> Iterator[object]:
    """Start real server processes against the fake upstream: `start_server(**env)`."""
    started: list[ServerProcess] = []

    def start(*, worker: bool = False, port: int | None = None, **env: str) -> ServerProcess:
        base = {
            "OPENAI_BASE_URL": fake_upstream.base_url,
            "OPENAI_API_KEY": TEST_API_KEY,
            "CHAT_MODEL": "fake-model",
            "CHAT_RETRY_BASE_DELAY": "0.05",
            # Title requests would add upstream calls to every test; tests/e2e/test_page
            # switches them on where titles are under test.
            "CHAT_GENERATE_TITLES": "false",
            # One server process streams replies itself, on Redis too (where a separate
            # worker is the default); tests that start workers turn it off for their web
            # processes.
            "CHAT_EMBEDDED_WORKER": "false" if worker else "true",
        }
        server = ServerProcess({**base, **env}, worker=worker, port=port).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
    if os.environ.get("CHATSITE_SHOW_SERVER_LOGS"):
        for server in started:
            print(server.log_text())


@pytest.fixture(autouse=True)
async def close_thread_connections() -> AsyncIterator[None]:
    """Async tests reach the ORM on asgiref's executor thread; close its connections after
    each test so the test database can be dropped (PostgreSQL refuses while sessions remain)."""
    yield
    from asgiref.sync import sync_to_async
    from django.db import connections

    await sync_to_async(connections.close_all)()


@pytest.fixture(autouse=True)
async def fresh_channel_layer() -> AsyncIterator[None]:
    """Each test runs on an event loop of its own. A Redis layer remembers the loop a receive
    started on (channels_redis refuses a second loop), and a socket a test leaves open takes its
    receive down with that loop: the next test would meet "Two event loops are trying to
    receive()". Each test gets a new layer; the in-process layer is emptied the same way."""
    yield
    from channels.layers import channel_layers

    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def no_sockets_counted() -> Iterator[None]:
    """A socket a test leaves open (its consumer never ends) stays counted among its user's
    (`chat.consumers.OpenSockets`); user ids repeat from test to test."""
    yield
    from chat.consumers import _open_sockets

    _open_sockets.counts.clear()


@pytest.fixture(autouse=True)
def fresh_local_cache() -> Iterator[None]:
    """The local-memory cache lives as long as the test process: one test's failed logins
    (counted there by django-axes) must not lock out the next. A Redis cache is left alone, as
    the channel layer shares its database; tests/test_login_throttle.py resets its own counters.
    """
    yield
    from django.core.cache import caches
    from django.core.cache.backends.locmem import LocMemCache

    if isinstance(caches["default"], LocMemCache):
        caches["default"].clear()


@pytest.fixture
def user(django_user_model: type) -> object:
    return django_user_model.objects.create_user("alice", password="alice-password")


@pytest.fixture
def other_user(django_user_model: type) -> object:
    return django_user_model.objects.create_user("mallory", password="mallory-password")


@pytest.fixture
def alice_session(user: object) -> str:
    """A logged-in session for `user`, made before the test's event loop runs."""
    from tests.live import session_cookie_for

    return session_cookie_for(user)


def services_missing() -> str | None:
    """Why the Redis + PostgreSQL tests cannot run here, or None."""
    from django.conf import settings

    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return (
            "needs DATABASE_URL=postgres://... (scripts/test runs them with the local PostgreSQL)"
        )
    if not settings.REDIS_URL:
        return "needs REDIS_URL=redis://... (scripts/test runs them with the local Redis)"
    import psycopg
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"Redis at {settings.REDIS_URL} is not reachable: {exc}"
    db = settings.DATABASES["default"]
    try:
        psycopg.connect(
            host=db.get("HOST") or "127.0.0.1",
            port=db.get("PORT") or 5432,
            user=db.get("USER") or "postgres",
            password=db.get("PASSWORD") or None,
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except psycopg.Error as exc:
        return f"PostgreSQL is not reachable: {exc}"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("services"):
        reason = services_missing()
        if reason:
            if os.environ.get("REQUIRE_SERVICES") == "1":
                pytest.fail(f"REQUIRE_SERVICES=1 but {reason}", pytrace=False)
            pytest.skip(reason)


@pytest.fixture
def redis_server() -> Iterator[object]:
    """A `redis-server` of the test's own on a free port, to kill and start again
    (tests.faults.RedisServer); never the machine's shared one."""
    from tests.faults import RedisServer

    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def flushed_redis() -> None:
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture
def alice_client(user: object) -> object:
    """A Django test client logged in as `user`."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def sent_to_worker(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replies handed to the streaming consumer, recorded instead of sent (no worker runs)."""
    sent: list[int] = []
    monkeypatch.setattr("chat.events.request_generation", sent.append)
    monkeypatch.setattr("chat.events.request_cancel", lambda message_id: None)
    return sent
