"""Redis killed while replies stream on two daphne and two `runworker chat-stream` processes
(the setup of test_scale_out.py, on a `redis-server` of the test's own)."""

from __future__ import annotations

import asyncio

import pytest

from chat.models import Message
from tests.e2e import scenarios
from tests.faults import (
    Tab,
    assert_outage_logged_once,
    assert_running,
    back_logged,
    close_code_of_a_new_socket,
    follow_once_streaming,
)
from tests.live import ChatClient, reply_id_from, shown, wait_for

pytestmark = [
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]

REPLIES = 6


@pytest.fixture
def cluster(redis_server, start_server):
    """`cluster(**env)` -> (web processes, worker processes) on the test's own Redis (set up
    before the servers, so that it goes after them)."""

    def start(**env):
        env = {"REDIS_URL": redis_server.url, **env}
        workers = [start_server(worker=True, **env) for _ in range(2)]
        web = [start_server(**env) for _ in range(2)]
        return web, workers

    return start


async def six_replies_through_an_outage(web, session, fake_upstream, redis_server, *, outage):
    """Six conversations, their tabs spread over both web processes; Redis is killed once
    every reply has text, and started again `outage` seconds later. Returns the tabs, the
    reply ids, the text each reply had when Redis went, and the close code of a socket
    opened during the outage."""
    expected = scenarios.slow_plan(fake_upstream, delay=0.1)  # 8 s of streaming
    clients = [ChatClient(web[i % 2], session) for i in range(REPLIES)]
    tabs = [Tab(client, await client.create_conversation()) for client in clients]
    responses = await asyncio.gather(*(tab.client.send(tab.conversation_id, "go") for tab in tabs))
    reply_ids = [reply_id_from(response) for response in responses]
    following = await follow_once_streaming(tabs, reply_ids)
    at_kill = [tab.page.content(reply_id) for tab, reply_id in zip(tabs, reply_ids, strict=True)]
    redis_server.kill()
    await asyncio.sleep(0.5)
    during = await close_code_of_a_new_socket(tabs[0].client, tabs[0].conversation_id)
    await asyncio.sleep(outage - 0.5)
    redis_server.start()
    await asyncio.gather(*following)
    for client in clients:
        await client.aclose()
    return expected, tabs, reply_ids, at_kill, during


async def test_a_three_second_redis_outage_costs_no_reply(
    cluster, fake_upstream, alice_session, redis_server
):
    web, workers = cluster()
    expected, tabs, reply_ids, _, during = await six_replies_through_an_outage(
        web, alice_session, fake_upstream, redis_server, outage=3.0
    )
    replies = [await Message.objects.aget(pk=reply_id) for reply_id in reply_ids]
    assert [(r.status, r.error) for r in replies] == [("complete", "")] * REPLIES
    assert [r.content for r in replies] == [expected] * REPLIES
    for tab, reply_id in zip(tabs, reply_ids, strict=True):
        assert tab.page.content(reply_id) == shown(expected)
        assert 4013 in tab.closes  # closed by the outage, with "Try Again Later"
    assert len(fake_upstream.requests) == REPLIES  # nothing was generated twice
    assert during == 4013  # a socket opened meanwhile is closed cleanly, not refused with 500
    assert_running(workers)
    await back_logged(web + workers, "Redis")
    for server in web + workers:
        assert_outage_logged_once(server.log_text(), "Redis")


async def test_an_outage_past_the_limit_ends_replies_interrupted_with_all_their_text(
    cluster, fake_upstream, alice_session, redis_server
):
    web, workers = cluster(CHAT_REDIS_OUTAGE_SECONDS="1.5", CHAT_CHECKPOINT_SECONDS="0.5")
    expected, tabs, reply_ids, at_kill, _ = await six_replies_through_an_outage(
        web, alice_session, fake_upstream, redis_server, outage=5.0
    )
    replies = [await Message.objects.aget(pk=reply_id) for reply_id in reply_ids]
    for tab, reply, seen in zip(tabs, replies, at_kill, strict=True):
        assert reply.status == "interrupted" and "1.5 s" in reply.error
        # The worker read on while Redis was away: the reply has more than the tab had seen,
        # and it is what the upstream sent, cut where the worker gave up.
        assert expected.startswith(reply.content) and reply.content != expected
        assert len(shown(reply.content)) > len(seen)
        assert tab.page.content(reply.pk) == shown(reply.content)
    assert_running(workers)
    await back_logged(web + workers, "Redis")
    for server in web + workers:
        assert_outage_logged_once(server.log_text(), "Redis")


async def test_a_worker_keeps_listening_after_redis_comes_back(
    cluster, fake_upstream, alice_session, redis_server
):
    web, workers = cluster()
    client = ChatClient(web[0], alice_session)
    conversation_id = await client.create_conversation()
    redis_server.kill()
    await asyncio.sleep(2.0)
    redis_server.start()
    tab = Tab(client, conversation_id)
    reply_id = reply_id_from(await client.send(conversation_id, "after the outage"))
    await tab.follow(reply_id, timeout=30)
    await client.aclose()

    async def complete() -> bool:
        return (await Message.objects.aget(pk=reply_id)).status == "complete"

    await wait_for(complete)
    assert tab.page.content(reply_id) == shown("Hello, world!")
    assert_running(workers)
    await back_logged(workers, "Redis")
    for worker in workers:
        assert_outage_logged_once(worker.log_text(), "Redis")
