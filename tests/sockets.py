"""WebSocket communicators for consumer tests: through the same auth stack as the server, so the
socket has a real session (the consumer checks it again on every message it accepts)."""

from __future__ import annotations

from typing import Any

from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings

from chat.routing import websocket_urlpatterns
from chat.socket_auth import socket_auth_stack


def socket_for(conversation_id: Any, session_key: str) -> WebsocketCommunicator:
    """A tab's socket on a conversation, opened with the session cookie `session_key`."""
    return WebsocketCommunicator(
        socket_auth_stack(URLRouter(websocket_urlpatterns)),
        f"/ws/c/{conversation_id}/",
        headers=[(b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_key}".encode())],
    )


async def closed_with(comm: WebsocketCommunicator, timeout: float = 2.0) -> int | None:
    """The close code the server sent next (None: closed without one); fails on any frame."""
    output = await comm.receive_output(timeout)
    assert output["type"] == "websocket.close", output
    return output.get("code")
