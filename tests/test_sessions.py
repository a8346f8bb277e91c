"""chat.sessions: Django's database session stores, their read compiled, read what Django's read."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore as DjangoStore
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.sessions import cached_db, db

pytestmark = pytest.mark.django_db


def _saved(**data: object) -> str:
    store = DjangoStore()
    store.update(data)
    store.create()
    assert store.session_key
    return store.session_key


@pytest.mark.parametrize("store", [db.SessionStore, cached_db.SessionStore])
def test_a_session_reads_as_djangos_store_reads_it_in_one_query(store):
    key = _saved(user="7", note="é")
    cache.clear()  # cached_db: a miss, read from the database
    session = store(session_key=key)
    with CaptureQueriesContext(connection) as queries:
        assert dict(session.items()) == dict(DjangoStore(session_key=key).items())
    assert len(queries) == 2  # ours, then Django's own, for the comparison
    assert dict(session.items()) == {"user": "7", "note": "é"}
    assert session.session_key == key


@pytest.mark.parametrize("store", [db.SessionStore, cached_db.SessionStore])
@pytest.mark.parametrize("gone", ["expired", "unknown"])
def test_an_expired_or_unknown_session_is_empty_and_its_key_forgotten(store, gone):
    key = _saved(user="7")
    if gone == "expired":
        Session.objects.filter(pk=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    else:
        key = "x" * 32
    cache.clear()
    session = store(session_key=key)
    assert dict(session.items()) == {}
    assert session.session_key is None


@pytest.mark.django_db(transaction=True)
async def test_the_async_read_is_the_same():
    from asgiref.sync import sync_to_async

    key = await sync_to_async(_saved)(user="7")
    assert await db.SessionStore(session_key=key).aget("user") == "7"
    await Session.objects.filter(pk=key).aupdate(expire_date=timezone.now() - timedelta(seconds=1))
    expired = db.SessionStore(session_key=key)
    assert await expired.aget("user") is None and expired.session_key is None


def test_the_site_uses_them(settings):
    assert settings.SESSION_ENGINE in ("chat.sessions.db", "chat.sessions.cached_db")


@pytest.mark.parametrize("store", [db.SessionStore, cached_db.SessionStore])
def test_the_compiled_read_is_the_one_made(store, monkeypatch):
    import chat.sessions

    reads: list[str] = []
    compiled = chat.sessions._SESSION.instances
    monkeypatch.setattr(
        chat.sessions._SESSION,
        "instances",
        lambda **params: reads.append(params["key"]) or compiled(**params),
    )
    key = _saved(user="7")
    cache.clear()
    assert store(session_key=key).get("user") == "7" and reads == [key]


def test_a_store_of_another_model_reads_it_as_djangos(monkeypatch):
    """A subclass with a session model of its own is read as Django reads it."""
    import chat.sessions

    class Other(db.SessionStore):
        @classmethod
        def get_model_class(cls):
            return Session  # (the same table, under another class's name)

    monkeypatch.setattr(chat.sessions, "Session", type("Elsewhere", (), {}))
    reads: list[str] = []
    monkeypatch.setattr(chat.sessions._SESSION, "instances", lambda **params: reads.append("x"))
    made = Other()
    made["user"] = "7"
    made.create()
    assert Other(session_key=made.session_key).get("user") == "7" and reads == []
