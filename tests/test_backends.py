"""chat.backends: a logged-in session's user is read by the session user backend, by Django's
rules; passwords are still checked by Django's ModelBackend, once."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chat.backends import MODEL_BACKEND, SESSION_USER_BACKEND

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
START = reverse("chat:start")


@pytest.fixture(autouse=True)
def fresh_login_counters() -> Any:
    from axes.utils import reset

    reset(username="alice")
    yield
    reset(username="alice")


def _logged_in(client: Client) -> bool:
    response = client.get(START)
    return response.status_code == 200


def test_a_login_is_read_back_by_the_session_user_backend(user):
    client = Client()
    response = client.post(LOGIN, {"username": "alice", "password": "alice-password"})
    assert response.status_code == 302
    assert client.session[BACKEND_SESSION_KEY] == SESSION_USER_BACKEND
    with CaptureQueriesContext(connection) as queries:
        assert _logged_in(client)
    users = [q["sql"] for q in queries.captured_queries if 'FROM "auth_user"' in q["sql"]]
    assert len(users) == 1


def test_a_session_made_by_djangos_backend_stays_logged_in(user):
    client = Client()
    client.force_login(user)
    session = client.session
    session[BACKEND_SESSION_KEY] = MODEL_BACKEND  # as sessions made before this backend
    session.save()
    assert _logged_in(client)
    assert client.session[BACKEND_SESSION_KEY] == MODEL_BACKEND


def test_a_wrong_password_is_checked_once(user, monkeypatch):
    checked: list[str] = []
    original = User.check_password

    def check_password(self: User, raw_password: str | None) -> bool:
        checked.append(self.username)
        return original(self, raw_password)

    monkeypatch.setattr(User, "check_password", check_password)
    client = Client()
    response = client.post(LOGIN, {"username": "alice", "password": "wrong"})
    assert response.status_code == 200  # the form again
    assert checked == ["alice"]
    assert not _logged_in(client)


def test_a_deactivated_user_or_a_changed_password_logs_the_session_out(user):
    for change in ("deactivate", "password"):
        client = Client()
        client.force_login(user)
        assert client.session[BACKEND_SESSION_KEY] == SESSION_USER_BACKEND
        assert _logged_in(client)
        if change == "deactivate":
            User.objects.filter(pk=user.pk).update(is_active=False)
        else:
            user.set_password("a-new-password")
            user.save()
        assert not _logged_in(client), change
        User.objects.filter(pk=user.pk).update(is_active=True)
        user.refresh_from_db()


def test_the_user_is_djangos(user):
    from chat.backends import SessionUserBackend

    read = SessionUserBackend().get_user(user.pk)
    assert read == user
    for field in User._meta.concrete_fields:
        assert getattr(read, field.attname) == getattr(user, field.attname), field.name
    assert SessionUserBackend().get_user(user.pk + 1000) is None
    assert (
        SessionUserBackend().authenticate(None, username="alice", password="alice-password") is None
    )
