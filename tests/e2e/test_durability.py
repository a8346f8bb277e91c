"""Durable, resumable streams on one process (SQLite, in-memory channel layer)."""

from __future__ import annotations

import asyncio
import signal
import uuid

import httpx
import pytest

from chat.models import Message
from tests.e2e import scenarios
from tests.fake_upstream import FakeRequest, chunk, reply_events, sse, tool_call_events
from tests.live import (
    ChatClient,
    PageModel,
    read_until_finished,
    reply_id_from,
    shown,
    text_of,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.mark.parametrize("pause", [0.0, 3.0])
async def test_reconnecting_mid_stream_shows_every_character_once(
    start_server, fake_upstream, alice_session, pause
):
    await scenarios.reconnect_mid_stream(
        [start_server()], alice_session, fake_upstream, pause=pause, seed=int(pause * 10) + 1
    )


async def test_a_second_tab_sees_the_same_live_stream(start_server, fake_upstream, alice_session):
    await scenarios.watched_from_two_tabs([start_server()], alice_session, fake_upstream)


async def test_closing_the_tab_does_not_stop_the_reply(start_server, fake_upstream, alice_session):
    await scenarios.closing_the_tab_keeps_generating([start_server()], alice_session, fake_upstream)


async def test_a_finished_conversation_opens_with_its_replies_rendered(
    start_server, fake_upstream, alice_session
):
    server = start_server()

    async def plan(request: FakeRequest):
        return await request.stream(reply_events(["Some ", "**bold** ", "text"]))

    fake_upstream.plan = plan
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    reply_id = reply_id_from(await client.send(conversation_id, "hi"))

    async def complete() -> bool:
        return (await Message.objects.aget(pk=reply_id)).status == "complete"

    await wait_for(complete)
    page = (await client.http.get(f"/c/{conversation_id}/")).text
    await client.aclose()
    assert "<strong>bold</strong>" in page and 'class="content markdown"' in page


async def killed_mid_reply(
    start_server, session, settings: dict[str, str], field: str = "content"
) -> tuple[ChatClient, uuid.UUID, Message]:
    """Send a message, wait for a checkpoint to save some of the reply's `field`, kill the
    server outright and start the next; once that one has given the reply up, return a client
    of it, the conversation and the reply as saved."""
    server = start_server(**settings)
    client = ChatClient(server, session)
    conversation_id = await client.create_conversation()
    reply_id = reply_id_from(await client.send(conversation_id, "a long one"))

    async def checkpointed() -> bool:
        return bool(getattr(await Message.objects.aget(pk=reply_id), field))

    await wait_for(checkpointed, timeout=8)
    server.signal(signal.SIGKILL)
    server.process.wait(5)
    await client.aclose()
    # A new server process finds the reply whose worker died and gives it up.
    client = ChatClient(start_server(**settings), session)

    async def interrupted() -> bool:
        return (await Message.objects.aget(pk=reply_id)).status == "interrupted"

    await wait_for(interrupted, timeout=15)
    return client, conversation_id, await Message.objects.aget(pk=reply_id)


async def test_a_killed_server_leaves_the_reply_interrupted_with_its_checkpoint(
    start_server, fake_upstream, alice_session
):
    expected = scenarios.slow_plan(fake_upstream, delay=0.05)  # 4 s of streaming
    settings = {"CHAT_CHECKPOINT_SECONDS": "0.3", "CHAT_LEASE_SECONDS": "1.5"}
    client, _, reply = await killed_mid_reply(start_server, alice_session, settings)
    await client.aclose()
    assert reply.content and expected.startswith(reply.content) and reply.content != expected
    assert "stopped" in reply.error


async def test_the_next_server_gives_up_a_killed_servers_reply_at_once(
    start_server, fake_upstream, alice_session
):
    """After a hard kill (or a development server's reload) on the same machine, the next
    process knows the lease's worker is dead: it does not wait for the lease to lapse (600 s
    here; 15 s by default, the tab showing the reply frozen meanwhile)."""
    expected = scenarios.slow_plan(fake_upstream, delay=0.05)  # 4 s of streaming
    settings = {"CHAT_CHECKPOINT_SECONDS": "0.3", "CHAT_LEASE_SECONDS": "600"}
    client, conversation_id, reply = await killed_mid_reply(start_server, alice_session, settings)
    page = (await client.http.get(f"/c/{conversation_id}/")).text
    await client.aclose()
    assert reply.content and expected.startswith(reply.content) and reply.content != expected
    assert "The server streaming this reply stopped." in page
    assert shown(reply.content) in text_of(page)


async def test_a_reply_still_thinking_is_checkpointed_and_a_killed_server_keeps_its_thinking(
    start_server, fake_upstream, alice_session
):
    """A checkpoint saved the thinking only once the answer's text changed: a reply killed
    while it thought (for a minute, with a reasoning model) lost all of it."""
    thought = [f"step {i}. " for i in range(400)]  # 20 s of thinking

    async def plan(request: FakeRequest):
        pieces = [sse(chunk(reasoning_content=step)) for step in thought]
        return await request.stream([sse(chunk("", role="assistant")), *pieces], delay=0.05)

    fake_upstream.plan = plan
    settings = {"CHAT_CHECKPOINT_SECONDS": "0.3", "CHAT_LEASE_SECONDS": "600"}
    client, _, reply = await killed_mid_reply(start_server, alice_session, settings, "reasoning")
    await client.aclose()
    assert reply.content == "" and reply.reasoning
    assert "".join(thought).startswith(reply.reasoning) and len(reply.reasoning) < 1000


async def test_a_lost_lease_stops_that_reply_alone_and_the_others_stream_on_checkpointed(
    start_server, fake_upstream, alice_session
):
    """One heartbeat a process checkpoints every reply it streams: the reply whose lease
    another worker took stops at the next beat, and the others go on being checkpointed,
    then end complete."""
    server = start_server(CHAT_CHECKPOINT_SECONDS="0.3", CHAT_LEASE_SECONDS="30")
    expected = scenarios.slow_plan(fake_upstream, delay=0.05)  # 4 s of streaming
    client = ChatClient(server, alice_session)
    replies = {}
    for question in ("first", "second", "third"):
        conversation_id = await client.create_conversation()
        replies[question] = reply_id_from(await client.send(conversation_id, question))
    others = [replies["first"], replies["third"]]

    async def streaming_texts(ids: list[int]) -> dict[int, str]:
        return {
            m.pk: m.content async for m in Message.objects.filter(pk__in=ids, status="streaming")
        }

    async def all_checkpointed() -> bool:
        texts = await streaming_texts(list(replies.values()))
        return len(texts) == 3 and all(texts.values())

    await wait_for(all_checkpointed, timeout=10)
    taken = replies["second"]
    await Message.objects.filter(pk=taken).aupdate(lease_owner="another-worker")
    at_the_take = await streaming_texts(others)
    checkpointed = (await Message.objects.aget(pk=taken)).content

    async def others_checkpointed_since() -> bool:
        texts = await streaming_texts(others)
        return len(texts) == 2 and all(texts[pk] != at_the_take.get(pk) for pk in others)

    await wait_for(others_checkpointed_since, timeout=10)

    async def others_complete() -> bool:
        statuses = [m.status async for m in Message.objects.filter(pk__in=others)]
        return statuses == ["complete", "complete"]

    await wait_for(others_complete, timeout=15)
    await client.aclose()
    for pk in others:
        assert (await Message.objects.aget(pk=pk)).content == expected
    request = next(
        r for r in fake_upstream.requests if r.body["messages"][-1]["content"] == "second"
    )
    assert request.disconnected and not request.finished
    stopped = await Message.objects.aget(pk=taken)
    assert (stopped.status, stopped.content) == ("streaming", checkpointed)
    assert stopped.content != expected


async def test_a_tool_slower_than_the_lease_keeps_its_reply(
    start_server, fake_upstream, alice_session
):
    """The heartbeat renews a reply's lease until its final save, through the tools it runs:
    two tool calls, each longer than the lease, do not make recovery give the reply up."""
    server = start_server(
        CHAT_TOOLS_ENABLED="true",
        CHAT_TEST_SLOW_TOOL_SECONDS="2.5",
        CHAT_CHECKPOINT_SECONDS="0.2",
        CHAT_LEASE_SECONDS="2",
    )
    scenarios.slow_tool_plan(fake_upstream, calls=2)
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    async with client.socket(conversation_id) as ws:
        reply_id = reply_id_from(await client.send(conversation_id, "look it up"))
        page = await read_until_finished(ws, PageModel(), reply_id)
    status = [f for f in page.frames if f'id="s{reply_id}"' in f and "Running" in f]
    assert ["(1 of 2)" in status[0], "(2 of 2)" in status[-1]] == [True, True]

    async def answered() -> bool:
        last = (
            await Message.objects.filter(conversation_id=conversation_id).order_by("-id").afirst()
        )
        return last is not None and last.status in {"complete", "error", "interrupted"}

    await wait_for(answered, timeout=20)
    await client.aclose()
    messages = [
        m async for m in Message.objects.filter(conversation_id=conversation_id).order_by("id")
    ]
    assert [(m.role, m.status) for m in messages] == [
        ("user", "complete"),
        ("assistant", "complete"),
        ("tool", "complete"),
        ("tool", "complete"),
        ("assistant", "complete"),
    ]
    tool_reply = messages[1]
    assert tool_reply.pk == reply_id and tool_reply.content == "Looking it up."
    assert [m.content for m in messages[2:4]] == ['{"result": "found"}'] * 2
    assert messages[-1].content == "Found it."


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
async def test_a_server_stopped_with_sigterm_saves_all_text_received(
    start_server, fake_upstream, alice_session, event_loop
):
    """The streaming consumer inside daphne stops as a worker does on SIGTERM: each reply in
    flight is saved `interrupted` with all its text, not only its last checkpoint. On either
    event loop (`CHAT_EVENT_LOOP`): Twisted's signal handlers must run on uvloop's too."""
    # No checkpoint: all must come at exit.
    server = start_server(CHAT_CHECKPOINT_SECONDS="30", CHAT_EVENT_LOOP=event_loop)
    expected = scenarios.slow_plan(fake_upstream, delay=0.1)
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    page = PageModel()
    async with client.socket(conversation_id) as ws:
        reply_id = await scenarios.long_reply_under_way(client, conversation_id, ws, page)
        assert f"(event loop: {event_loop})" in server.log_text()
        server.signal(signal.SIGTERM)
        seen_at_sigterm = page.content(reply_id)
        assert await asyncio.to_thread(server.process.wait, 10) == 0
    await client.aclose()
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.status == "interrupted"
    assert reply.content.startswith(seen_at_sigterm)
    assert expected.startswith(reply.content) and reply.content != expected
    assert fake_upstream.requests[0].disconnected


async def test_a_reply_left_pending_by_a_dead_server_is_generated_by_the_next(
    start_server, fake_upstream, alice_session
):
    """The in-memory channel layer dies with its process; the next server picks the reply up."""
    server = start_server()
    arrived = asyncio.Event()

    async def never_answer(request: FakeRequest):
        fake_upstream.loop.call_soon_threadsafe(arrived.set)
        await asyncio.sleep(3600)

    fake_upstream.plan = never_answer
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    reply_id = reply_id_from(await client.send(conversation_id, "stuck"))
    await asyncio.wait_for(arrived.wait(), 10)
    # Put the reply back to how it is when its `generate` message dies with the process before
    # any worker claimed it: pending, with nothing in any queue after the kill below.
    await Message.objects.filter(pk=reply_id).aupdate(status="pending", lease_expires=None)
    server.signal(signal.SIGKILL)
    server.process.wait(5)
    await client.aclose()
    fake_upstream.plan = fake_upstream.default_plan
    start_server()

    async def complete() -> bool:
        return (await Message.objects.aget(pk=reply_id)).status == "complete"

    await wait_for(complete, timeout=15)
    assert (await Message.objects.aget(pk=reply_id)).content == "Hello, world!"


async def test_a_server_stopped_with_a_grace_period_finishes_the_reply_first(
    start_server, fake_upstream, alice_session
):
    """CHAT_SHUTDOWN_GRACE_SECONDS: SIGTERM lets a reply in flight finish (and be saved
    complete) before the server exits. Meanwhile it takes no new connection: a tab must
    reconnect to a server that stays (chatsite.daphne_shutdown)."""
    server = start_server(CHAT_SHUTDOWN_GRACE_SECONDS="20")
    expected = scenarios.slow_plan(fake_upstream, tokens=scenarios.SLOW_TOKENS * 2, delay=0.03)
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    page = PageModel()
    async with client.socket(conversation_id) as ws:
        reply_id = await scenarios.long_reply_under_way(client, conversation_id, ws, page)
        server.signal(signal.SIGTERM)
        # Its socket is closed at once, with the code on which the page reconnects (to
        # another process), not left open and silent for the grace period.
        await asyncio.wait_for(ws.wait_closed(), 3)
        assert ws.close_code == 4013

        async def refused() -> bool:
            try:
                async with httpx.AsyncClient() as http:
                    await http.get(f"{server.url}/accounts/login/", timeout=1)
            except httpx.ConnectError:
                return True
            return False

        await wait_for(refused, timeout=3)
        assert server.process.poll() is None  # still finishing the reply
        assert await asyncio.to_thread(server.process.wait, 20) == 0
    await client.aclose()
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.content) == ("complete", expected)
    assert not fake_upstream.requests[0].disconnected


async def test_a_server_stopped_before_the_first_token_leaves_the_reply_for_the_next(
    start_server, fake_upstream, alice_session
):
    """SIGTERM while the model has not answered yet: the reply is not saved interrupted (the
    user would have to ask again) but handed back, pending; the next server generates it."""
    scenarios.first_answer_held(fake_upstream)
    server = start_server()
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    reply_id = reply_id_from(await client.send(conversation_id, "hello?"))

    async def asked() -> bool:
        return len(fake_upstream.requests) == 1

    await wait_for(asked, timeout=10)
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.process.wait, 10) == 0
    await client.aclose()
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.content, reply.lease_owner) == ("pending", "", "")
    assert "handed back 1 replies that had not started" in server.log_text()
    assert fake_upstream.requests[0].disconnected

    start_server()

    async def complete() -> bool:
        return (await Message.objects.aget(pk=reply_id)).status == "complete"

    await wait_for(complete, timeout=15)
    assert (await Message.objects.aget(pk=reply_id)).content == "Hello, world!"
    assert len(fake_upstream.requests) == 2


async def test_a_follow_up_handed_back_keeps_its_turns_tool_rounds(
    start_server, fake_upstream, alice_session
):
    """A tool round's follow-up the shutdown handed back is generated by the next server as
    the same turn's: at CHAT_MAX_TOOL_ROUNDS it is offered no tools (it was offered them
    again, counted as a new turn's first reply)."""
    never = asyncio.Event()

    async def hold(index: int) -> None:
        await never.wait()

    async def plan(request: FakeRequest):
        if request.index == 1:  # the follow-up: no first token before the shutdown
            return await request.stream(reply_events(["Never said."]), before_piece=hold)
        if request.index == 0 or "tools" in request.body:
            return await request.stream(tool_call_events(f"call_{request.index}", "launch_rockets"))
        return await request.stream(reply_events(["Done", " without tools."]))

    fake_upstream.plan = plan
    settings = {
        "CHAT_TOOLS_ENABLED": "true",
        "CHAT_MAX_TOOL_ROUNDS": "1",
        "CHAT_GENERATE_TITLES": "false",
    }
    server = start_server(**settings)
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    reply_id_from(await client.send(conversation_id, "launch?"))

    async def follow_up_asked() -> bool:
        return len(fake_upstream.requests) == 2

    await wait_for(follow_up_asked, timeout=10)
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.process.wait, 10) == 0
    await client.aclose()
    follow_up = (
        await Message.objects.filter(conversation_id=conversation_id).order_by("-id").afirst()
    )
    assert follow_up is not None
    assert (follow_up.role, follow_up.status) == ("assistant", "pending")

    start_server(**settings)

    async def answered() -> bool:
        return (await Message.objects.aget(pk=follow_up.pk)).status == "complete"

    await wait_for(answered, timeout=15)
    assert (await Message.objects.aget(pk=follow_up.pk)).content == "Done without tools."
    assert ["tools" in r.body for r in fake_upstream.requests] == [True, False, False]
    roles = [
        m.role async for m in Message.objects.filter(conversation_id=conversation_id).order_by("id")
    ]
    assert roles == ["user", "assistant", "tool", "assistant"]


async def test_a_turn_sent_from_one_tab_appears_in_the_other(
    start_server, fake_upstream, alice_session
):
    server = start_server()
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    async with client.socket(conversation_id) as other_tab:
        reply_id = reply_id_from(await client.send(conversation_id, "sent from tab one"))
        from tests.live import PageModel, read_until_finished

        page = await read_until_finished(other_tab, PageModel(), reply_id)
    await client.aclose()
    appended = next(f for f in page.frames if "beforeend:#messages" in f)
    assert "sent from tab one" in appended
    assert f'id="m{reply_id}"' in appended and f'id="m{reply_id - 1}"' in appended
    assert page.content(reply_id) == shown("Hello, world!")
