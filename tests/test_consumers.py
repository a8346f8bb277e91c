"""The WebSocket consumer: who may connect, and how events become page fragments."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from chat import events, fragments, services
from chat.consumers import START
from chat.models import Conversation, Message
from chat.routing import websocket_urlpatterns
from chat.socket_protocol import CLOSE_CONVERSATION_DELETED, CLOSE_SESSION_ENDED
from chat.streaming.coalescer import Frame
from chat.streaming.generation import ReplyRenderer
from chatsite.asgi import websocket_application
from tests.sockets import closed_with, socket_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def conversation(user) -> Conversation:
    return services.conversation_create(owner=user)


def communicator(conversation_id: Any, user: Any) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/c/{conversation_id}/")
    comm.scope["user"] = user
    return comm


async def test_owner_connects(conversation, user):
    comm = communicator(conversation.pk, user)
    connected, _ = await comm.connect()
    assert connected
    await comm.disconnect()


async def test_an_opening_reads_its_conversation_where_stale_connections_are_closed(
    conversation, user, monkeypatch
):
    """Channels closes stale database connections before each socket event; the opening's
    first read does it in its own trip to a thread (channels.db.database_sync_to_async). The
    test communicator makes the closing itself a no-op, so the trip is what is checked."""
    from channels import db

    from chat import selectors

    seen: list[str] = []
    handler = db.DatabaseSyncToAsync.thread_handler
    read = selectors._CONVERSATION_FOR_USER.instances

    def closing_trip(self, loop, *args, **kwargs):
        seen.append("closing trip")
        return handler(self, loop, *args, **kwargs)

    monkeypatch.setattr(db.DatabaseSyncToAsync, "thread_handler", closing_trip)
    monkeypatch.setattr(
        selectors._CONVERSATION_FOR_USER,
        "instances",
        lambda **params: seen.append("read") or read(**params),
    )
    comm = communicator(conversation.pk, user)
    connected, _ = await comm.connect()
    assert connected
    assert seen[:2] == ["closing trip", "read"]
    await comm.disconnect()


async def test_anonymous_user_is_told_its_session_ended_and_nothing_else(conversation):
    """Not refused at the handshake: a browser reports that as a network failure, and a page
    whose session ended while its socket was away would retry for ever."""
    comm = communicator(conversation.pk, AnonymousUser())
    connected, _code = await comm.connect()
    assert connected
    assert await closed_with(comm) == CLOSE_SESSION_ENDED
    await comm.disconnect()


async def test_a_deleted_conversations_sockets_close_saying_so(conversation, user):
    """Its tabs stood still, a reply cut off, and sent the next message into a 404: they are
    told (and say so, static/chat/chat.js). The user's other conversations stay open, their
    tabs told only that the list changed."""
    second = await sync_to_async(services.conversation_create)(owner=user)
    gone, kept = communicator(conversation.pk, user), communicator(second.pk, user)
    assert (await gone.connect())[0] and (await kept.connect())[0]
    await sync_to_async(services.conversation_delete)(conversation=conversation)
    assert await closed_with(gone) == CLOSE_CONVERSATION_DELETED
    assert await kept.receive_from() == fragments.CONVERSATIONS_CHANGED
    assert await kept.receive_nothing(timeout=0.3)
    await kept.disconnect()


async def test_another_users_conversation_is_told_it_is_gone_and_nothing_else(
    conversation, other_user
):
    """As a deleted one is: nothing says whether it exists."""
    comm = communicator(conversation.pk, other_user)
    connected, _ = await comm.connect()
    assert connected and await closed_with(comm) == CLOSE_CONVERSATION_DELETED
    await comm.disconnect()


async def test_a_socket_opened_again_on_a_conversation_deleted_meanwhile_is_told(
    conversation, user
):
    """Found by a second read: a tab whose socket was away while another deleted the
    conversation was refused at each handshake, which the browser reports as a network
    failure: "Reconnecting…" for ever."""
    conversation_id = conversation.pk
    await sync_to_async(services.conversation_delete)(conversation=conversation)
    comm = communicator(conversation_id, user)
    connected, _ = await comm.connect()
    assert connected and await closed_with(comm) == CLOSE_CONVERSATION_DELETED
    await comm.disconnect()


async def test_a_foreign_origin_is_refused(conversation):
    comm = WebsocketCommunicator(
        websocket_application,
        f"/ws/c/{conversation.pk}/",
        headers=[(b"origin", b"http://evil.example"), (b"host", b"127.0.0.1")],
    )
    connected, _ = await comm.connect()
    assert not connected
    await comm.disconnect()


def frames_of(*pieces: str, message_id: int = 7) -> tuple[ReplyRenderer, list[dict[str, Any]]]:
    """The frames a worker sends for a reply streamed in these pieces."""
    view = ReplyRenderer(message_id, "", "")
    frames = []
    for piece in pieces:
        cursor, html = view.frame(Frame(0, piece, 0, "", None))
        frames.append({"cursor": cursor, "next": view.cursor(), "html": html})
    return view, frames


async def test_frames_are_relayed_in_order_and_a_frame_the_tab_has_is_dropped(conversation, user):
    comm = communicator(conversation.pk, user)
    await comm.connect()
    view, frames = frames_of("<i>Hi", "&there\n\nNext")
    # A new reply's start changes nothing on the page (its line says it waits already)
    await events.message_started(conversation.pk, 7, cursor=START, html="")
    await events.message_delta(conversation.pk, 7, **frames[0])
    # (a "<" that opens no autolink is drawn as text in a span of its own)
    assert await comm.receive_from() == (
        '<span id="t7" hx-swap-oob="beforeend"><span>&lt;</span>i&gt;Hi</span>'
    )
    await events.message_delta(conversation.pk, 7, **frames[1])
    second = await comm.receive_from()
    assert '<div id="c7" hx-swap-oob="beforeend"><p>&lt;i&gt;Hi&amp;there</p>' in second
    assert '<div id="t7" hx-swap-oob="innerHTML">Next</div>' in second
    # The same frame again (a snapshot overtook it): the tab has it already.
    await events.message_delta(conversation.pk, 7, **frames[1])
    assert await comm.receive_nothing()
    await comm.disconnect()


async def test_a_gap_asks_the_worker_for_a_snapshot(conversation, user):
    layer = get_channel_layer()
    worker_channel = await layer.new_channel()
    await events.join_generation(7, worker_channel)
    comm = communicator(conversation.pk, user)
    await comm.connect()
    view, frames = frames_of("early ", "later", " more", "?")
    await events.message_delta(conversation.pk, 7, **frames[1])  # the first one never came
    request = await layer.receive(worker_channel)
    assert request["type"] == "generation.snapshot_request" and request["message_id"] == 7
    # Frames that arrive before the snapshot are covered by it, so they are held back.
    await events.message_delta(conversation.pk, 7, **frames[2])
    snapshot_view, _ = frames_of("early ", "later", " more")
    await events.snapshot_send(
        request["reply_channel"], 7, cursor=snapshot_view.cursor(), html=snapshot_view.snapshot()
    )
    snapshot = await comm.receive_from()
    assert '<div id="t7" hx-swap-oob="innerHTML">early later more</div>' in snapshot
    await events.message_delta(conversation.pk, 7, **frames[3])
    assert await comm.receive_from() == '<span id="t7" hx-swap-oob="beforeend">?</span>'
    assert await comm.receive_nothing()
    await comm.disconnect()


async def test_a_snapshot_request_left_unanswered_is_made_again(conversation, user, monkeypatch):
    """A request can be lost (Redis restarted before the worker joined its groups again):
    while frames keep coming, the tab asks again, at most once per RESYNC_INTERVAL."""
    # Long enough that a busy machine's stall between the two requests does not make the second
    # one overdue before the test looks.
    monkeypatch.setattr("chat.consumers.RESYNC_INTERVAL", 0.6)
    layer = get_channel_layer()
    worker_channel = await layer.new_channel()
    await events.join_generation(7, worker_channel)
    comm = communicator(conversation.pk, user)
    await comm.connect()
    _, frames = frames_of("early ", "later", " more", "?")
    await events.message_delta(conversation.pk, 7, **frames[1])  # a gap: a snapshot is asked
    assert (await layer.receive(worker_channel))["message_id"] == 7  # and never answered
    await events.message_delta(conversation.pk, 7, **frames[2])
    with pytest.raises(TimeoutError):  # not overdue yet
        await asyncio.wait_for(layer.receive(worker_channel), 0.1)
    await asyncio.sleep(0.6)
    await events.message_delta(conversation.pk, 7, **frames[3])
    again = await asyncio.wait_for(layer.receive(worker_channel), 1)
    assert again["type"] == "generation.snapshot_request" and again["message_id"] == 7
    assert await comm.receive_nothing()
    await comm.disconnect()


async def test_a_tab_with_every_frame_gets_only_the_end_of_a_finished_reply(conversation, user):
    comm = communicator(conversation.pk, user)
    await comm.connect()
    view, frames = frames_of("# Title\n", "\nSome *text*")
    await events.message_started(conversation.pk, 7, cursor=START, html="")
    for frame in frames:
        await events.message_delta(conversation.pk, 7, **frame)
        await comm.receive_from()
    tabs_at = view.cursor()  # where a tab with every frame stands (finishing moves it)
    _, ending = view.finish()
    assert ending is not None
    await events.message_finished(
        conversation.pk, 7, {"cursor": tabs_at, "html": ending + "<footer/>"}
    )
    end = await comm.receive_from()
    assert "<h1>" not in end  # already on the page
    assert '<div id="c7" hx-swap-oob="beforeend"><p>Some <em>text</em></p>' in end
    assert '<div id="t7" hx-swap-oob="delete">' in end
    await comm.disconnect()


async def test_a_finished_reply_is_sent_rendered_from_the_database(conversation, user, monkeypatch):
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    _, reply = await sync_to_async(services.message_submit)(conversation=conversation, content="hi")
    await Message.objects.filter(pk=reply.pk).aupdate(
        status=Message.Status.COMPLETE,
        content="**bold** <script>x</script>",
        **services.rendered_fields(content="**bold** <script>x</script>", reasoning=""),
    )
    comm = communicator(conversation.pk, user)
    await comm.connect()
    await events.message_finished(conversation.pk, reply.pk)
    html = await comm.receive_from()
    assert f'<article id="m{reply.pk}"' in html and 'hx-swap-oob="true"' in html
    assert "<strong>bold</strong>" in html and "<script>" not in html
    await comm.disconnect()


async def test_a_tab_that_asks_for_a_finished_reply_gets_it(
    conversation, alice_session, monkeypatch
):
    """The page asks for a resync when a reply's element appears; if the reply already
    finished (a fast upstream beat the HTTP response), the tab gets the final version."""
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    _, reply = await sync_to_async(services.message_submit)(conversation=conversation, content="hi")
    await Message.objects.filter(pk=reply.pk).aupdate(
        status=Message.Status.COMPLETE, content="done"
    )
    comm = socket_for(conversation.pk, alice_session)
    await comm.connect()
    await comm.send_json_to({"resync": reply.pk, "HEADERS": {}})
    assert f'<article id="m{reply.pk}"' in await comm.receive_from()
    await comm.disconnect()


async def test_a_tab_cannot_ask_for_another_conversations_message(
    conversation, alice_session, other_user, monkeypatch
):
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    theirs = await sync_to_async(services.conversation_create)(owner=other_user)
    _, reply = await sync_to_async(services.message_submit)(conversation=theirs, content="secret")
    await Message.objects.filter(pk=reply.pk).aupdate(
        status=Message.Status.COMPLETE, content="secret"
    )
    comm = socket_for(conversation.pk, alice_session)
    await comm.connect()
    await comm.send_json_to({"resync": reply.pk})
    assert await comm.receive_nothing()
    await comm.disconnect()


async def test_frames_dropped_by_a_full_channel_are_recovered_from_a_snapshot(
    conversation, user, settings
):
    """The channel layer drops messages for a full channel; the next frame's offset shows
    the gap, and the tab asks for a snapshot instead of showing text with a hole in it."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.streaming.channel_layers.InProcessChannelLayer",
            "CONFIG": {"capacity": 1},
        }
    }
    layer = get_channel_layer()
    worker_channel = await layer.new_channel()
    await events.join_generation(7, worker_channel)
    comm = communicator(conversation.pk, user)
    await comm.connect()
    await events.message_started(conversation.pk, 7, cursor=START, html="")
    # A burst of frames faster than the consumer reads: the full channel drops some.
    text = "aaabbbcccdddeee"
    view, frames = frames_of(*(text[i : i + 3] for i in range(0, 15, 3)))

    async def frame(i: int) -> None:
        await events.message_delta(conversation.pk, 7, **frames[i])

    for i in range(4):
        await frame(i)
    delivered = []
    while not await comm.receive_nothing(timeout=0.2):
        delivered.append(await comm.receive_from())
    assert len(delivered) < 4  # something was dropped
    # The next frame of the stream shows the gap; the tab asks the worker for a snapshot.
    await frame(4)
    request = await asyncio.wait_for(layer.receive(worker_channel), 2)
    assert request["type"] == "generation.snapshot_request"
    await events.snapshot_send(
        request["reply_channel"], 7, cursor=view.cursor(), html=view.snapshot()
    )
    from tests.live import PageModel

    page = PageModel()
    for earlier in delivered:
        page.apply(earlier)
    while not any('id="t7" hx-swap-oob="innerHTML"' in f for f in page.frames):
        page.apply(await comm.receive_from())
    assert await comm.receive_nothing()
    assert page.content(7) == text
    await comm.disconnect()


async def test_a_frame_sent_to_a_socket_that_just_closed_is_not_an_error(conversation, caplog):
    """Daphne raises autobahn's Disconnected when a frame meets a closed tab: normal, so it
    is logged at DEBUG and the consumer carries on."""
    from autobahn.exception import Disconnected

    from chat.consumers import ConversationConsumer

    async def closed(message: dict[str, Any]) -> None:
        raise Disconnected("Attempt to send on a closed protocol")

    consumer = ConversationConsumer()
    consumer.conversation_id = conversation.pk
    consumer.base_send = closed
    with caplog.at_level("DEBUG", logger="chat.consumers"):
        await consumer.send(text_data="<span>late frame</span>")
    assert [r.levelname for r in caplog.records] == ["DEBUG"]

    async def broken(message: dict[str, Any]) -> None:
        raise RuntimeError("something else")

    consumer.base_send = broken
    with pytest.raises(RuntimeError):
        await consumer.send(text_data="x")


async def test_a_reply_sent_whole_is_not_ended_again_by_its_frames(conversation, user, monkeypatch):
    """A fast reply can finish before the tab is sent the new turn: the tab gets the finished
    message whole, so the end the worker sends for tabs that had every frame must not be
    appended to it too (the text would show twice)."""
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    _, reply = await sync_to_async(services.message_submit)(conversation=conversation, content="q")
    comm = communicator(conversation.pk, user)
    await comm.connect()
    view = ReplyRenderer(reply.pk, "", "")
    await events.message_started(conversation.pk, reply.pk, cursor=START, html="")
    cursor, html = view.frame(Frame(0, "kept text", 0, "", None))
    await events.message_delta(
        conversation.pk, reply.pk, cursor=cursor, next=view.cursor(), html=html
    )
    await comm.receive_from()
    tabs_at = view.cursor()
    stored, ending = view.finish()
    await Message.objects.filter(pk=reply.pk).aupdate(
        status=Message.Status.INTERRUPTED, content="kept text", **stored
    )
    await events.messages_appended(conversation.pk, [reply.pk], after=reply.parent_id)
    assert "<p>kept text</p>" in await comm.receive_from()
    await events.message_finished(conversation.pk, reply.pk, {"cursor": tabs_at, "html": ending})
    end = await comm.receive_from()
    assert end.lstrip().startswith(f'<article id="m{reply.pk}"') and end.count("kept text") == 1
    await comm.disconnect()


async def test_a_frame_too_large_for_the_socket_makes_the_tab_fetch_the_reply(
    conversation, user, monkeypatch
):
    """A snapshot over the frame limit becomes a fetch of the message over HTTP; the reply's
    later frames are dropped (they would apply to text the tab does not have) until it ends.
    (tests/e2e/test_large_replies.py follows a large reply to its end.)"""
    monkeypatch.setattr("chat.consumers.MAX_FRAME_BYTES", 200)
    layer = get_channel_layer()
    worker_channel = await layer.new_channel()
    await events.join_generation(7, worker_channel)
    comm = communicator(conversation.pk, user)
    await comm.connect()
    view, frames = frames_of("x" * 300, " more")
    await events.message_delta(conversation.pk, 7, **frames[1])  # a gap: ask for a snapshot
    request = await layer.receive(worker_channel)
    await events.snapshot_send(
        request["reply_channel"], 7, cursor=view.cursor(), html=view.snapshot()
    )
    fetch = await comm.receive_from()
    url = f"/c/{conversation.pk}/messages/7/"
    assert f'hx-get="{url}" hx-trigger="load" hx-target="#m7" hx-swap="outerHTML"' in fetch
    assert fetch.startswith('<div hx-swap-oob="beforeend:#m7">')
    await events.message_delta(conversation.pk, 7, **frames[1])
    await events.message_status(conversation.pk, 7, "")
    assert 'id="s7"' in await comm.receive_from()  # a status line still applies
    assert await comm.receive_nothing()
    await comm.disconnect()


async def test_new_messages_too_large_for_a_frame_are_fetched_one_by_one(
    conversation, user, sent_to_worker, monkeypatch
):
    monkeypatch.setattr("chat.consumers.MAX_FRAME_BYTES", 200)
    _, answered = await sync_to_async(services.message_submit)(
        conversation=conversation, content="A first question"
    )
    await Message.objects.filter(pk=answered.pk).aupdate(status=Message.Status.COMPLETE)
    mine, reply = await sync_to_async(services.message_submit)(
        conversation=conversation, content="long " * 100
    )
    comm = communicator(conversation.pk, user)
    await comm.connect()
    await events.messages_appended(conversation.pk, [mine.pk, reply.pk], after=mine.parent_id)
    frame = await comm.receive_from()
    # They name the message they follow: a tab that shows another loads again.
    assert frame.startswith(f'<div hx-swap-oob="beforeend:#messages" data-after="{answered.pk}">')
    for message in (mine, reply):
        assert (
            f'<article id="m{message.pk}" class="message loading" hx-get="/c/{conversation.pk}/messages/{message.pk}/"'
            in frame
        )
    await comm.disconnect()


async def test_new_messages_drawn_by_the_sender_are_relayed_without_reading_them(
    conversation, user, monkeypatch
):
    """A turn's new messages come drawn once for every tab: no tab reads the database."""
    comm = communicator(conversation.pk, user)
    await comm.connect()

    def unread(*args: object) -> None:
        raise AssertionError("read from the database")

    monkeypatch.setattr("chat.consumers._render_appended", unread)
    monkeypatch.setattr("chat.consumers._render_title", unread)
    html = '<div hx-swap-oob="beforeend:#messages"><article id="m7"></article></div>'
    await events._messages_appended(conversation.pk, [7], after=6, html=html, active=[])
    assert await comm.receive_from() == html
    title = '<h1 id="conversation-title" hx-swap-oob="true">A title</h1>'
    await events.conversation_updated(conversation.pk, html=title)
    assert await comm.receive_from() == title
    await comm.disconnect()


async def test_a_second_resync_within_a_second_is_answered_when_the_second_is_up(
    conversation, alice_session, monkeypatch
):
    """The page asks again when it has drawn a reply anew (a version switched back): that
    request is answered a little later, not dropped, and more than one waiting is not kept."""
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    monkeypatch.setattr("chat.consumers.RESYNC_INTERVAL", 0.6)  # far from the 0.1 s looked at
    _, reply = await sync_to_async(services.message_submit)(conversation=conversation, content="q")
    await Message.objects.filter(pk=reply.pk).aupdate(
        status=Message.Status.COMPLETE, **services.rendered_fields(content="done", reasoning="")
    )
    comm = socket_for(conversation.pk, alice_session)
    await comm.connect()
    for _ in range(5):
        await comm.send_json_to({"resync": reply.pk})
    assert f'<article id="m{reply.pk}"' in await comm.receive_from()
    assert await comm.receive_nothing(timeout=0.1)
    assert f'<article id="m{reply.pk}"' in await comm.receive_from(timeout=1)
    assert await comm.receive_nothing(timeout=0.5)
    await comm.disconnect()


async def test_a_socket_asking_for_many_replies_gets_a_budget_and_keeps_nothing_of_them(
    conversation, alice_session, monkeypatch
):
    """Each request for a message id not seen before read the database (the ORM's one thread,
    which every socket shares) and was remembered for good; each one deferred left its task
    behind. 3,000 requests for made-up ids took 8.7 s of that thread."""
    from chat import consumers, selectors

    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    monkeypatch.setattr(consumers, "RESYNC_INTERVAL", 0.5)
    sockets: list[consumers.ConversationConsumer] = []
    connect = consumers.ConversationConsumer.connect

    async def recording(self):
        sockets.append(self)
        await connect(self)

    monkeypatch.setattr(consumers.ConversationConsumer, "connect", recording)
    reads = []
    read = selectors.amessage_in_conversation

    async def counting(**kwargs):
        reads.append(kwargs["message_id"])
        return await read(**kwargs)

    monkeypatch.setattr(selectors, "amessage_in_conversation", counting)
    _, reply = await sync_to_async(services.message_submit)(conversation=conversation, content="q")
    await Message.objects.filter(pk=reply.pk).aupdate(
        status=Message.Status.COMPLETE, **services.rendered_fields(content="done", reasoning="")
    )
    comm = socket_for(conversation.pk, alice_session)
    await comm.connect()
    await comm.send_json_to({"resync": reply.pk})
    await comm.send_json_to({"resync": reply.pk})  # answered when its second is up
    for made_up in range(10_000, 10_200):
        await comm.send_json_to({"resync": made_up})
    assert f'<article id="m{reply.pk}"' in await comm.receive_from(timeout=1)
    assert f'<article id="m{reply.pk}"' in await comm.receive_from(timeout=1)
    # The budget (the reply among it), then the deferred request in the next second.
    assert len(reads) == consumers.RESYNC_BUDGET + 1
    (socket,) = sockets
    await asyncio.sleep(0.05)  # the deferred request's task ends after its answer is sent
    assert list(socket.last_requested) == [reply.pk]
    assert not socket._later  # the deferred request's task, done, is not kept
    await comm.disconnect()


async def test_a_snapshot_nobody_waits_for_is_not_drawn(conversation, user):
    """A late snapshot (the reply ended and was sent whole meanwhile) would take the tab back."""
    layer = get_channel_layer()
    worker_channel = await layer.new_channel()
    await events.join_generation(7, worker_channel)
    comm = communicator(conversation.pk, user)
    await comm.connect()
    view, frames = frames_of("some ", "text")
    await events.message_delta(conversation.pk, 7, **frames[1])  # a gap: a snapshot is awaited
    request = await layer.receive(worker_channel)
    await events.snapshot_send(
        request["reply_channel"], 7, cursor=view.cursor(), html=view.snapshot()
    )
    assert "some text" in await comm.receive_from()
    # The same answer again, late: nobody waits for it any more.
    await events.snapshot_send(request["reply_channel"], 7, cursor=START, html="<div>old</div>")
    assert await comm.receive_nothing()
    await comm.disconnect()


async def test_events_of_a_generation_are_not_drawn_over_its_saved_end(
    conversation, alice_session, monkeypatch
):
    """The socket's own messages overtake the channel layer's: a tab can ask for a fast reply,
    get it whole as saved, and only then receive the events that streamed it. They must not
    be drawn on top of it (its text would show twice)."""
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    _, reply = await sync_to_async(services.message_submit)(conversation=conversation, content="q")
    view = ReplyRenderer(reply.pk, "", "")
    cursor, html = view.frame(Frame(0, "kept text", 0, "", None))
    tabs_at = view.cursor()
    stored, ending = view.finish()
    await Message.objects.filter(pk=reply.pk).aupdate(
        status=Message.Status.INTERRUPTED, content="kept text", **stored
    )
    comm = socket_for(conversation.pk, alice_session)
    await comm.connect()
    await comm.send_json_to({"resync": reply.pk})
    assert "<p>kept text</p>" in await comm.receive_from()
    await events.message_started(conversation.pk, reply.pk, cursor=START, html="")
    await events.message_delta(conversation.pk, reply.pk, cursor=cursor, next=tabs_at, html=html)
    await events.message_finished(conversation.pk, reply.pk, {"cursor": tabs_at, "html": ending})
    again = await comm.receive_from()
    assert again.lstrip().startswith(f'<article id="m{reply.pk}"')  # whole, not appended
    assert again.count("kept text") == 1
    assert await comm.receive_nothing()
    await comm.disconnect()


async def test_a_reply_drawn_empty_by_its_turn_is_not_snapshotted_when_the_page_asks(
    conversation, alice_session, monkeypatch
):
    """The turn's event draws the new reply empty in every tab, and its element asks for a
    resync as it appears (`ws-send` on load). The reply has not started: the tab stands where
    its first frame applies, so no snapshot is asked for (it would redraw what the tab shows);
    its frames follow."""
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    comm = socket_for(conversation.pk, alice_session)
    assert (await comm.connect())[0]
    layer = get_channel_layer()
    worker = await layer.new_channel()
    _, reply = await sync_to_async(services.message_submit)(conversation=conversation, content="q")
    await events.join_generation(reply.pk, worker)  # as a started generation would be
    turn = await comm.receive_from()
    assert f'<article id="m{reply.pk}"' in turn
    assert f"hx-vals='{{\"resync\": {reply.pk}}}'" in turn  # what the page sends on load
    await comm.send_json_to({"resync": reply.pk})
    with pytest.raises(asyncio.TimeoutError):
        async with asyncio.timeout(0.3):
            await layer.receive(worker)
    _, frames = frames_of("Hello", message_id=reply.pk)
    await events.message_started(conversation.pk, reply.pk, cursor=START, html="")
    await events.message_delta(conversation.pk, reply.pk, **frames[0])
    assert "Hello" in await comm.receive_from()
    await comm.disconnect()


async def test_a_late_turn_event_does_not_reopen_a_reply_the_tab_has_whole(
    conversation, alice_session, monkeypatch
):
    """The turn's event can reach a socket after the page, drawn from its send's answer, asked
    for the reply and got it whole (it had finished). The event's list of replies streaming is
    from the turn's saving: the reply must stay whole, and the frames that streamed it must
    not be drawn over it (its text would show twice)."""
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    sent: list[tuple[Any, Any]] = []
    monkeypatch.setattr("chat.events.messages_appended_sync", lambda *a, **k: sent.append((a, k)))
    _, reply = await sync_to_async(services.message_submit)(conversation=conversation, content="q")
    ((args, kwargs),) = sent
    await Message.objects.filter(pk=reply.pk).aupdate(
        status=Message.Status.COMPLETE,
        content="Hi there",
        **services.rendered_fields(content="Hi there", reasoning=""),
    )
    comm = socket_for(conversation.pk, alice_session)
    assert (await comm.connect())[0]
    await comm.send_json_to({"resync": reply.pk})
    assert f'<article id="m{reply.pk}"' in await comm.receive_from()  # sent whole
    await events._messages_appended(*args, **kwargs)  # the turn's event, late
    await comm.receive_from()  # its articles (the page drops those it shows)
    _, frames = frames_of("Hi there", message_id=reply.pk)
    await events.message_started(conversation.pk, reply.pk, cursor=START, html="")
    await events.message_delta(conversation.pk, reply.pk, **frames[0])
    assert await comm.receive_nothing()
    await comm.disconnect()


def test_a_turn_whose_event_fails_still_starts_its_reply(user, monkeypatch, caplog):
    """The turn's event goes out before the reply is started; should sending it fail, the
    reply is started all the same (not left pending until recovery offers it again)."""
    started: list[int] = []
    monkeypatch.setattr("chat.events.request_generation", started.append)

    def failing(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the turn's event failed")

    monkeypatch.setattr("chat.events.messages_appended_sync", failing)
    conversation = services.conversation_create(owner=user)
    _, reply = services.message_submit(conversation=conversation, content="q")
    assert started == [reply.pk]
    assert "the turn's event failed" in caplog.text


async def test_a_changed_path_is_drawn_for_the_other_tabs_not_for_the_tab_that_asked(
    conversation, user
):
    """The tab that asked draws the change from its answer: drawn from the event too, the
    control that asked was gone before the answer came, and htmx dropped the answer."""
    user_message, reply = await sync_to_async(services.message_submit)(
        conversation=conversation, content="q"
    )
    await Message.objects.filter(pk=reply.pk).aupdate(status="complete", content="a1")
    tabs = {}
    for name in ("asker", "other"):
        tabs[name] = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), f"/ws/c/{conversation.pk}/?tab={name}"
        )
        tabs[name].scope["user"] = user
        assert (await tabs[name].connect())[0]
    await sync_to_async(services.message_select)(message=reply, tab="asker")
    drawn = await tabs["other"].receive_from(timeout=5)
    assert f'data-path="{user_message.pk}"' in drawn
    assert f'hx-swap-oob="delete:#m{user_message.pk} ~ article"' in drawn
    assert f'<article id="m{reply.pk}"' in drawn
    assert await tabs["asker"].receive_nothing(timeout=0.5)
    for tab in tabs.values():
        await tab.disconnect()


async def test_a_changed_path_is_drawn_once_for_all_the_tabs_of_a_process(
    conversation, user, monkeypatch
):
    """Each socket read and drew the whole path itself: one version switch with 50 tabs open
    held the ORM's one thread, which every socket shares, for about 2 s."""
    from chat import consumers

    renders = []
    render = consumers._render_path

    async def counting(*args):
        renders.append(args)
        return await render(*args)

    monkeypatch.setattr(consumers, "_render_path", counting)
    user_message, reply = await sync_to_async(services.message_submit)(
        conversation=conversation, content="q"
    )
    await Message.objects.filter(pk=reply.pk).aupdate(status="complete", content="a1")
    tabs = []
    for number in range(5):
        tab = WebsocketCommunicator(
            URLRouter(websocket_urlpatterns), f"/ws/c/{conversation.pk}/?tab=t{number}"
        )
        tab.scope["user"] = user
        assert (await tab.connect())[0]
        tabs.append(tab)
    await sync_to_async(services.message_select)(message=reply, tab="asker")
    for tab in tabs:
        assert f'<article id="m{reply.pk}"' in await tab.receive_from(timeout=5)
    assert len(renders) == 1
    await sync_to_async(services.message_select)(message=reply, tab="asker")  # a new event
    for tab in tabs:
        assert f'<article id="m{reply.pk}"' in await tab.receive_from(timeout=5)
        await tab.disconnect()
    assert len(renders) == 2


async def test_a_user_may_open_so_many_sockets_and_the_next_is_told_why(
    conversation, alice_session, other_user, settings
):
    """Sixty sockets from one session were all accepted: each takes memory and a share of
    every event's fan-out, which the process's other users pay for."""
    from chat.socket_protocol import CLOSE_TOO_MANY_SOCKETS
    from tests.live import asession_cookie_for

    settings.CHAT_SOCKETS_PER_USER = 3
    open_ = [socket_for(conversation.pk, alice_session) for _ in range(3)]
    for comm in open_:
        assert (await comm.connect())[0]
    one_more = socket_for(conversation.pk, alice_session)
    assert (await one_more.connect())[0]  # accepted, to be told why it closes
    assert await closed_with(one_more) == CLOSE_TOO_MANY_SOCKETS
    # Another user's sockets are their own.
    theirs = await sync_to_async(services.conversation_create)(owner=other_user)
    comm = socket_for(theirs.pk, await asession_cookie_for(other_user))
    assert (await comm.connect())[0]
    assert await comm.receive_nothing(timeout=0.2)
    await comm.disconnect()
    # A tab closed makes room for another.
    await open_.pop().disconnect()
    again = socket_for(conversation.pk, alice_session)
    assert (await again.connect())[0]
    assert await again.receive_nothing(timeout=0.2)
    for comm in [*open_, again]:
        await comm.disconnect()


async def test_a_frame_whose_text_is_held_back_goes_to_no_tab(user, monkeypatch):
    """A frame of a list item's "-" alone (held back by the renderer until its first word)
    changes nothing on a tab: it was sent to every tab of the conversation all the same (a
    message through Redis in a cluster), and started the coalescer's window. It now goes
    nowhere, and says so (False) to the coalescer."""
    from chat.streaming.generation import Generation

    def claimed() -> Message:
        conversation = services.conversation_create(owner=user)
        _, reply = services.message_submit(conversation=conversation, content="q")
        Message.objects.filter(pk=reply.pk).update(status=Message.Status.STREAMING)
        reply.refresh_from_db()
        return reply

    sent: list[dict[str, Any]] = []

    async def message_delta(conversation_id: Any, message_id: int, **frame: Any) -> None:
        sent.append(frame)

    monkeypatch.setattr(events, "message_delta", message_delta)
    generation = Generation(reply=await sync_to_async(claimed)(), worker_id="w")
    assert await generation._send_frame(Frame(0, "Steps:\n\n", 0, "", None))
    assert not await generation._send_frame(Frame(8, "-", 0, "", None))
    assert len(sent) == 1
    assert await generation._send_frame(Frame(9, " run", 0, "", None))
    assert sent[1]["cursor"] == sent[0]["next"]  # the tabs go on from where they stand
    assert "<li>" in sent[1]["html"] and "run" in sent[1]["html"]
