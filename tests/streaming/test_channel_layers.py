"""The Redis channel layer through a Redis restart (a `redis-server` of the test's own)."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from chat import outages
from chat.outages import ChannelLayerAway
from chat.streaming.channel_layers import RedisChannelLayer

pytestmark = pytest.mark.services


@pytest.fixture(autouse=True)
def redis_back():
    yield
    outages.redis.came_back()


def layer_on(redis_server) -> RedisChannelLayer:
    return RedisChannelLayer(hosts=[{"address": redis_server.url, "socket_connect_timeout": 5}])


async def test_a_redis_restarted_without_its_data_gets_the_groups_back(redis_server):
    layer = layer_on(redis_server)
    channel = await layer.new_channel()
    await layer.group_add("generation.1", channel)
    redis_server.kill()
    with pytest.raises(ChannelLayerAway):
        await layer.group_send("generation.1", {"type": "generation.cancel"})
    redis_server.start()  # empty: no groups
    await asyncio.wait_for(layer.reachable(), 10)
    await layer.group_send("generation.1", {"type": "generation.cancel"})
    assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "generation.cancel"}


async def test_while_redis_is_away_calls_fail_at_once_and_one_probes_now_and_then(redis_server):
    layer = layer_on(redis_server)
    await layer.send("chat-stream", {"type": "generate", "message_id": 1})
    redis_server.kill()
    started = time.monotonic()
    failures = 0
    for _ in range(200):
        try:
            await layer.send("chat-stream", {"type": "generate", "message_id": 2})
        except ChannelLayerAway:
            failures += 1
    assert failures == 200 and time.monotonic() - started < 1.0
    assert outages.redis.away


async def test_a_discard_that_could_not_reach_redis_is_done_when_it_is_back(redis_server):
    layer = RedisChannelLayer(hosts=[{"address": redis_server.url, "socket_timeout": 1}])
    gone, staying = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("conversation.1", gone)
    await layer.group_add("conversation.1", staying)
    redis_server.process.send_signal(signal.SIGSTOP)  # Redis hangs, and keeps its data
    try:
        with pytest.raises(ChannelLayerAway):
            await layer.group_discard("conversation.1", gone)
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    await asyncio.wait_for(layer.reachable(), 10)
    await layer.group_send("conversation.1", {"type": "message.status"})
    assert await asyncio.wait_for(layer.receive(staying), 5) == {"type": "message.status"}
    # Had `gone` stayed in the group, the same message would wait in its buffer.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(gone), 0.5)


async def test_a_cancelled_receive_returns_at_once(redis_server):
    """Python 3.11's wait_for, which redis-py connects under, can swallow a cancellation: the
    receive must not keep its caller (a closing consumer) waiting for a message."""
    for step in range(40):
        layer = layer_on(redis_server)  # a fresh pool: the receive has to connect
        receiving = asyncio.ensure_future(layer.receive(await layer.new_channel()))
        await asyncio.sleep(step * 0.0003)
        receiving.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(receiving), 2)
        assert time.monotonic() - started < 0.5, step


async def test_group_send_reaches_every_member_in_order_and_across_processes(redis_server):
    here, there = layer_on(redis_server), layer_on(redis_server)  # two processes' layers
    mine, other, theirs = (
        await here.new_channel(),
        await here.new_channel(),
        await there.new_channel(),
    )
    for channel in (mine, other, theirs):
        await here.group_add("conversation.7", channel)
    for n in range(20):
        await here.group_send("conversation.7", {"type": "message.delta", "n": n})
    for layer, channel in ((here, mine), (here, other), (there, theirs)):
        got = [(await asyncio.wait_for(layer.receive(channel), 5))["n"] for _ in range(20)]
        assert got == list(range(20))
    await here.group_discard("conversation.7", other)
    await here.group_send("conversation.7", {"type": "message.delta", "n": 20})
    assert (await asyncio.wait_for(here.receive(mine), 5))["n"] == 20
    assert (await asyncio.wait_for(there.receive(theirs), 5))["n"] == 20
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(here.receive(other), 0.3)


async def test_group_send_skips_a_full_member_and_drops_expired_messages_first(redis_server):
    layer = RedisChannelLayer(
        hosts=[{"address": redis_server.url}], capacity=3, expiry=2, group_expiry=3600
    )
    other = layer_on(redis_server)  # another process, whose socket stopped reading
    full, reading = await other.new_channel(), await layer.new_channel()
    await layer.group_add("conversation.8", full)
    await layer.group_add("conversation.8", reading)
    got = []
    for n in range(5):
        await layer.group_send("conversation.8", {"type": "message.delta", "n": n})
        got.append((await asyncio.wait_for(layer.receive(reading), 5))["n"])
    assert got == [0, 1, 2, 3, 4]  # a full member does not hold up the others
    # Keep the full member's queue itself from expiring (its EXPIRE is the messages' expiry):
    # only dropping its expired messages can make room.
    full_key = layer.prefix + full.split("!")[0] + "!"
    await layer.connection(0).persist(full_key)
    await asyncio.sleep(3.1)  # the full member's three messages expire
    assert await layer.connection(0).zcard(full_key) == 3  # still there, until a send drops them
    await layer.group_send("conversation.8", {"type": "message.delta", "n": 5})
    assert (await asyncio.wait_for(other.receive(full), 5))["n"] == 5  # room again
