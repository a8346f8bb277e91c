"""The WebSocket consumer: relays a conversation's events to one browser tab as htmx fragments.

The worker renders each frame once, for every tab, and says where a tab must stand for it to
apply (a cursor: how much of each text the tab shows, and where its open tail starts). The
consumer remembers where this tab stands in each reply: a frame it already has (a snapshot
overtook it) is dropped, and a gap (a missed frame, a reconnect, a page that rendered before
the reply existed) is mended by asking the worker for a snapshot of the reply so far.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from . import events, fragments, selectors
from .dispatch import DirectEventDispatch
from .models import Conversation, Message
from .outages import SERVICE_ERRORS

logger = logging.getLogger(__name__)

Cursor = dict[str, list[int]]  # {"content": [length, settled], "reasoning": [...]}
START: Cursor = {"content": [0, 0], "reasoning": [0, 0]}
RESYNC_INTERVAL = 1.0  # seconds: a tab gets at most one snapshot of a reply this often


def _is_closed_socket(exc: Exception) -> bool:
    # Daphne passes on autobahn's `Disconnected` ("Attempt to send on a closed protocol").
    return type(exc).__name__ == "Disconnected"


def _covers(have: Cursor, wanted: Cursor) -> bool:
    """Whether a tab at `have` already shows everything a tab at `wanted` shows."""
    return all(
        have[text][0] >= wanted[text][0] and have[text][1] >= wanted[text][1] for text in wanted
    )


class ConversationConsumer(DirectEventDispatch, AsyncWebsocketConsumer):
    conversation_id: uuid.UUID
    # Where this tab stands in each reply that streams; None while a snapshot is awaited.
    replies: dict[int, Cursor | None]
    last_requested: dict[int, float]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SERVICE_ERRORS:
            # Redis or the database went away under this socket: chat.middleware closes it
            # (the page retries). Leave the group now, as `disconnect` will not run.
            if hasattr(self, "replies"):
                await events.leave_conversation(self.conversation_id, self.channel_name)
            raise

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
        self.last_requested = {}
        await events.join_conversation(self.conversation_id, self.channel_name)
        await self.accept()
        for message_id in await selectors.active_reply_ids(conversation_id=self.conversation_id):
            await self._resync(message_id)

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        """Send, unless the tab has just gone: a frame that meets a socket closing under it is
        normal (a closed tab, a reload), not an error; the disconnect follows."""
        try:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        except Exception as exc:
            if not _is_closed_socket(exc):
                raise
            logger.debug("conversation %s: socket closed before a frame", self.conversation_id)

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "replies"):
            await events.leave_conversation(self.conversation_id, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page asks `{"resync": <message id>}` when a reply's element appears in it."""
        try:
            message_id = int(json.loads(text_data or "")["resync"])
        except (ValueError, KeyError, TypeError, OverflowError):
            return
        # Requests beyond one a second per reply are dropped, not queued: the one before is
        # still being answered, and it brings the reply as it stands.
        now = time.monotonic()
        if now - self.last_requested.get(message_id, -RESYNC_INTERVAL) < RESYNC_INTERVAL:
            return
        self.last_requested[message_id] = now
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
        self.replies[event["message_id"]] = event["cursor"]
        await self.send(text_data=event["html"] + fragments.status(event["message_id"], ""))

    async def message_delta(self, event: dict[str, Any]) -> None:
        message_id = event["message_id"]
        if message_id not in self.replies:
            if event["cursor"] != START:
                await self._resync(message_id)  # joined mid-stream without a snapshot
                return
            self.replies[message_id] = START
        have = self.replies[message_id]
        if have is None:
            # The awaited snapshot includes this frame. Ask again if it is overdue: a request
            # can be lost (Redis restarted, and the worker has not rejoined its groups yet).
            if time.monotonic() - self.last_requested.get(message_id, 0) > RESYNC_INTERVAL:
                await self._resync(message_id)
            return
        if have == event["cursor"]:
            self.replies[message_id] = event["next"]
            if event["html"]:
                await self.send(text_data=event["html"])
        elif not _covers(have, event["next"]):
            await self._resync(message_id)  # a frame went missing

    async def message_snapshot(self, event: dict[str, Any]) -> None:
        self.replies[event["message_id"]] = event["cursor"]
        await self.send(text_data=event["html"])

    async def message_status(self, event: dict[str, Any]) -> None:
        await self.send(text_data=fragments.status(event["message_id"], event["text"]))

    async def message_finished(self, event: dict[str, Any]) -> None:
        have = self.replies.pop(event["message_id"], None)
        final = event.get("final")
        if final is not None and have == final["cursor"]:
            await self.send(text_data=final["html"])  # only what changes at the end
        else:
            await self._send_message(event["message_id"])

    async def messages_appended(self, event: dict[str, Any]) -> None:
        html, active = await _render_appended(self.conversation_id, event["message_ids"])
        await self._sent_whole(event["message_ids"], active)
        if html:
            await self.send(text_data=html)

    async def conversation_updated(self, event: dict[str, Any]) -> None:
        html = await _render_title(self.conversation_id)
        if html:
            await self.send(text_data=html)

    # --- Helpers -------------------------------------------------------------------------------

    async def _resync(self, message_id: int) -> None:
        self.replies[message_id] = None
        self.last_requested[message_id] = time.monotonic()
        await events.snapshot_request(message_id, self.channel_name)

    async def _send_message(self, message_id: int) -> None:
        html, active = await _render_message(self.conversation_id, message_id)
        await self._sent_whole([message_id], active)
        if html:
            await self.send(text_data=html)

    async def _sent_whole(self, message_ids: list[int], active: list[int]) -> None:
        """Whole messages go to the tab as they stand in the database: frames sent before no
        longer say where the tab stands (a finished one needs no more; the end of a reply
        that finished meanwhile must not be appended to it again). A reply still streaming
        is drawn from its last checkpoint: ask for a snapshot to go on from."""
        for message_id in message_ids:
            self.replies.pop(message_id, None)
        for message_id in active:
            await self._resync(message_id)


@database_sync_to_async
def _render_message(conversation_id: uuid.UUID, message_id: int) -> tuple[str, list[int]]:
    """The message's HTML, and its id if it is a reply still being generated."""
    message = Message.objects.filter(conversation_id=conversation_id, pk=message_id).first()
    if message is None:
        return "", []
    html = fragments.message(selectors.with_versions(message=message))
    return html, [message.pk] if message.is_active else []


@database_sync_to_async
def _render_appended(conversation_id: uuid.UUID, message_ids: list[int]) -> tuple[str, list[int]]:
    messages = list(
        Message.objects.filter(conversation_id=conversation_id, pk__in=message_ids).order_by("id")
    )
    return fragments.appended(messages), [m.pk for m in messages if m.is_active]


@database_sync_to_async
def _render_title(conversation_id: uuid.UUID) -> str:
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    return fragments.conversation_title(conversation) if conversation is not None else ""
