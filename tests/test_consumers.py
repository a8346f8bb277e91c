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

from chat import events, services
from chat.models import Conversation, Message
from chat.routing import websocket_urlpatterns
from chatsite.asgi import websocket_application

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


async def test_anonymous_user_is_refused(conversation):
    comm = communicator(conversation.pk, AnonymousUser())
    connected, _code = await comm.connect()
    assert not connected
    await comm.disconnect()


async def test_another_users_conversation_is_refused(conversation, other_user):
    comm = communicator(conversation.pk, other_user)
    connected, _ = await comm.connect()
    assert not connected
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


async def test_deltas_are_relayed_escaped_and_trimmed_by_offset(conversation, user):
    comm = communicator(conversation.pk, user)
    await comm.connect()
    await events.message_started(conversation.pk, 7)
    assert 'id="s7"' in await comm.receive_from()
    await events.message_delta(
        conversation.pk,
        7,
        content_offset=0,
        content="<i>Hi",
        reasoning_offset=0,
        reasoning="",
        tool_calls=None,
    )
    assert await comm.receive_from() == '<span id="c7" hx-swap-oob="beforeend">&lt;i&gt;Hi</span>'
    # A frame that overlaps what the tab has (a resent frame) only adds the new part.
    await events.message_delta(
        conversation.pk,
        7,
        content_offset=3,
        content="Hi&there",
        reasoning_offset=0,
        reasoning="",
        tool_calls=None,
    )
    assert await comm.receive_from() == '<span id="c7" hx-swap-oob="beforeend">&amp;there</span>'
    await comm.disconnect()


async def test_a_gap_in_offsets_asks_the_worker_for_a_snapshot(conversation, user):
    layer = get_channel_layer()
    worker_channel = await layer.new_channel()
    await events.join_generation(7, worker_channel)
    comm = communicator(conversation.pk, user)
    await comm.connect()
    await events.message_delta(
        conversation.pk,
        7,
        content_offset=5,
        content="later",
        reasoning_offset=0,
        reasoning="",
        tool_calls=None,
    )
    request = await layer.receive(worker_channel)
    assert request["type"] == "generation.snapshot_request" and request["message_id"] == 7
    # Frames that arrive before the snapshot are covered by it, so they are held back.
    await events.message_delta(
        conversation.pk,
        7,
        content_offset=10,
        content=" more",
        reasoning_offset=0,
        reasoning="",
        tool_calls=None,
    )
    await events.snapshot_send(
        request["reply_channel"], 7, content="early later more", reasoning="", tool_calls=[]
    )
    snapshot = await comm.receive_from()
    assert '<div id="c7" hx-swap-oob="innerHTML">early later more</div>' in snapshot
    await events.message_delta(
        conversation.pk,
        7,
        content_offset=16,
        content="!",
        reasoning_offset=0,
        reasoning="",
        tool_calls=None,
    )
    assert await comm.receive_from() == '<span id="c7" hx-swap-oob="beforeend">!</span>'
    assert await comm.receive_nothing()
    await comm.disconnect()


async def test_a_finished_reply_is_sent_rendered_from_the_database(conversation, user, monkeypatch):
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    _, reply = await sync_to_async(services.message_submit)(conversation=conversation, content="hi")
    await Message.objects.filter(pk=reply.pk).aupdate(
        status=Message.Status.COMPLETE, content="**bold** <script>x</script>"
    )
    comm = communicator(conversation.pk, user)
    await comm.connect()
    await events.message_finished(conversation.pk, reply.pk)
    html = await comm.receive_from()
    assert f'<article id="m{reply.pk}"' in html and 'hx-swap-oob="true"' in html
    assert "<strong>bold</strong>" in html and "<script>" not in html
    await comm.disconnect()


async def test_a_tab_that_asks_for_a_finished_reply_gets_it(conversation, user, monkeypatch):
    """The page asks for a resync when a reply's element appears; if the reply already
    finished (a fast upstream beat the HTTP response), the tab gets the final version."""
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    _, reply = await sync_to_async(services.message_submit)(conversation=conversation, content="hi")
    await Message.objects.filter(pk=reply.pk).aupdate(
        status=Message.Status.COMPLETE, content="done"
    )
    comm = communicator(conversation.pk, user)
    await comm.connect()
    await comm.send_json_to({"resync": reply.pk, "HEADERS": {}})
    assert f'<article id="m{reply.pk}"' in await comm.receive_from()
    await comm.disconnect()


async def test_a_tab_cannot_ask_for_another_conversations_message(
    conversation, user, other_user, monkeypatch
):
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    theirs = await sync_to_async(services.conversation_create)(owner=other_user)
    _, reply = await sync_to_async(services.message_submit)(conversation=theirs, content="secret")
    await Message.objects.filter(pk=reply.pk).aupdate(
        status=Message.Status.COMPLETE, content="secret"
    )
    comm = communicator(conversation.pk, user)
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
            "BACKEND": "chat.channel_layers.InProcessChannelLayer",
            "CONFIG": {"capacity": 1},
        }
    }
    layer = get_channel_layer()
    worker_channel = await layer.new_channel()
    await events.join_generation(7, worker_channel)
    comm = communicator(conversation.pk, user)
    await comm.connect()
    await events.message_started(conversation.pk, 7)
    await comm.receive_from()
    # A burst of frames faster than the consumer reads: the full channel drops some.
    text = "aaabbbcccdddeee"

    async def frame(i: int) -> None:
        await events.message_delta(
            conversation.pk,
            7,
            content_offset=3 * i,
            content=text[3 * i : 3 * i + 3],
            reasoning_offset=0,
            reasoning="",
            tool_calls=None,
        )

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
        request["reply_channel"], 7, content=text, reasoning="", tool_calls=[]
    )
    from tests.live import PageModel

    page = PageModel()
    for earlier in delivered:
        page.apply(earlier)
    while not any('hx-swap-oob="innerHTML"' in f for f in page.frames):
        page.apply(await comm.receive_from())
    assert await comm.receive_nothing()
    assert page.content(7) == text
    await comm.disconnect()
