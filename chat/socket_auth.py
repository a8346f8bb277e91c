"""Whether the session a WebSocket was opened with still logs its user in.

A socket is authenticated once, at the handshake; it can stay open for days. A logout or a
deactivation closes it at once (`chat.receivers`), and every message the socket accepts is
checked again here, which also covers what sends no signal: a session that expired or was
deleted, a password changed on another device.
"""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.contrib.auth import aget_user
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.sessions.backends.db import SessionStore as DatabaseStore
from django.http import HttpRequest


async def session_is_current(
    *, session_key: str | None, user: AbstractBaseUser | AnonymousUser
) -> bool:
    """Whether `session_key` still exists in the session store and logs in `user` (Django's
    own rules: the user exists, is active, and the password is the one the session saw)."""
    if not session_key or not user.is_authenticated:
        return False
    # A store of our own: the socket's `scope["session"]` caches what it read at the handshake.
    # A store with a cache in front of the database (cached_db) is read from the database:
    # a session deleted there (expired and cleared, deleted by hand) ends the socket at once.
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if issubclass(store, DatabaseStore):
        store = DatabaseStore
    request = HttpRequest()
    request.session = store(session_key=session_key)
    current = await aget_user(request)
    return current.is_authenticated and current.pk == user.pk
