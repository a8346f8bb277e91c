"""Production settings: the README's environment passes `check --deploy`, no secret key means
no start, and a login through the HTTPS proxy passes the CSRF origin check."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.conf import global_settings
from django.core.management.utils import get_random_secret_key

ROOT = Path(__file__).resolve().parent.parent
APP_VARIABLES = ("DJANGO_", "DATABASE_", "REDIS_URL", "OPENAI_", "CHAT_", "CHANNEL_LAYER")


def readme_production_env() -> dict[str, str]:
    """The `.env` the README's "Running in production" section shows, with a real secret key."""
    section = (ROOT / "README.md").read_text().split("## Running in production", 1)[1]
    block = next(b for b in re.findall(r"```sh\n(.*?)```", section, re.S) if "DJANGO_" in b)
    env = dict(
        line.split("=", 1) for line in block.splitlines() if line and not line.startswith("#")
    )
    assert env["DJANGO_SECRET_KEY"] == "", "the README must not show a key to copy"
    env["DJANGO_SECRET_KEY"] = get_random_secret_key()
    return env


def run(
    args: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`args` in a child process with only `env` for the app's own variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(APP_VARIABLES)}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "chatsite.settings", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_check_deploy_reports_nothing_with_the_readmes_production_environment():
    env = readme_production_env()
    assert env["DJANGO_HTTPS"] == "true"
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "System check identified no issues" in result.stdout


def test_without_a_secret_key_and_debug_off_the_server_does_not_start():
    result = run(
        ["-m", "chatsite.serve", "-b", "127.0.0.1", "-p", "0", "chatsite.asgi:application"],
        {"DJANGO_ALLOWED_HOSTS": "chat.example.com"},
        timeout=60,  # a server that starts would run until this
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY is not set" in result.stderr


@pytest.mark.parametrize(
    "args", [["-m", "chatsite.serve", "chatsite.asgi:application"], ["manage.py", "check"]]
)
def test_an_unknown_event_loop_stops_the_process_with_the_choices(args):
    result = run(args, {"DJANGO_DEBUG": "true", "CHAT_EVENT_LOOP": "tokio"}, timeout=60)
    assert result.returncode != 0
    assert "CHAT_EVENT_LOOP must be one of uvloop, asyncio, not 'tokio'" in result.stderr


@pytest.fixture
def no_uvloop(tmp_path: Path) -> str:
    """A PYTHONPATH on which `import uvloop` fails, as where it has no build."""
    (tmp_path / "uvloop").mkdir()
    (tmp_path / "uvloop" / "__init__.py").write_text("raise ImportError('no uvloop build here')")
    return str(tmp_path)


def test_without_uvloop_the_default_runs_on_asyncios_loop_and_says_so(no_uvloop):
    result = run(["manage.py", "check"], {"DJANGO_DEBUG": "true", "PYTHONPATH": no_uvloop})
    assert result.returncode == 0, result.stderr
    assert "uvloop cannot be used here (ImportError: no uvloop build here)" in result.stderr
    assert "running on asyncio's event loop" in result.stderr


def test_without_uvloop_an_explicit_choice_of_it_stops_the_process(no_uvloop):
    env = {"DJANGO_DEBUG": "true", "PYTHONPATH": no_uvloop, "CHAT_EVENT_LOOP": "uvloop"}
    result = run(["-m", "chatsite.serve", "chatsite.asgi:application"], env, timeout=60)
    assert result.returncode != 0
    assert "CHAT_EVENT_LOOP=uvloop, but uvloop cannot be used here" in result.stderr


def test_debug_on_still_starts_without_a_secret_key():
    """`DJANGO_DEBUG=true ./scripts/run` needs no configuration."""
    result = run(["manage.py", "check"], {"DJANGO_DEBUG": "true"})
    assert result.returncode == 0, result.stderr


def settings_with(env: dict[str, str]) -> dict[str, Any]:
    """chatsite/settings.py evaluated with `env` as the app's whole environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(APP_VARIABLES)}
    with mock.patch.dict(os.environ, {**base, **env}, clear=True):
        return runpy.run_path(str(ROOT / "chatsite" / "settings.py"))


def test_csrf_trusted_origins_come_from_the_allowed_hosts_over_https():
    values = settings_with(
        {"DJANGO_SECRET_KEY": "k", "DJANGO_ALLOWED_HOSTS": "a.example, .b.example"}
    )
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://a.example", "https://*.b.example"]
    values = settings_with(
        {"DJANGO_SECRET_KEY": "k", "DJANGO_CSRF_TRUSTED_ORIGINS": "https://c.example:8443"}
    )
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://c.example:8443"]


def test_https_switches_on_the_proxy_header_redirect_and_hsts():
    values = settings_with({"DJANGO_SECRET_KEY": "k", "DJANGO_HTTPS": "true"})
    assert values["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert values["SECURE_SSL_REDIRECT"] and values["SECURE_HSTS_SECONDS"] >= 31_536_000
    assert values["SESSION_COOKIE_SECURE"] and values["CSRF_COOKIE_SECURE"]
    plain = settings_with({"DJANGO_SECRET_KEY": "k"})
    assert plain["SECURE_PROXY_SSL_HEADER"] is None and not plain["SECURE_SSL_REDIRECT"]
    assert plain["SECURE_HSTS_SECONDS"] == 0 and not plain["SESSION_COOKIE_SECURE"]


# What the login depends on; the rest of the test settings (database, apps) stays.
PROXY_AND_CSRF_SETTINGS = [
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
]


@pytest.mark.django_db
@pytest.mark.parametrize("secure", [False, True], ids=["nginx-to-daphne-http", "https"])
def test_a_login_through_the_https_proxy_passes_the_origin_check(settings, user, secure: bool):
    """Behind nginx daphne sees plain HTTP; X-Forwarded-Proto says the page was HTTPS."""
    from django.test import Client

    production = settings_with(readme_production_env())
    for name in PROXY_AND_CSRF_SETTINGS:
        setattr(settings, name, production.get(name, getattr(global_settings, name)))
    headers = {
        "HTTP_HOST": "chat.example.com",
        "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_ORIGIN": "https://chat.example.com",
    }
    client = Client(enforce_csrf_checks=True)
    page = client.get("/accounts/login/", secure=secure, **headers)
    assert page.status_code == 200
    response = client.post(
        "/accounts/login/",
        {
            "username": "alice",
            "password": "alice-password",
            "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
        },
        secure=secure,
        **headers,
    )
    assert response.status_code == 302, response.content.decode()[:500]
    assert client.session.get("_auth_user_id") == str(user.pk)


def test_password_reset_is_off_without_a_mail_server(client):
    from django.conf import settings

    assert not settings.PASSWORD_RESET_ENABLED
    assert client.get("/accounts/password_reset/").status_code == 404
    assert client.get("/accounts/login/").status_code == 200
