"""Whether the session a WebSocket was opened with still logs its user in.

A socket is authenticated once, at the handshake; it can stay open for days. A logout or a
deactivation closes it at once, another change to the user (a new password) has it check its
session at once (`chat.receivers`), and every message the socket accepts is checked again
here. What sends no signal, a session that expired or was deleted from the store, is caught
by each socket's own check every CHAT_SOCKET_SESSION_CHECK_SECONDS (`chat.consumers`).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware, InstanceSessionWrapper, SessionMiddleware
from django.conf import settings
from django.contrib.auth import aget_user
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.sessions.backends.db import SessionStore as DjangoDatabaseStore
from django.http import HttpRequest

from .sessions.db import SessionStore as DatabaseStore


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
    if issubclass(store, DjangoDatabaseStore):
        store = DatabaseStore
    request = HttpRequest()
    request.session = store(session_key=session_key)
    current = await aget_user(request)
    return current.is_authenticated and current.pk == user.pk


class SocketSessionMiddleware(SessionMiddleware):
    """Channels' `SessionMiddleware` without its wrapper around each message a socket sends.

    That wrapper saves a modified session, and sets its cookie, on `http.response.start`
    only, which a WebSocket never sends; for a socket it is a proxied attribute read and a
    method call on every frame of every reply, for nothing. The session is read as before.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            return await super().__call__(scope, receive, send)
        wrapper = InstanceSessionWrapper(scope, send)
        await wrapper.resolve_session()
        return await self.inner(wrapper.scope, receive, send)


def socket_auth_stack(inner: Any) -> Any:
    """Channels' `AuthMiddlewareStack` (cookies, session, user in the scope), with the session
    middleware above."""
    return CookieMiddleware(SocketSessionMiddleware(AuthMiddleware(inner)))
