"""The sockets' session middleware reads the session as Channels' does, and leaves each frame a
socket sends unwrapped (chat.socket_auth.SocketSessionMiddleware)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.sessions.backends.base import SessionBase

from chat.socket_auth import SocketSessionMiddleware


async def _call(scope_type: str) -> tuple[Any, Any, dict[str, Any]]:
    seen: dict[str, Any] = {}

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen["scope"], seen["send"] = scope, send

    async def send(message: dict[str, Any]) -> None:
        pass

    scope = {"type": scope_type, "cookies": {}, "headers": []}
    await SocketSessionMiddleware(inner)(scope, None, send)
    return send, seen["send"], seen["scope"]


@pytest.mark.django_db
async def test_a_socket_gets_its_session_and_the_servers_own_send():
    send, inner_send, scope = await _call("websocket")
    assert inner_send is send
    assert isinstance(scope["session"]._wrapped, SessionBase)


@pytest.mark.django_db
async def test_http_keeps_channels_session_saving_send():
    send, inner_send, scope = await _call("http")
    assert inner_send is not send  # Channels' wrapper, which saves a modified session
    assert isinstance(scope["session"]._wrapped, SessionBase)
