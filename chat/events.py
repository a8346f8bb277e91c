"""Real-time events: the one place that names groups and sends on the channel layer.

Conversation group (every open WebSocket of a conversation listens):
    message.started   {message_id, cursor, html, status}  a worker took the reply; html
                                                     draws the text it starts from (a
                                                     continuation's), status its status line
                                                     ("Waiting for the model…" till text comes;
                                                     None: as the page has it)
    message.delta     {message_id, cursor, next, html}  one coalesced frame, rendered once by
                                                     the worker; it applies on a tab that stands
                                                     at `cursor` and leaves it at `next`
                                                     (sent with the layer's `group_send_frame`:
                                                     a tab that misses one asks for a snapshot)
    message.status    {message_id, text}             e.g. "Retrying in 2 s"
    message.finished  {message_id, final}            saved. `final` {cursor, html} ends the reply
                                                     on a tab at `cursor`; any other tab (or no
                                                     `final`) renders it from the database
    messages.appended {message_ids, after, html, active}    new messages (a turn, tool results, a
                                                     follow-up) after the message `after`; html
                                                     draws them once for every tab, `active` the
                                                     replies still generated (html None: each
                                                     tab reads them itself)
    conversation.updated {html}                      title changed; html draws it (None: each
                                                     tab reads the conversation itself)
    path.changed      {after, not_tab, stamp}        the path shown changed after `after`: each
                                                     tab but `not_tab` draws it anew (a process
                                                     draws it once per `stamp`)
    conversation.deleted {}                          deleted (in another tab, or by staff): its
                                                     sockets close, and their tabs say so
Generation group (the worker that streams one reply listens):
    generation.snapshot_request {message_id, reply_channel}  send the text so far there
    generation.cancel {message_id}                   stop now and save what there is
User group (every open WebSocket of a user listens):
    session.closed    {session_key}                  a logout ended this session: its sockets
                                                     close
    user.closed       {}                             the user was deactivated: all close
    user.changed      {}                             the user changed (a new password): each
                                                     checks that its session still logs in
    conversations.changed {not_tab, not_conversation}  the user's list changed (a conversation
                                                     new, renamed, pinned, archived or deleted):
                                                     each tab draws its sidebar's list again,
                                                     but `not_tab` (it asked: it draws its own)
                                                     and those on `not_conversation` (their own
                                                     event draws it: a rename, a deletion). Not
                                                     for a title the model wrote, nor a message
                                                     sent: once a turn, each would tell every
                                                     tab of the user
Sent to one WebSocket:
    message.snapshot  {message_id, cursor, html}     the reply as it stands, and where it stands

A cursor is {"content": [length, settled], "reasoning": [length, settled]}: how much text a tab
shows and where its open tail starts (offsets in the progressive renderer's text).

While Redis is away the channel layer raises `ChannelLayerAway` (chat.outages). Every tab's
socket closes then, and the page catches up from a snapshot or the database when it is back,
so what tabs would have been sent meanwhile is not needed: frames and notices are skipped, and
the events that end or add something are retried until Redis has been away for
CHAT_REDIS_OUTAGE_SECONDS. Only what a WebSocket consumer or a view must know failed raises:
joining a conversation, asking for a snapshot, Stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from . import outages
from .outages import ChannelLayerAway

logger = logging.getLogger(__name__)

Cursor = dict[str, list[int]]


def conversation_group(conversation_id: uuid.UUID | str) -> str:
    # Every frame of a reply is sent to this group: a UUID is not parsed again.
    if isinstance(conversation_id, uuid.UUID):
        return f"conversation.{conversation_id.hex}"
    return f"conversation.{uuid.UUID(str(conversation_id)).hex}"


def generation_group(message_id: int) -> str:
    return f"generation.{message_id}"


def user_group(user_id: int | str) -> str:
    return f"user.{int(user_id)}"


def _layer() -> Any:
    return get_channel_layer()


async def channel_layer_reachable() -> None:
    """Return once the channel layer answers (at once unless Redis is away)."""
    reachable = getattr(_layer(), "reachable", None)
    if reachable is not None:
        await reachable()


async def _skipped_while_away(send: Awaitable[None]) -> None:
    try:
        await send
    except ChannelLayerAway:
        pass


async def _retried_while_away(send: Callable[[], Awaitable[None]]) -> None:
    """Send, retrying while Redis is away, until it has been away for the outage limit; then
    drop the event (tabs read the database when their socket is back)."""
    while True:
        try:
            return await send()
        except ChannelLayerAway:
            remaining = settings.CHAT_REDIS_OUTAGE_SECONDS - outages.redis.away_for()
            if remaining <= 0:
                logger.debug("an event was dropped while Redis was away")
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await channel_layer_reachable()


# --- From synchronous code (views and services) ---------------------------------------------


def request_generation(message_id: int) -> None:
    """Hand a pending reply to the streaming consumer. Call after the reply is committed.

    A process that runs the streaming consumer itself (CHAT_EMBEDDED_WORKER) starts the reply
    at once if it has a free slot: the tab that asked is most likely connected to this same
    process, so its frames then reach it without crossing Redis. Otherwise the reply goes on
    the shared channel for any worker. (While Redis is away it stays pending: recovery offers
    it again once Redis is back.)"""
    async_to_sync(_request_generation_here_or_anywhere)(message_id)


async def _request_generation_here_or_anywhere(message_id: int) -> None:
    from .streaming.consumer import GenerationRunner  # the streaming engine imports events

    runner = GenerationRunner.serving_here()
    if runner is None or not runner.start_here(message_id):
        await request_generation_async(message_id)


async def request_generation_async(message_id: int) -> None:
    """Offer a pending reply on the shared channel, to whichever worker has a free slot."""
    await _skipped_while_away(
        _layer().send(settings.CHAT_STREAM_CHANNEL, {"type": "generate", "message_id": message_id})
    )


def request_cancel(message_id: int) -> None:
    """Stop a streaming reply. Raises ChannelLayerAway while Redis is away (the Stop is lost:
    the user must hear so)."""
    async_to_sync(_layer().group_send)(
        generation_group(message_id), {"type": "generation.cancel", "message_id": message_id}
    )


# A view does not wait for Redis: these are skipped while it is away.


def messages_appended_sync(
    conversation_id: uuid.UUID,
    message_ids: list[int],
    *,
    after: int | None,
    html: str | None = None,
    active: list[int] | None = None,
) -> None:
    async_to_sync(_skipped_while_away)(
        _messages_appended(conversation_id, message_ids, after=after, html=html, active=active)
    )


def path_changed_sync(conversation_id: uuid.UUID, *, after: int | None, not_tab: str) -> None:
    """The conversation's shown path changed from after the message `after`: its tabs draw it
    anew from there, but the tab named `not_tab` (its own answer draws it)."""
    async_to_sync(_skipped_while_away)(
        _layer().group_send(
            conversation_group(conversation_id),
            # The stamp names this event: a process's sockets on it draw the path once.
            {"type": "path.changed", "after": after, "not_tab": not_tab, "stamp": uuid.uuid4().hex},
        )
    )


def conversation_updated_sync(conversation_id: uuid.UUID, *, html: str) -> None:
    """The conversation's title changed (a rename): its tabs draw it (`conversation.updated`)."""
    async_to_sync(_skipped_while_away)(
        _layer().group_send(
            conversation_group(conversation_id), {"type": "conversation.updated", "html": html}
        )
    )


def conversation_deleted_sync(conversation_id: uuid.UUID) -> None:
    """The conversation was deleted: the tabs still open on it say so (their sockets close),
    rather than stand still, and send nothing more (static/chat/chat.js)."""
    async_to_sync(_skipped_while_away)(
        _layer().group_send(conversation_group(conversation_id), {"type": "conversation.deleted"})
    )


def message_finished_sync(conversation_id: uuid.UUID, message_id: int) -> None:
    async_to_sync(_skipped_while_away)(_message_finished(conversation_id, message_id))


def session_closed_sync(user_id: int, session_key: str) -> None:
    async_to_sync(_layer().group_send)(
        user_group(user_id), {"type": "session.closed", "session_key": session_key}
    )


def user_closed_sync(user_id: int) -> None:
    async_to_sync(_layer().group_send)(user_group(user_id), {"type": "user.closed"})


def conversations_changed_sync(
    user_id: int, *, not_tab: str = "", not_conversation: uuid.UUID | None = None
) -> None:
    """The user's list of conversations changed: their other tabs draw their sidebars again
    (`conversations.changed`)."""
    async_to_sync(conversations_changed)(
        user_id, not_tab=not_tab, not_conversation=not_conversation
    )


def user_changed_sync(user_id: int) -> None:
    """The user's account changed (its password, say): each of their sockets checks that its
    session still logs them in."""
    async_to_sync(_layer().group_send)(user_group(user_id), {"type": "user.changed"})


# --- From the streaming consumer and the WebSocket consumer ---------------------------------


async def message_started(
    conversation_id: uuid.UUID,
    message_id: int,
    *,
    cursor: Cursor,
    html: str,
    status: str | None = None,
) -> None:
    await _skipped_while_away(
        _layer().group_send(
            conversation_group(conversation_id),
            {
                "type": "message.started",
                "message_id": message_id,
                "cursor": cursor,
                "html": html,
                "status": status,
            },
        )
    )


async def message_delta(
    conversation_id: uuid.UUID, message_id: int, *, cursor: Cursor, next: Cursor, html: str
) -> None:
    await _skipped_while_away(
        _layer().group_send_frame(
            conversation_group(conversation_id),
            {
                "type": "message.delta",
                "message_id": message_id,
                "cursor": cursor,
                "next": next,
                "html": html,
            },
        )
    )


async def message_status(conversation_id: uuid.UUID, message_id: int, text: str) -> None:
    await _skipped_while_away(
        _layer().group_send(
            conversation_group(conversation_id),
            {"type": "message.status", "message_id": message_id, "text": text},
        )
    )


async def message_finished(
    conversation_id: uuid.UUID, message_id: int, final: dict[str, Any] | None = None
) -> None:
    await _retried_while_away(lambda: _message_finished(conversation_id, message_id, final))


async def _message_finished(
    conversation_id: uuid.UUID, message_id: int, final: dict[str, Any] | None = None
) -> None:
    await _layer().group_send(
        conversation_group(conversation_id),
        {"type": "message.finished", "message_id": message_id, "final": final},
    )


async def messages_appended(
    conversation_id: uuid.UUID, message_ids: list[int], *, after: int | None
) -> None:
    await _retried_while_away(lambda: _messages_appended(conversation_id, message_ids, after=after))


async def _messages_appended(
    conversation_id: uuid.UUID,
    message_ids: list[int],
    *,
    after: int | None,
    html: str | None = None,
    active: list[int] | None = None,
) -> None:
    await _layer().group_send(
        conversation_group(conversation_id),
        {
            "type": "messages.appended",
            "message_ids": message_ids,
            "after": after,
            "html": html,
            "active": active,
        },
    )


async def conversation_updated(conversation_id: uuid.UUID, *, html: str | None = None) -> None:
    await _retried_while_away(
        lambda: _layer().group_send(
            conversation_group(conversation_id), {"type": "conversation.updated", "html": html}
        )
    )


async def conversations_changed(
    user_id: int, *, not_tab: str = "", not_conversation: uuid.UUID | None = None
) -> None:
    """Skipped while Redis is away: a tab's list is a convenience, drawn anew with its page."""
    await _skipped_while_away(
        _layer().group_send(
            user_group(user_id),
            {
                "type": "conversations.changed",
                "not_tab": not_tab,
                "not_conversation": str(not_conversation) if not_conversation else None,
            },
        )
    )


async def snapshot_request(message_id: int, reply_channel: str) -> None:
    """Raises ChannelLayerAway while Redis is away."""
    await _layer().group_send(
        generation_group(message_id),
        {
            "type": "generation.snapshot_request",
            "message_id": message_id,
            "reply_channel": reply_channel,
        },
    )


def snapshot_requested(conversation_id: uuid.UUID) -> None:
    """A tab asked for a snapshot: it may have just joined the conversation from another
    process, so the conversation's next frame checks its members (the Redis layer's
    `group_send_frame` may otherwise trust them a moment longer)."""
    recheck = getattr(_layer(), "recheck_members", None)
    if recheck is not None:
        recheck(conversation_group(conversation_id))


async def snapshot_send(
    reply_channel: str, message_id: int, *, cursor: Cursor, html: str, continued: bool = False
) -> None:
    await _skipped_while_away(
        _layer().send(
            reply_channel,
            {
                "type": "message.snapshot",
                "message_id": message_id,
                "cursor": cursor,
                "html": html,
                "continued": continued,
            },
        )
    )


# Joining and leaving: the Redis layer remembers memberships, and makes those it could not
# make (or undo) once Redis is back, so only joining a conversation (a socket that must close
# if it hears nothing) raises.


async def join_generation(message_id: int, channel_name: str) -> None:
    await _skipped_while_away(_layer().group_add(generation_group(message_id), channel_name))


async def leave_generation(message_id: int, channel_name: str) -> None:
    await _skipped_while_away(_layer().group_discard(generation_group(message_id), channel_name))


async def join_conversation(conversation_id: uuid.UUID | str, channel_name: str) -> None:
    """Raises ChannelLayerAway while Redis is away."""
    await _layer().group_add(conversation_group(conversation_id), channel_name)


async def leave_conversation(conversation_id: uuid.UUID | str, channel_name: str) -> None:
    await _skipped_while_away(
        _layer().group_discard(conversation_group(conversation_id), channel_name)
    )


async def join_user(user_id: int, channel_name: str) -> None:
    await _layer().group_add(user_group(user_id), channel_name)


async def leave_user(user_id: int, channel_name: str) -> None:
    await _skipped_while_away(_layer().group_discard(user_group(user_id), channel_name))
