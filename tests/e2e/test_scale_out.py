"""Two daphne processes and two `runworker chat-stream` processes on Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import signal
import uuid

import pytest
from django.conf import settings
from redis.asyncio import Redis

from chat.events import conversation_group, user_group
from chat.models import Message
from tests.e2e import scenarios
from tests.faults import assert_running
from tests.live import ChatClient, PageModel, read_until_finished, reply_id_from, shown, wait_for

pytestmark = [
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
    pytest.mark.usefixtures("flushed_redis"),
]


@pytest.fixture
def cluster(start_server):
    """`cluster(web_generates=False, **env)` -> (web processes, worker processes)."""

    def start(*, web_generates: bool = False, **env):
        """`web_generates`: the web processes run the streaming consumer too, and start the
        replies they are asked for (CHAT_EMBEDDED_WORKER, the default); else only the
        workers generate."""
        workers = [start_server(worker=True, **env) for _ in range(2)]
        embedded = "true" if web_generates else "false"
        web = [start_server(CHAT_EMBEDDED_WORKER=embedded, **env) for _ in range(2)]
        return web, workers

    return start


@pytest.mark.parametrize("web_generates", [False, True])
async def test_a_conversation_watched_from_both_web_processes_gets_identical_text(
    cluster, fake_upstream, alice_session, web_generates
):
    web, _ = cluster(web_generates=web_generates)
    await scenarios.watched_from_two_tabs(web, alice_session, fake_upstream)


@pytest.mark.parametrize("web_generates", [False, True])
@pytest.mark.parametrize("pause", [0.0, 3.0])
async def test_reconnecting_to_the_other_web_process_loses_and_repeats_nothing(
    cluster, fake_upstream, alice_session, pause, web_generates
):
    web, _ = cluster(web_generates=web_generates)
    await scenarios.reconnect_mid_stream(
        web, alice_session, fake_upstream, pause=pause, seed=int(pause * 10) + 7
    )


async def test_closing_the_tab_does_not_stop_the_reply(cluster, fake_upstream, alice_session):
    web, _ = cluster()
    await scenarios.closing_the_tab_keeps_generating(web, alice_session, fake_upstream)


async def test_ten_conversations_at_once_are_spread_over_both_workers(
    cluster, fake_upstream, alice_session
):
    web, workers = cluster(CHAT_MAX_CONCURRENT_GENERATIONS="5")
    expected = scenarios.slow_plan(fake_upstream, tokens=[f"t{i} " for i in range(20)], delay=0.05)
    client = ChatClient(web[0], alice_session)
    conversations = [await client.create_conversation() for _ in range(10)]
    responses = await asyncio.gather(*(client.send(c, "go") for c in conversations))
    reply_ids = [reply_id_from(r) for r in responses]

    async def all_complete() -> bool:
        done = await Message.objects.filter(pk__in=reply_ids, status="complete").acount()
        return done == len(reply_ids)

    await wait_for(all_complete, timeout=60)
    await client.aclose()
    owners = {m.lease_owner async for m in Message.objects.filter(pk__in=reply_ids)}
    assert owners == {w.worker_id for w in workers}
    assert {m.content async for m in Message.objects.filter(pk__in=reply_ids)} == {expected}


async def test_a_worker_killed_mid_stream_leaves_the_reply_interrupted_with_its_checkpoint(
    cluster, fake_upstream, alice_session
):
    web, workers = cluster(CHAT_CHECKPOINT_SECONDS="0.3", CHAT_LEASE_SECONDS="2")
    expected = scenarios.slow_plan(fake_upstream, delay=0.1)  # 8 s of streaming
    client = ChatClient(web[0], alice_session)
    conversation_id = await client.create_conversation()
    page = PageModel()
    async with client.socket(conversation_id) as ws:
        reply_id = reply_id_from(await client.send(conversation_id, "long one"))

        async def checkpointed() -> bool:
            return bool((await Message.objects.aget(pk=reply_id)).content)

        await wait_for(checkpointed, timeout=10)
        owner = (await Message.objects.aget(pk=reply_id)).lease_owner
        victim = next(w for w in workers if w.worker_id == owner)
        victim.signal(signal.SIGKILL)
        killed_at = asyncio.get_running_loop().time()
        # The surviving worker's recovery gives the reply up, and the tab is told.
        await read_until_finished(ws, page, reply_id, timeout=20)
        took = asyncio.get_running_loop().time() - killed_at
    await client.aclose()
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.status == "interrupted"
    assert reply.content and expected.startswith(reply.content) and reply.content != expected
    assert took < 2 + 2 / 3 + 2  # lease, a recovery interval, and slack for a busy machine
    assert "Retry" in page.finished[reply_id]


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
async def test_a_worker_stopped_with_sigterm_saves_all_text_received(
    cluster, fake_upstream, alice_session, event_loop
):
    """On either event loop (`CHAT_EVENT_LOOP`): the worker's signal handlers are the loop's."""
    # No checkpoint: all must come at exit.
    web, workers = cluster(CHAT_CHECKPOINT_SECONDS="30", CHAT_EVENT_LOOP=event_loop)
    expected = scenarios.slow_plan(fake_upstream, delay=0.1)
    client = ChatClient(web[0], alice_session)
    conversation_id = await client.create_conversation()
    page = PageModel()
    async with client.socket(conversation_id) as ws:
        reply_id = await scenarios.long_reply_under_way(client, conversation_id, ws, page)
        owner = (await Message.objects.aget(pk=reply_id)).lease_owner
        victim = next(w for w in workers if w.worker_id == owner)
        assert f"(event loop: {event_loop})" in victim.log_text()
        victim.signal(signal.SIGTERM)
        seen_at_sigterm = page.content(reply_id)
        await read_until_finished(ws, page, reply_id, timeout=20)
    await client.aclose()
    assert victim.process.wait(10) == 0
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.status == "interrupted"
    assert reply.content.startswith(seen_at_sigterm) and expected.startswith(reply.content)
    # All text received: everything the tab was sent is saved, and nothing more was streamed.
    assert page.content(reply_id) == shown(reply.content)
    assert fake_upstream.requests[0].disconnected


async def test_double_submit_with_one_key_creates_one_message_and_one_reply(
    cluster, fake_upstream, alice_session
):
    web, _ = cluster()
    client = ChatClient(web[0], alice_session)
    other = ChatClient(web[1], alice_session)
    conversation_id = await client.create_conversation()
    key = uuid.uuid4()
    first, second = await asyncio.gather(
        client.send(conversation_id, "only once", idempotency_key=key),
        other.send(conversation_id, "only once", idempotency_key=key),
    )
    assert first.status_code == second.status_code == 200
    assert reply_id_from(first) == reply_id_from(second)
    reply_id = reply_id_from(first)

    async def complete() -> bool:
        return (await Message.objects.aget(pk=reply_id)).status == "complete"

    await wait_for(complete)
    await client.aclose()
    await other.aclose()
    roles = [m.role async for m in Message.objects.filter(conversation_id=conversation_id)]
    assert roles == ["user", "assistant"]
    assert len(fake_upstream.requests) == 1


async def test_idle_workers_and_sockets_keep_listening_past_the_redis_socket_timeout(
    cluster, fake_upstream, alice_session
):
    """redis-py 8 defaults socket_timeout to 5 s, which broke channels-redis's blocking reads
    (channels_redis issue #422): an idle worker died and idle sockets were dropped."""
    web, workers = cluster()
    client = ChatClient(web[0], alice_session)
    conversation_id = await client.create_conversation()
    async with client.socket(conversation_id) as ws:
        await asyncio.sleep(6.5)
        assert_running(workers)
        reply_id = reply_id_from(await client.send(conversation_id, "still there?"))
        page = await read_until_finished(ws, PageModel(), reply_id)
    await client.aclose()
    assert page.content(reply_id) == shown("Hello, world!")


# --- Web processes that generate the replies they are asked for (CHAT_EMBEDDED_WORKER) -------


async def test_a_worker_runs_one_streaming_consumer_whatever_chat_embedded_worker_says(
    start_server, fake_upstream, alice_session
):
    """`runworker` loads the web's application, which starts an embedded streaming consumer
    at its first call when CHAT_EMBEDDED_WORKER is on (the default): not in a worker, which
    runs its own."""
    worker = start_server(worker=True, CHAT_EMBEDDED_WORKER="true")
    web = start_server(CHAT_EMBEDDED_WORKER="false")
    client = ChatClient(web, alice_session)
    conversation_id = await client.create_conversation()
    async with client.socket(conversation_id) as ws:
        reply_id = reply_id_from(await client.send(conversation_id, "hello"))
        await read_until_finished(ws, PageModel(), reply_id)
    await client.aclose()
    assert (await Message.objects.aget(pk=reply_id)).lease_owner == worker.worker_id
    assert "streaming consumer running inside the web process" not in worker.log_text()


async def test_a_reply_streams_from_the_web_process_asked_without_a_round_trip_per_frame(
    cluster, fake_upstream, alice_session, redis_server
):
    """The web process that took the message generates the reply, and its frames reach its
    own socket without crossing Redis: through Redis, each frame was one more message added
    to the web process's queue (a ZADD in the group send's script)."""
    web, _ = cluster(web_generates=True, REDIS_URL=redis_server.url)  # a Redis of its own
    tokens = [f"w{i} " for i in range(300)]
    expected = scenarios.slow_plan(fake_upstream, tokens=tokens, delay=0.01)
    client = ChatClient(web[0], alice_session)
    conversation_id = await client.create_conversation()
    page = PageModel()
    frames = 0
    redis = Redis.from_url(redis_server.url)
    async with client.socket(conversation_id) as ws:
        added_before = _calls(await redis.info("commandstats"), "zadd")
        reply_id = reply_id_from(await client.send(conversation_id, "stream it here"))
        async with asyncio.timeout(30):
            while reply_id not in page.finished:
                page.apply(await ws.recv())
                frames += 1
        added = _calls(await redis.info("commandstats"), "zadd") - added_before
    await client.aclose()
    await redis.aclose()
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.content == expected and page.content(reply_id) == shown(expected)
    assert reply.lease_owner.split(":")[1] == str(web[0].process.pid)
    # About 3 s of streaming: a frame per coalescing window (30 ms, up to 120 ms on a busy
    # machine). Left in Redis: joining the reply's generation group.
    assert frames >= 15
    assert added < frames / 3, (added, frames)


async def test_each_tab_gets_the_new_turn_before_its_reply_and_never_text_it_already_has(
    cluster, fake_upstream, alice_session
):
    """The turn's event (its messages, for the conversation's other tabs) goes out before the
    reply starts. Sent after it, it overtook the reply's first frames at a tab in about a
    third of the turns under load, and the socket then asked for a snapshot: the whole text
    so far, sent again to a tab that showed it already."""
    web, _ = cluster(web_generates=True)
    expected = scenarios.slow_plan(fake_upstream, tokens=[f"s{i} " for i in range(40)], delay=0.02)
    client = ChatClient(web[0], alice_session)
    conversations = [await client.create_conversation() for _ in range(12)]

    async def turn(conversation_id: uuid.UUID) -> tuple[int, PageModel]:
        page = PageModel()
        async with client.socket(conversation_id) as ws:
            # As a person types after the page has loaded: a socket still opening asks for a
            # snapshot of the replies it finds streaming, this one's too.
            await asyncio.sleep(1.0)
            reply_id = reply_id_from(await client.send(conversation_id, "go"))
            await read_until_finished(ws, page, reply_id)
        return reply_id, page

    for reply_id, page in await asyncio.gather(*(turn(c) for c in conversations)):
        assert page.content(reply_id) == shown(expected)
        about_reply = re.compile(rf'id="[a-z]{reply_id}"')
        first = next(f for f in page.frames if about_reply.search(f))
        assert "beforeend:#messages" in first, page.frames[:3]
        redrawn = [f for f in page.frames if f'id="c{reply_id}" hx-swap-oob="innerHTML"' in f]
        assert not redrawn, redrawn[0][:300]
    await client.aclose()


def _calls(commandstats: dict[str, dict[str, int]], command: str) -> int:
    return commandstats.get(f"cmdstat_{command}", {}).get("calls", 0)


async def test_a_generating_web_process_stopped_with_sigterm_saves_all_text_received(
    cluster, fake_upstream, alice_session
):
    web, _ = cluster(web_generates=True, CHAT_CHECKPOINT_SECONDS="30")
    expected = scenarios.slow_plan(fake_upstream, delay=0.1)
    asked, watching = ChatClient(web[0], alice_session), ChatClient(web[1], alice_session)
    conversation_id = await asked.create_conversation()
    page = PageModel()
    async with watching.socket(conversation_id) as ws, asked.socket(conversation_id):
        reply_id = await scenarios.long_reply_under_way(asked, conversation_id, ws, page)
        web[0].signal(signal.SIGTERM)
        seen_at_sigterm = page.content(reply_id)
        await read_until_finished(ws, page, reply_id, timeout=20)
        assert await asyncio.to_thread(web[0].process.wait, 10) == 0
    for client in (asked, watching):
        await client.aclose()
    # Both tabs' sockets left the conversation's group, the stopping process's too (daphne
    # cancels its consumers, and `disconnect` does not run): else the group would name its
    # channel until it expires, and the other process would send frames there for nobody.
    redis = Redis.from_url(settings.REDIS_URL)
    group_key = f"asgi:group:{conversation_group(conversation_id)}"

    async def nobody_left() -> bool:
        return await redis.zcard(group_key) == 0

    await wait_for(nobody_left, timeout=10)
    await redis.aclose()
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.lease_owner.split(":")[1] == str(web[0].process.pid)
    assert reply.status == "interrupted"
    assert reply.content.startswith(seen_at_sigterm) and expected.startswith(reply.content)
    assert page.content(reply_id) == shown(reply.content)


async def test_a_web_process_stopped_with_a_grace_period_streams_its_reply_to_the_end(
    cluster, fake_upstream, alice_session
):
    """With CHAT_SHUTDOWN_GRACE_SECONDS, the web process generating a reply goes on streaming
    it after SIGTERM (its own sockets are closed; a tab on the other web process follows it to
    the end) and saves it complete before it exits."""
    web, _ = cluster(web_generates=True, CHAT_SHUTDOWN_GRACE_SECONDS="20")
    expected = scenarios.slow_plan(fake_upstream, delay=0.03)
    asked, watching = ChatClient(web[0], alice_session), ChatClient(web[1], alice_session)
    conversation_id = await asked.create_conversation()
    page = PageModel()
    async with watching.socket(conversation_id) as ws:
        reply_id = await scenarios.long_reply_under_way(asked, conversation_id, ws, page)
        web[0].signal(signal.SIGTERM)
        await read_until_finished(ws, page, reply_id, timeout=20)
        assert await asyncio.to_thread(web[0].process.wait, 20) == 0
    for client in (asked, watching):
        await client.aclose()
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.content) == ("complete", expected)
    assert reply.lease_owner.split(":")[1] == str(web[0].process.pid)
    assert page.content(reply_id) == shown(expected)


async def test_stop_still_ends_a_reply_its_stopping_web_process_is_finishing(
    cluster, fake_upstream, alice_session
):
    """During the grace period the stopping process still hears Stop for its replies."""
    web, _ = cluster(web_generates=True, CHAT_SHUTDOWN_GRACE_SECONDS="20")
    scenarios.slow_plan(fake_upstream, delay=0.05)
    asked, watching = ChatClient(web[0], alice_session), ChatClient(web[1], alice_session)
    conversation_id = await asked.create_conversation()
    page = PageModel()
    async with watching.socket(conversation_id) as ws:
        reply_id = await scenarios.long_reply_under_way(asked, conversation_id, ws, page)
        web[0].signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        assert (await watching.stop(conversation_id, reply_id)).status_code == 204
        await read_until_finished(ws, page, reply_id, timeout=5)
        assert await asyncio.to_thread(web[0].process.wait, 10) == 0
    for client in (asked, watching):
        await client.aclose()
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.status == "cancelled"
    assert page.content(reply_id) == shown(reply.content)
    assert fake_upstream.requests[0].disconnected


async def test_a_web_process_stopped_before_the_first_token_hands_the_reply_to_another(
    cluster, fake_upstream, alice_session
):
    """A deploy stops the web process generating a reply whose model has not answered yet: the
    reply goes back to the queue at once, another process streams it whole, and a tab on the
    other web process sees all of it, as if nothing had happened."""
    web, _ = cluster(web_generates=True)
    scenarios.first_answer_held(fake_upstream)
    asked, watching = ChatClient(web[0], alice_session), ChatClient(web[1], alice_session)
    conversation_id = await asked.create_conversation()
    page = PageModel()
    async with watching.socket(conversation_id) as ws:
        reply_id = reply_id_from(await asked.send(conversation_id, "hello?"))

        async def asked_the_model() -> bool:
            return len(fake_upstream.requests) == 1

        await wait_for(asked_the_model, timeout=10)
        web[0].signal(signal.SIGTERM)
        await read_until_finished(ws, page, reply_id, timeout=20)
        assert await asyncio.to_thread(web[0].process.wait, 10) == 0
    for client in (asked, watching):
        await client.aclose()
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.content) == ("complete", "Hello, world!")
    assert reply.lease_owner.split(":")[1] != str(web[0].process.pid)
    assert page.content(reply_id) == shown("Hello, world!")
    assert fake_upstream.requests[0].disconnected and len(fake_upstream.requests) == 2


async def test_a_socket_opened_just_before_sigterm_leaves_its_groups(
    start_server, alice_session, user
):
    """Daphne cancels each socket's consumer as it stops, and the consumer leaves its groups.
    It stopped cancelling at the request a socket was upgraded from, which it lists for up to
    a second after: a socket opened in that second stayed in its groups in Redis for a day,
    and the other processes sent it every frame of the conversation (chatsite.daphne_shutdown).
    """
    web = start_server()
    client = ChatClient(web, alice_session)
    conversation_id = await client.create_conversation()
    async with client.socket(conversation_id):  # open: it has joined its groups
        web.signal(signal.SIGTERM)
        assert await asyncio.to_thread(web.process.wait, 10) == 0
    await client.aclose()
    redis = Redis.from_url(settings.REDIS_URL)
    groups = [
        f"asgi:group:{conversation_group(conversation_id)}",
        f"asgi:group:{user_group(user.pk)}",
    ]
    members = [await redis.zcard(group) for group in groups]
    await redis.aclose()
    assert members == [0, 0]


async def test_a_generating_web_process_killed_leaves_the_reply_interrupted_for_the_others(
    cluster, fake_upstream, alice_session
):
    web, _ = cluster(web_generates=True, CHAT_CHECKPOINT_SECONDS="0.3", CHAT_LEASE_SECONDS="2")
    expected = scenarios.slow_plan(fake_upstream, delay=0.1)  # 8 s of streaming
    asked, watching = ChatClient(web[0], alice_session), ChatClient(web[1], alice_session)
    conversation_id = await asked.create_conversation()
    page = PageModel()
    async with watching.socket(conversation_id) as ws:
        reply_id = reply_id_from(await asked.send(conversation_id, "long one"))

        async def checkpointed() -> bool:
            return bool((await Message.objects.aget(pk=reply_id)).content)

        await wait_for(checkpointed, timeout=10)
        web[0].signal(signal.SIGKILL)
        # The other processes' recovery gives the reply up, and the tab is told.
        await read_until_finished(ws, page, reply_id, timeout=20)
    for client in (asked, watching):
        await client.aclose()
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.lease_owner.split(":")[1] == str(web[0].process.pid)
    assert reply.status == "interrupted"
    assert reply.content and expected.startswith(reply.content) and reply.content != expected
    assert "Retry" in page.finished[reply_id]
