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
