"""Event dispatch shared by the app's two consumers (the WebSocket one and the streaming one)."""

from __future__ import annotations

from typing import Any

from channels.consumer import get_handler_name


class DirectEventDispatch:
    """Handle channel-layer events without Channels' per-event connection cleanup.

    `AsyncConsumer.dispatch` runs `aclose_old_connections()` (a hop to Django's one shared
    sync thread) before every handler. For a delta that touches no database it only queues
    the delta behind other database work; measured at 200 streams it was the largest cost
    in the relay. Handlers here that do use the database go through `database_sync_to_async`,
    which closes old connections itself. WebSocket protocol events keep the default.
    """

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message["type"].startswith("websocket."):
            await super().dispatch(message)  # type: ignore[misc]
            return
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
