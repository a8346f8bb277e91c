"""Login throttling (django-axes): failures are counted per username and per IP address, and a
lockout holds even against the right password until the cool-off ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"
# Documentation addresses (RFC 5737): no other test logs in from these.
IPS = [f"203.0.113.{n}" for n in range(1, 20)]
USERNAMES = ["throttled", "someone-else", "admin-throttled"]


@pytest.fixture(autouse=True)
def fresh_counters() -> Iterator[None]:
    """Counters live in the cache, which may be Redis and outlive the test run."""
    from axes.utils import reset

    def clear() -> None:
        for ip in IPS:
            reset(ip=ip)
        for username in USERNAMES:
            reset(username=username)

    clear()
    yield
    clear()


@pytest.fixture
def throttled(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("throttled", password="right-password")


def log_in(username: str, password: str, *, ip: str, path: str = LOGIN) -> tuple[Client, Any]:
    client = Client()
    response = client.post(path, {"username": username, "password": password}, REMOTE_ADDR=ip)
    return client, response


def is_locked_out(response: Any) -> bool:
    return response.status_code == 429 and "Too many failed attempts" in response.content.decode()


def test_the_limit_allows_a_few_typos():
    limit = django_settings.AXES_FAILURE_LIMIT
    assert limit >= 5
    for _ in range(limit - 1):
        _, response = log_in("throttled", "typo", ip=IPS[0])
        assert response.status_code == 200
        assert "didn't match" in response.content.decode()


def test_repeated_failures_lock_out_even_the_right_password(throttled: Any):
    for _ in range(django_settings.AXES_FAILURE_LIMIT):
        _, response = log_in("throttled", "guess", ip=IPS[0])
    assert is_locked_out(response)
    assert "wait 15 minutes" in response.content.decode()
    client, response = log_in("throttled", "right-password", ip=IPS[0])
    assert is_locked_out(response)
    assert "_auth_user_id" not in client.session


def test_failures_count_per_username_across_addresses(throttled: Any):
    for ip in IPS[: django_settings.AXES_FAILURE_LIMIT]:
        log_in("throttled", "guess", ip=ip)
    _, response = log_in("throttled", "right-password", ip=IPS[-1])
    assert is_locked_out(response)


def test_failures_count_per_address_across_usernames(throttled: Any):
    for n in range(django_settings.AXES_FAILURE_LIMIT):
        log_in(f"nobody-{n}", "guess", ip=IPS[0])
    _, response = log_in("throttled", "right-password", ip=IPS[0])
    assert is_locked_out(response)
    # It says so: the account was never tried ("for your account's safety" said it was)
    assert "from this network" in response.content.decode()
    # Another address and an untouched username still get in.
    client, response = log_in("throttled", "right-password", ip=IPS[1])
    assert response.status_code == 302 and "_auth_user_id" in client.session


def test_the_admin_login_is_throttled_too(django_user_model: Any):
    django_user_model.objects.create_superuser("admin-throttled", password="right-password")
    for _ in range(django_settings.AXES_FAILURE_LIMIT):
        _, response = log_in("admin-throttled", "guess", ip=IPS[2], path=ADMIN_LOGIN)
    assert is_locked_out(response)
    _, response = log_in("admin-throttled", "right-password", ip=IPS[3], path=ADMIN_LOGIN)
    assert is_locked_out(response)


def test_the_lockout_ends_after_the_cool_off(throttled: Any, settings: Any):
    settings.AXES_COOLOFF_TIME = timedelta(seconds=1)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in("throttled", "guess", ip=IPS[4])
    _, response = log_in("throttled", "right-password", ip=IPS[4])
    assert is_locked_out(response)
    time.sleep(1.5)
    client, response = log_in("throttled", "right-password", ip=IPS[4])
    assert response.status_code == 302 and "_auth_user_id" in client.session


def test_forced_logins_used_by_the_other_tests_still_work(alice_client: Client):
    assert alice_client.get("/").status_code == 200
