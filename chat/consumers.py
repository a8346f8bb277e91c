"""The WebSocket consumer: relays a conversation's events to one browser tab as htmx fragments.

The worker renders each frame once, for every tab, and says where a tab must stand for it to
apply (a cursor: how much of each text the tab shows, and where its open tail starts). The
consumer remembers where this tab stands in each reply: a frame it already has (a snapshot
overtook it) is dropped, and a gap (a missed frame, a reconnect, a page that rendered before
the reply existed) is mended by asking the worker for a snapshot of the reply so far.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import time
import uuid
from collections.abc import Container, Coroutine
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import events, fragments, middleware, outages, selectors, socket_auth, socket_protocol
from .events import Cursor
from .middleware import TRY_AGAIN_LATER
from .models import Conversation, Message
from .outages import SERVICE_ERRORS
from .streaming.dispatch import DirectEventDispatch

logger = logging.getLogger(__name__)

START: Cursor = {"content": [0, 0], "reasoning": [0, 0]}
RESYNC_INTERVAL = 1.0  # seconds: a tab gets at most one snapshot of a reply this often
RESYNC_BUDGET = 20  # requests a socket may have answered in RESYNC_INTERVAL, all replies together
# daphne will not send a WebSocket message over 1 MiB: it closes the socket with 1011, and the
# page reconnects and asks again, forever. A frame over this limit (a huge reply finishing, its
# snapshot, one enormous delta) is replaced by one that makes the tab fetch it over HTTP.
MAX_FRAME_BYTES = 512 * 1024


def _is_closed_socket(exc: Exception) -> bool:
    # Daphne passes on autobahn's `Disconnected` ("Attempt to send on a closed protocol").
    return type(exc).__name__ == "Disconnected"


def _fits(html: str) -> bool:
    # UTF-8 takes at most 4 bytes a character: almost every frame is measured without encoding.
    return len(html) * 4 <= MAX_FRAME_BYTES or len(html.encode()) <= MAX_FRAME_BYTES


def _covers(have: Cursor, wanted: Cursor) -> bool:
    """Whether a tab at `have` already shows everything a tab at `wanted` shows."""
    return all(
        have[text][0] >= wanted[text][0] and have[text][1] >= wanted[text][1] for text in wanted
    )


class OpenSockets:
    """How many sockets each user has open in this process: each takes memory and a share of
    every event's fan-out, so one user may open CHAT_SOCKETS_PER_USER (a tab has one)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[int] = collections.Counter()

    def take(self, user_id: int) -> bool:
        if self.counts[user_id] >= settings.CHAT_SOCKETS_PER_USER > 0:
            return False
        self.counts[user_id] += 1
        return True

    def give_back(self, user_id: int) -> None:
        self.counts[user_id] -= 1
        if self.counts[user_id] <= 0:
            del self.counts[user_id]


_open_sockets = OpenSockets()


class ConversationConsumer(DirectEventDispatch, AsyncWebsocketConsumer):
    conversation_id: uuid.UUID
    user_id: int
    session_key: str | None  # the session the socket was opened with
    tab: str  # the page's own name for itself (`?tab=`, and its requests' X-Chat-Tab), or ""
    # Where this tab stands in each reply that streams; None while a snapshot is awaited.
    replies: dict[int, Cursor | None]
    # Replies this tab fetched over HTTP while they stream, their frames being too large: the
    # rest of their frames are dropped, and the tab fetches them again when they end.
    fetched: set[int]
    last_requested: dict[int, float]  # when each of its replies was last asked for
    _budget_since: float  # the second whose requests `_budget_used` counts (RESYNC_BUDGET)
    _budget_used: int
    deferred: set[int]  # replies with a request waiting for its second
    whole: set[int]  # replies sent whole as saved at their end
    drawn_empty: set[int]  # replies the tab drew empty from the turn's event, not yet started
    # Replies that streamed as the socket opened: the tab may show one as it was before (a
    # continuation's reply finished, cut short, if it loaded before Continue was pressed).
    unseen: set[int]
    _later: set[asyncio.Task[None]]
    _session_check: asyncio.TimerHandle | None  # the next periodic check of the session
    _closed: bool  # the consumer ended: nothing more is scheduled for it
    _counted: bool  # among its user's open sockets (`OpenSockets`)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SERVICE_ERRORS:
            # Redis or the database went away under this socket: chat.middleware closes it
            # (the page retries). Leave the groups now, as `disconnect` will not run.
            if hasattr(self, "replies"):
                await self._leave_groups()
            raise
        except asyncio.CancelledError:
            # The server is stopping (daphne cancels every socket's consumer, and `disconnect`
            # does not run): leave the groups, or in Redis they would name this socket's
            # channel until they expire, and frames would be sent to it for nobody.
            if hasattr(self, "replies"):
                await self._leave_groups()
            raise
        finally:
            # However the consumer ended: its later work (a deferred answer, the next check of
            # its session) would keep it alive, and check again and again, for nobody.
            self._stop_later_work()
            if getattr(self, "_counted", False):
                self._counted = False
                _open_sockets.give_back(self.user_id)

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.connect":
            # Channels' `dispatch` first closes stale database connections, in a trip to a
            # thread of its own; the opening's first read (`aconversation_for_user`) does that
            # in its own trip.
            await self.websocket_connect(message)
            return
        await super().dispatch(message)

    async def connect(self) -> None:
        if not self.scope["user"].is_authenticated:
            # Its session ended while it was away (the page reconnects with the cookie it has):
            # told so, rather than refused at the handshake, which a browser reports as a
            # network failure and the page would retry for ever. Nothing else is sent.
            await self.accept()
            await self.close(code=socket_protocol.CLOSE_SESSION_ENDED)
            return
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        conversation = await selectors.aconversation_for_user(
            user=self.scope["user"], conversation_id=conversation_id
        )
        if conversation is None:
            # Deleted (while this tab's socket was away: it missed `conversation.deleted`), or
            # never this user's: told it is gone, and nothing else, as a deleted conversation's
            # tabs are. Refused at the handshake, a browser reports a network failure, and the
            # page retried for ever. The same answer either way: it says nothing of whether the
            # conversation exists, and joins nothing.
            await self.accept()
            await self.close(code=socket_protocol.CLOSE_CONVERSATION_DELETED)
            return
        self.conversation_id = conversation.id
        self.user_id = conversation.owner_id
        if not _open_sockets.take(self.user_id):
            logger.info("user %s: too many sockets open; closing one more", self.user_id)
            await self.accept()
            await self.close(code=socket_protocol.CLOSE_TOO_MANY_SOCKETS)
            return
        self._counted = True
        session = self.scope.get("session")
        self.session_key = session.session_key if session is not None else None
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.tab = socket_protocol.tab_name(query.get("tab", [""])[0])
        self.replies = {}
        self.fetched = set()
        self.last_requested = {}
        self._budget_since, self._budget_used = 0.0, 0
        self.deferred = set()
        self._later = set()
        self.whole = set()
        self.drawn_empty = set()
        self.unseen = set()
        await events.join_conversation(self.conversation_id, self.channel_name)
        await events.join_user(self.user_id, self.channel_name)
        await self.accept()
        self._session_check = None
        self._schedule_session_check()
        for message_id in await selectors.active_reply_ids(conversation_id=self.conversation_id):
            self.unseen.add(message_id)
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

    async def _answer_later(self, message_id: int, delay: float) -> None:
        await asyncio.sleep(delay)
        self.deferred.discard(message_id)
        try:
            await self.receive(text_data=json.dumps({"resync": message_id}))
        except SERVICE_ERRORS:
            # As a handler's would (chat.middleware): the page reconnects and asks again.
            await self.close(code=TRY_AGAIN_LATER)

    async def disconnect(self, code: int) -> None:
        self._stop_later_work()
        if hasattr(self, "replies"):
            await self._leave_groups()

    def _stop_later_work(self) -> None:
        self._closed = True
        for task in list(getattr(self, "_later", ())):
            task.cancel()
        if (check := getattr(self, "_session_check", None)) is not None:
            check.cancel()
            self._session_check = None

    async def _leave_groups(self) -> None:
        await events.leave_conversation(self.conversation_id, self.channel_name)
        await events.leave_user(self.user_id, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page asks `{"resync": <message id>}` when a reply's element appears in it;
        anything else closes the socket (`chat.socket_protocol` says with which code)."""
        if not hasattr(self, "replies"):
            # Closed as it opened (its session ended, too many sockets): what the page sent
            # before it saw the close still comes, to a socket set up for nothing.
            return
        try:
            request = socket_protocol.parse(text_data=text_data, bytes_data=bytes_data)
        except socket_protocol.Refused as refused:
            logger.info(
                "conversation %s: closing a socket that sent %s", self.conversation_id, refused
            )
            await self.close(code=refused.code)
            return
        message_id = request.message_id
        if message_id in self.fetched:
            return  # it comes over HTTP when it ends; a snapshot would be too large again
        if message_id in self.drawn_empty and self.replies.get(message_id) == START:
            # The page drew the reply as the turn's event did (or its own send's answer, the
            # same): empty, where the reply's first frame applies. Nothing to send it yet.
            return
        # At most one request a second per reply is answered. One more that comes sooner is
        # answered when the second is up (the page asks when it has drawn the reply anew, and
        # frames must not be applied to that drawing); any others are dropped, not queued.
        wait = self.last_requested.get(message_id, -RESYNC_INTERVAL) + RESYNC_INTERVAL
        now = time.monotonic()
        if now < wait:
            if message_id not in self.deferred:
                self.deferred.add(message_id)
                self._run_later(self._answer_later(message_id, wait - now))
            return
        # A page asks for the replies it shows streaming, a few at most: more requests than
        # RESYNC_BUDGET a second (for messages of other conversations, or none) are dropped,
        # each of them a read on the ORM's one thread, which every socket shares.
        if now - self._budget_since >= RESYNC_INTERVAL:
            self._budget_since, self._budget_used = now, 0
        if self._budget_used >= RESYNC_BUDGET:
            return
        self._budget_used += 1
        self.last_requested[message_id] = now
        # The database known away: closed for a retry at once (chat.middleware), rather than
        # hold the ORM's thread, which every socket shares, for the pool's timeout.
        await outages.database_needed()
        if not await self._session_is_current():
            await self._session_ended()
            return
        message = await selectors.amessage_in_conversation(
            conversation_id=self.conversation_id, message_id=message_id
        )
        if message is None:
            del self.last_requested[message_id]  # remembered for messages of its own only
            return
        if message.is_active:
            await self._resync(message_id)
        else:
            await self._send_message(message_id)

    # --- Conversation events ---------------------------------------------------------------

    async def message_started(self, event: dict[str, Any]) -> None:
        message_id = event["message_id"]
        self.unseen.discard(message_id)
        if event["html"]:
            # A continuation (Continue): the tab may show the reply finished, with no open
            # tail for its frames (another tab asked for it). It gets the reply as it streams,
            # the paragraph it was cut at as it was shown, then a snapshot to go on from. Not
            # a reply too large for a frame: fetched over HTTP, it would take the place of
            # the Continue button of the tab that asked, its answer still on its way.
            html, active = await _render_message(self.conversation_id, message_id, continued=True)
            if html and _fits(html):
                self.fetched.discard(message_id)
                self.whole.discard(message_id)
                await self._sent_whole([message_id], active)
                await self.send(text_data=html)
                return
        if message_id in self.whole:
            return  # events of a generation whose saved end this tab already has
        self.fetched.discard(message_id)
        self.replies[message_id] = event["cursor"]
        # (a new reply's line says it waits already: said again, a screen reader says it twice)
        status = event.get("status")
        html = event["html"] + ("" if status is None else fragments.status(message_id, status))
        if html:
            await self._relay(message_id, html)

    async def message_delta(self, event: dict[str, Any]) -> None:
        message_id = event["message_id"]
        if message_id in self.fetched or message_id in self.whole:
            return
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
                await self._relay(message_id, event["html"])
        elif not _covers(have, event["next"]):
            await self._resync(message_id)  # a frame went missing

    async def message_snapshot(self, event: dict[str, Any]) -> None:
        message_id = event["message_id"]
        if message_id in self.fetched or message_id not in self.replies:
            return
        if self.replies[message_id] is not None:
            # Not awaited (a late answer: the reply finished and was sent whole, or frames
            # went on meanwhile): drawing it would take the tab back in time.
            return
        if message_id in self.unseen and event.get("continued"):
            # The tab may show the reply finished, with no open tail for the snapshot (it
            # loaded before Continue, its socket down as the continuation started): drawn
            # streaming first, as `message_started` draws it (a page that shows it streaming
            # keeps its own).
            self.unseen.discard(message_id)
            html, active = await _render_message(self.conversation_id, message_id, continued=True)
            if self.replies.get(message_id, False) is not None or message_id in self.fetched:
                return  # sent meanwhile (whole at its end, or to fetch): this answer is late
            if message_id in active and _fits(html):
                await self.send(text_data=html)
        self.unseen.discard(message_id)
        self.replies[message_id] = event["cursor"]
        await self._relay(message_id, event["html"])

    async def message_status(self, event: dict[str, Any]) -> None:
        await self.send(text_data=fragments.status(event["message_id"], event["text"]))

    async def message_finished(self, event: dict[str, Any]) -> None:
        message_id = event["message_id"]
        self.unseen.discard(message_id)
        self.fetched.discard(message_id)
        self.drawn_empty.discard(message_id)
        have = self.replies.pop(message_id, None)
        final = event.get("final")
        if final is not None and have == final["cursor"] and message_id not in self.whole:
            # Only what changes at the end.
            await self._relay(message_id, final["html"], streaming=False)
        else:
            await self._send_message(message_id)

    async def path_changed(self, event: dict[str, Any]) -> None:
        """Another tab changed which versions are shown (Regenerate, an edit, a version
        switch): the path is drawn anew from the fork. A page that does not show the path up
        to the fork loads itself again instead (`chat-frames` in static/chat/chat.js)."""
        if event["not_tab"] and event["not_tab"] == self.tab:
            return  # this tab asked for the change: its answer draws it
        drawn = await _path_drawn(self.conversation_id, event)
        if drawn is None:
            return  # the fork is not on the path shown now
        html, message_ids, active, drawn_empty = drawn
        await self._sent_whole(
            message_ids, active, drawn_empty={m for m in drawn_empty if m not in self.replies}
        )
        await self.send(text_data=html)

    async def messages_appended(self, event: dict[str, Any]) -> None:
        message_ids = event["message_ids"]
        drawn_empty: set[int] = set()
        if event.get("html") is not None:  # drawn once for every tab
            html, active = event["html"], event["active"]
            # Drawn as the turn was saved, before its reply started: the reply is empty, where
            # its first frame applies, so there is no snapshot to ask for. (Unless this tab
            # had frames of it already: they may have gone to a page without the reply.)
            drawn_empty = {m for m in active if m not in self.replies}
            # Drawn as the turn was saved, its `active` may be stale: a reply this tab already
            # has whole (it finished, and was sent as saved) must stay so.
            active = [m for m in active if m not in self.whole]
        else:
            html, active = await _render_appended(self.conversation_id, message_ids)
        await self._sent_whole(message_ids, active, drawn_empty=drawn_empty)
        if not html:
            return
        if not _fits(html):
            logger.info("conversation %s: new messages fetched over HTTP", self.conversation_id)
            html = fragments.appended_fetch(
                self.conversation_id, message_ids, after=event.get("after")
            )
        await self.send(text_data=html)

    async def conversation_updated(self, event: dict[str, Any]) -> None:
        html = event.get("html")
        if html is None:
            html = await _render_title(self.conversation_id)
        if html:
            await self.send(text_data=html)

    async def conversation_deleted(self, event: dict[str, Any]) -> None:
        """Deleted in another tab or by staff: closed, and the tab says so (static/chat/chat.js),
        rather than stand still with its reply cut off."""
        await self.close(code=socket_protocol.CLOSE_CONVERSATION_DELETED)

    # --- User events ---------------------------------------------------------------------------

    async def conversations_changed(self, event: dict[str, Any]) -> None:
        """The user's list changed in another tab: this tab draws its sidebar's list again,
        as it shows it (static/chat/chat.js)."""
        if event["not_tab"] and event["not_tab"] == self.tab:
            return  # this tab asked for the change: it draws its own list
        if event["not_conversation"] == str(self.conversation_id):
            return  # the conversation's own event draws its entry (a rename, a deletion)
        await self.send(text_data=fragments.CONVERSATIONS_CHANGED)

    async def session_closed(self, event: dict[str, Any]) -> None:
        if event["session_key"] == self.session_key:
            await self._session_ended()

    async def user_closed(self, event: dict[str, Any]) -> None:
        await self._session_ended()

    async def user_changed(self, event: dict[str, Any]) -> None:
        """The user's account changed (a new password ends their other sessions)."""
        await outages.database_needed()  # known away: not a wait on the ORM's thread
        if not await self._session_is_current():
            await self._session_ended()

    # --- Helpers -------------------------------------------------------------------------------

    async def _session_is_current(self) -> bool:
        return await socket_auth.session_is_current(
            session_key=self.session_key, user=self.scope["user"]
        )

    def _schedule_session_check(self) -> None:
        """Check the session again within CHAT_SOCKET_SESSION_CHECK_SECONDS, at a random point
        of its second half, so that sockets opened together do not check together: a session
        that expired or was deleted sends no signal."""
        interval = settings.CHAT_SOCKET_SESSION_CHECK_SECONDS
        if interval > 0 and not getattr(self, "_closed", False):
            loop = asyncio.get_running_loop()
            delay = interval * random.uniform(0.5, 1.0)
            self._session_check = loop.call_later(delay, self._start_session_check)

    def _start_session_check(self) -> None:
        self._session_check = None
        self._run_later(self._check_session())

    def _run_later(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in a task of this socket's, cancelled if the socket closes first."""
        task = asyncio.ensure_future(work)
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _check_session(self) -> None:
        try:
            await outages.database_needed()  # known away: not a wait on the ORM's thread
            current = await self._session_is_current()
        except SERVICE_ERRORS as error:
            # The database is away (noted, so that the other sockets wait for it elsewhere than
            # on the ORM's thread): ask again at the next check.
            await middleware.note_outage(error)
            current = True
        except Exception:
            logger.exception(
                "conversation %s: could not check a socket's session", self.conversation_id
            )
            current = True
        if current:
            self._schedule_session_check()
        else:
            await self._session_ended()

    async def _session_ended(self) -> None:
        logger.info("conversation %s: closing a socket whose session ended", self.conversation_id)
        await self.close(code=socket_protocol.CLOSE_SESSION_ENDED)

    async def _resync(self, message_id: int) -> None:
        self.drawn_empty.discard(message_id)
        self.replies[message_id] = None
        self.last_requested[message_id] = time.monotonic()
        await events.snapshot_request(message_id, self.channel_name)

    async def _send_message(self, message_id: int) -> None:
        html, active = await _render_message(self.conversation_id, message_id)
        await self._sent_whole([message_id], active)
        if html:
            await self._relay(message_id, html, streaming=False)

    async def _relay(self, message_id: int, html: str, *, streaming: bool = True) -> None:
        """Send a frame about one message, or, if it is too large for the socket, a frame that
        makes the tab fetch the message over HTTP. A reply still streaming is then left to
        HTTP until it ends: its later frames would apply to text the tab does not have."""
        if _fits(html):
            await self.send(text_data=html)
            return
        logger.info(
            "conversation %s: message %s is fetched over HTTP (a %d-character frame)",
            self.conversation_id,
            message_id,
            len(html),
        )
        if streaming:
            self.replies.pop(message_id, None)
            self.fetched.add(message_id)
        await self.send(text_data=fragments.message_fetch(self.conversation_id, message_id))

    async def _sent_whole(
        self, message_ids: list[int], active: list[int], *, drawn_empty: Container[int] = ()
    ) -> None:
        """Whole messages go to the tab as they stand in the database: frames sent before no
        longer say where the tab stands (a finished one needs no more; the end of a reply
        that finished meanwhile must not be appended to it again). A reply still streaming
        is drawn from its last checkpoint: ask for a snapshot to go on from, unless it was
        `drawn_empty` (before its generation started: its first frame goes on from there)."""
        for message_id in message_ids:
            self.replies.pop(message_id, None)
            if message_id not in active:
                # The socket's own messages can overtake the channel layer's: events of the
                # generation that ended this reply may still be on their way, and must not be
                # drawn on top of its saved end (until it is seen streaming again: Continue).
                self.whole.add(message_id)
        for message_id in active:
            self.whole.discard(message_id)
            if message_id in drawn_empty:
                self.replies[message_id] = START
                self.drawn_empty.add(message_id)
            else:
                await self._resync(message_id)


@database_sync_to_async
def _render_message(
    conversation_id: uuid.UUID, message_id: int, continued: bool = False
) -> tuple[str, list[int]]:
    """The message's HTML, and its id if it is a reply still being generated."""
    message = Message.objects.filter(conversation_id=conversation_id, pk=message_id).first()
    if message is None:
        return "", []
    html = fragments.message(selectors.with_versions(message=message), continued=continued)
    return html, [message.pk] if message.is_active else []


@database_sync_to_async
def _render_appended(conversation_id: uuid.UUID, message_ids: list[int]) -> tuple[str, list[int]]:
    messages = list(
        Message.objects.filter(conversation_id=conversation_id, pk__in=message_ids).order_by("id")
    )
    return fragments.appended(messages), [m.pk for m in messages if m.is_active]


# The path drawn for each `path.changed` event, shared by this process's sockets on it: one
# read and render an event, not one a socket (a user's many tabs would each hold the ORM's one
# thread, which every socket shares). Kept until DRAWN_PATH_SECONDS after it is drawn.
_paths_drawn: dict[str, asyncio.Future[tuple[str, list[int], list[int], set[int]] | None]] = {}
DRAWN_PATH_SECONDS = 5.0


async def _path_drawn(
    conversation_id: uuid.UUID, event: dict[str, Any]
) -> tuple[str, list[int], list[int], set[int]] | None:
    stamp = event.get("stamp")
    if stamp is None:
        return await _render_path(conversation_id, event["after"])
    key = f"{id(asyncio.get_running_loop())}:{stamp}"
    drawing = _paths_drawn.get(key)
    if drawing is None:
        drawing = asyncio.ensure_future(_render_path(conversation_id, event["after"]))
        _paths_drawn[key] = drawing
        drawing.add_done_callback(
            lambda _: asyncio.get_running_loop().call_later(
                DRAWN_PATH_SECONDS, _paths_drawn.pop, key, None
            )
        )
    return await asyncio.shield(drawing)  # a socket closing does not cancel the others'


@database_sync_to_async
def _render_path(
    conversation_id: uuid.UUID, after: int | None
) -> tuple[str, list[int], list[int], set[int]] | None:
    """The path shown drawn anew from after the message `after` (`fragments.path_for_event`):
    its HTML, the ids of the messages drawn, those still being generated, and those of them
    drawn empty (where their first frame applies; none when they are fetched over HTTP). None
    if `after` is not on the path."""
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None:
        return None
    path = selectors.active_path(conversation=conversation)
    ids = [m.pk for m in path]
    if after is not None and after not in ids:
        return None
    start = 0 if after is None else ids.index(after) + 1
    shown = path[start:]
    html, fetched = fragments.path_for_event(conversation_id, ids[:start], shown)
    active = [m.pk for m in shown if m.is_active]
    empty = (
        set()
        if fetched
        else {m.pk for m in shown if m.is_active and not (m.content or m.reasoning)}
    )
    return html, ids[start:], active, empty


@database_sync_to_async
def _render_title(conversation_id: uuid.UUID) -> str:
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    return fragments.conversation_title(conversation) if conversation is not None else ""
