"""The WebSocket consumer: relays a conversation's events to one browser tab as htmx fragments.

Every delta carries the offset where its text starts. The consumer remembers how much of each
reply this tab has, so a frame that repeats text is trimmed and a gap (a missed frame, a
reconnect, a page that rendered before the reply existed) is mended by asking the worker for a
snapshot of the reply so far.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from . import events, fragments, selectors
from .models import Conversation, Message


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


@dataclass
class ReplyCursor:
    """How much of a streaming reply this tab shows; None while a snapshot is awaited."""

    content: int | None = 0
    reasoning: int = 0


class ConversationConsumer(DirectEventDispatch, AsyncWebsocketConsumer):
    conversation_id: uuid.UUID
    replies: dict[int, ReplyCursor]

    async def connect(self) -> None:
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        conversation = await selectors.aconversation_for_user(
            user=self.scope["user"], conversation_id=conversation_id
        )
        if conversation is None:
            await self.close()  # before accept: the handshake is refused with 403
            return
        self.conversation_id = conversation.id
        self.replies = {}
        await events.join_conversation(self.conversation_id, self.channel_name)
        await self.accept()
        for message_id in await selectors.active_reply_ids(conversation_id=self.conversation_id):
            await self._resync(message_id)

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "replies"):
            await events.leave_conversation(self.conversation_id, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page asks `{"resync": <message id>}` when a reply's element appears in it."""
        try:
            message_id = int(json.loads(text_data or "")["resync"])
        except (ValueError, KeyError, TypeError, OverflowError):
            return
        message = await selectors.amessage_in_conversation(
            conversation_id=self.conversation_id, message_id=message_id
        )
        if message is None:
            return
        if message.is_active:
            await self._resync(message_id)
        else:
            await self._send_message(message_id)

    # --- Conversation events ---------------------------------------------------------------

    async def message_started(self, event: dict[str, Any]) -> None:
        self.replies[event["message_id"]] = ReplyCursor()
        await self.send(text_data=fragments.status(event["message_id"], ""))

    async def message_delta(self, event: dict[str, Any]) -> None:
        message_id = event["message_id"]
        cursor = self.replies.get(message_id)
        if cursor is None:
            if event["content_offset"] or event["reasoning_offset"]:
                await self._resync(message_id)  # joined mid-stream without a snapshot
                return
            cursor = self.replies[message_id] = ReplyCursor()
        if cursor.content is None:
            return  # the awaited snapshot includes this text
        content = _unseen(event["content"], event["content_offset"], cursor.content)
        reasoning = _unseen(event["reasoning"], event["reasoning_offset"], cursor.reasoning)
        if content is None or reasoning is None:
            await self._resync(message_id)  # a frame went missing
            return
        cursor.content += len(content)
        cursor.reasoning += len(reasoning)
        frame = fragments.delta(message_id, content, reasoning, event["tool_calls"])
        if frame:
            await self.send(text_data=frame)

    async def message_snapshot(self, event: dict[str, Any]) -> None:
        message_id = event["message_id"]
        self.replies[message_id] = ReplyCursor(len(event["content"]), len(event["reasoning"]))
        await self.send(
            text_data=fragments.snapshot(
                message_id, event["content"], event["reasoning"], event["tool_calls"]
            )
        )

    async def message_status(self, event: dict[str, Any]) -> None:
        await self.send(text_data=fragments.status(event["message_id"], event["text"]))

    async def message_finished(self, event: dict[str, Any]) -> None:
        self.replies.pop(event["message_id"], None)
        await self._send_message(event["message_id"])

    async def messages_appended(self, event: dict[str, Any]) -> None:
        html = await _render_appended(self.conversation_id, event["message_ids"])
        if html:
            await self.send(text_data=html)

    async def conversation_updated(self, event: dict[str, Any]) -> None:
        html = await _render_title(self.conversation_id)
        if html:
            await self.send(text_data=html)

    # --- Helpers -------------------------------------------------------------------------------

    async def _resync(self, message_id: int) -> None:
        self.replies[message_id] = ReplyCursor(content=None)
        await events.snapshot_request(message_id, self.channel_name)

    async def _send_message(self, message_id: int) -> None:
        html = await _render_message(self.conversation_id, message_id)
        if html:
            await self.send(text_data=html)


def _unseen(text: str, offset: int, have: int) -> str | None:
    """The part of `text` (starting at `offset`) past the `have` characters already shown;
    None if there is a gap before it."""
    if offset > have:
        return None
    return text[have - offset :]


@database_sync_to_async
def _render_message(conversation_id: uuid.UUID, message_id: int) -> str:
    message = Message.objects.filter(conversation_id=conversation_id, pk=message_id).first()
    return fragments.message(message) if message is not None else ""


@database_sync_to_async
def _render_appended(conversation_id: uuid.UUID, message_ids: list[int]) -> str:
    messages = Message.objects.filter(conversation_id=conversation_id, pk__in=message_ids)
    return fragments.appended(list(messages.order_by("id")))


@database_sync_to_async
def _render_title(conversation_id: uuid.UUID) -> str:
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    return fragments.conversation_title(conversation) if conversation is not None else ""
