"""The Redis channel layer: its round trips per send and receive, and a Redis restart (a
`redis-server` of the test's own)."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest
import redis.asyncio
import redis.asyncio.client
import redis.exceptions

from chat import outages
from chat.outages import ChannelLayerAway
from chat.streaming import channel_layers
from chat.streaming.channel_layers import RedisChannelLayer
from chat.streaming.redis_wire import RedisWire

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


async def test_a_probe_that_fails_otherwise_than_redis_errors_leaves_redis_away_for_all(
    redis_server, monkeypatch, caplog
):
    """Whichever caller happened to probe got the error itself, and the others a
    `ChannelLayerAway`: a worker's listener that probed ended the worker."""
    layer = layer_on(redis_server)
    restore = layer._restore
    probes = []

    async def fails_once() -> None:
        probes.append(time.monotonic())
        await asyncio.sleep(0.05)
        if len(probes) == 1:
            raise RuntimeError("unable to perform operation; the handler is closed")
        await restore()

    monkeypatch.setattr(layer, "_restore", fails_once)
    outages.redis.went_away(ConnectionError("gone"))
    waiting = asyncio.ensure_future(layer.reachable())
    await asyncio.sleep(0.01)  # it probes
    with pytest.raises(ChannelLayerAway, match="probe failed"):
        await layer.send("chat-stream", {"type": "generate", "message_id": 1})  # waits on it
    await asyncio.wait_for(waiting, 10)  # probed again, and Redis answered
    assert len(probes) == 2 and not outages.redis.away
    assert "probing Redis failed" in caplog.text


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


async def test_a_membership_redis_refuses_as_it_comes_back_does_not_keep_it_away(
    redis_server, caplog
):
    """Restoring the groups re-raised Redis's error reply for one membership, and each probe
    met it again: the layer stayed away for every caller while Redis answered."""
    layer = layer_on(redis_server)
    refused, restored = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("conversation.1", refused)
    await layer.group_add("conversation.2", restored)
    redis_server.kill()
    with pytest.raises(ChannelLayerAway):
        await layer.group_send("conversation.2", {"type": "message.status"})
    redis_server.start()  # empty, and something else took the first group's key
    client = redis.asyncio.Redis.from_url(redis_server.url)
    await client.set(layer._group_key("conversation.1"), "not a group")
    await client.aclose()
    await asyncio.wait_for(layer.reachable(), 10)
    await layer.group_send("conversation.2", {"type": "message.status"})
    assert await asyncio.wait_for(layer.receive(restored), 5) == {"type": "message.status"}
    assert "Redis refused to restore a membership of group conversation.1: WRONGTYPE" in (
        caplog.text
    )
    assert "probing Redis failed" not in caplog.text


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


def _command_name(encoded: bytes) -> str:
    """A RESP command's name (`*N\\r\\n$len\\r\\nNAME\\r\\n...`)."""
    return encoded.split(b"\r\n", 3)[2].decode().upper()


async def _round_trips(monkeypatch: pytest.MonkeyPatch, action: Any) -> list[str]:
    """The round trips to Redis while `action` ran: each command sent alone, by name (through
    redis-py's client or the layer's own connections), and each pipeline as PIPELINE."""
    sent: list[str] = []
    execute_command = redis.asyncio.Redis.execute_command
    execute_pipeline = redis.asyncio.client.Pipeline.execute

    async def command(self: Any, *args: Any, **options: Any) -> Any:
        sent.append(str(args[0]).upper())
        return await execute_command(self, *args, **options)

    async def pipeline(self: Any, *args: Any, **options: Any) -> Any:
        sent.append("PIPELINE")
        return await execute_pipeline(self, *args, **options)

    wire_call = RedisWire.call_encoded

    async def on_the_wire(self: Any, encoded: bytes, **options: Any) -> Any:
        name = _command_name(encoded)
        if options.get("replies") is not None:
            name = "PIPELINE"
        sent.append("SCRIPT LOAD" if name == "SCRIPT" else name)
        return await wire_call(self, encoded, **options)

    with monkeypatch.context() as patched:
        patched.setattr(redis.asyncio.Redis, "execute_command", command)
        patched.setattr(redis.asyncio.client.Pipeline, "execute", pipeline)
        patched.setattr(RedisWire, "call_encoded", on_the_wire)
        await action()
    return sent


async def test_group_send_to_unchanged_members_is_one_script_call_and_sees_every_change(
    redis_server, monkeypatch
):
    """While a group's members stay as this process read them, a send is one script call
    (no separate read of the members); a member another process adds or removes is seen by
    the next send."""
    here, there = layer_on(redis_server), layer_on(redis_server)
    mine = await here.new_channel()
    await here.group_add("conversation.9", mine)
    await here.group_send("conversation.9", {"type": "message.delta", "n": 0})  # reads members
    await here.group_send("conversation.9", {"type": "message.delta", "n": 1})  # loads script

    async def sends() -> None:
        for n in range(2, 7):
            await here.group_send("conversation.9", {"type": "message.delta", "n": n})

    assert await _round_trips(monkeypatch, sends) == ["EVALSHA"] * 5

    theirs = await there.new_channel()
    await there.group_add("conversation.9", theirs)  # another process's tab joins
    await here.group_send("conversation.9", {"type": "message.delta", "n": 7})
    assert (await asyncio.wait_for(there.receive(theirs), 5))["n"] == 7
    await there.group_discard("conversation.9", theirs)  # and leaves
    await here.group_send("conversation.9", {"type": "message.delta", "n": 8})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(there.receive(theirs), 0.3)
    got = [(await asyncio.wait_for(here.receive(mine), 5))["n"] for _ in range(9)]
    assert got == list(range(9))


class _Inbox:
    """A consumer's inbox as the pump sees it (chat.streaming.dispatch.Inbox's interface)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.failed: BaseException | None = None
        self.arrived = asyncio.Event()

    def put(self, item: Any) -> None:
        self.items.append(item)
        self.arrived.set()

    def fail(self, error: BaseException) -> None:
        self.failed = error
        self.arrived.set()

    def __len__(self) -> int:
        return len(self.items)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.items) < count and self.failed is None:
                self.arrived.clear()
                await self.arrived.wait()


async def test_the_receive_pump_takes_waiting_messages_in_batches_to_each_attached_inbox(
    redis_server, monkeypatch
):
    """One task per process pops the process's specific channels: messages that wait are
    taken many per round trip, and each goes to the inbox of the channel it was sent to, in
    order; a plain receive on another channel of the process still gets its own."""
    sender, layer = layer_on(redis_server), layer_on(redis_server)
    first, second, plain = [await layer.new_channel() for _ in range(3)]
    for channel in (first, second):
        await sender.group_add("conversation.10", channel)
    for n in range(60):
        await sender.group_send("conversation.10", {"type": "message.delta", "n": n})
    await sender.send(plain, {"type": "message.status", "n": -1})
    inboxes = [_Inbox(), _Inbox()]

    async def attach_and_take() -> None:
        layer.attach(first, inboxes[0])
        layer.attach(second, inboxes[1])
        for inbox in inboxes:
            await inbox.wait_for(60)

    trips = await _round_trips(monkeypatch, attach_and_take)
    assert [[m["n"] for m in inbox.items] for inbox in inboxes] == [list(range(60))] * 2
    assert "__asgi_channel__" not in inboxes[0].items[0]
    # 120 messages for the two inboxes, 60 in Redis (one per group_send: both members are of
    # this process) and the plain one: one pop of up to 100 takes them all, then one waits.
    pops = [trip for trip in trips if trip in ("BZMPOP", "ZPOPMIN", "BZPOPMIN")]
    assert pops and pops[0] == "BZMPOP" and len(pops) <= 2
    assert (await asyncio.wait_for(layer.receive(plain), 5))["n"] == -1


async def test_a_detached_channels_late_messages_are_dropped(redis_server):
    sender, layer = layer_on(redis_server), layer_on(redis_server)
    channel = await layer.new_channel()
    inbox = _Inbox()
    detach = layer.attach(channel, inbox)
    await sender.send(channel, {"type": "message.delta", "n": 0})
    await inbox.wait_for(1)
    detach()
    await sender.send(channel, {"type": "message.delta", "n": 1})  # in flight as it closed
    keeping = await layer.new_channel()  # keeps the pump going
    await sender.send(keeping, {"type": "message.delta", "n": 2})
    assert (await asyncio.wait_for(layer.receive(keeping), 5))["n"] == 2
    assert len(inbox) == 1 and channel not in layer.receive_buffer


async def test_redis_going_away_fails_every_attached_inbox_and_waiting_receive(redis_server):
    layer = layer_on(redis_server)
    attached, plain = await layer.new_channel(), await layer.new_channel()
    inbox = _Inbox()
    layer.attach(attached, inbox)
    receiving = asyncio.ensure_future(layer.receive(plain))
    await asyncio.sleep(0.2)  # the pump waits on Redis
    redis_server.kill()
    await inbox.wait_for(1)
    assert isinstance(inbox.failed, ChannelLayerAway)
    with pytest.raises(ChannelLayerAway):
        await asyncio.wait_for(receiving, 5)
    # While Redis is away a new listener fails at once; once it is back, messages flow again.
    second = _Inbox()
    layer.attach(await layer.new_channel(), second)
    await second.wait_for(1)
    assert isinstance(second.failed, ChannelLayerAway)
    redis_server.start()
    await asyncio.wait_for(layer.reachable(), 10)
    third, channel = _Inbox(), await layer.new_channel()
    layer.attach(channel, third)
    await layer.send(channel, {"type": "message.delta", "n": 3})
    await third.wait_for(1)
    assert third.failed is None and third.items[0]["n"] == 3


async def test_the_receive_pump_works_without_bzmpop(redis_server, monkeypatch):
    """Redis before 7.0 has no BZMPOP: the pump pops with ZPOPMIN, and BZPOPMIN to wait."""

    async def unknown(*args: Any, **kwargs: Any) -> Any:
        raise redis.exceptions.ResponseError("unknown command 'BZMPOP'")

    wire_call = RedisWire.call_encoded

    async def without_bzmpop(self: Any, encoded: bytes, **options: Any) -> Any:
        if _command_name(encoded) == "BZMPOP":
            await unknown()
        return await wire_call(self, encoded, **options)

    monkeypatch.setattr(redis.asyncio.Redis, "bzmpop", unknown)
    monkeypatch.setattr(RedisWire, "call_encoded", without_bzmpop)
    sender, layer = layer_on(redis_server), layer_on(redis_server)
    channel, inbox = await layer.new_channel(), _Inbox()
    await sender.send(channel, {"type": "message.delta", "n": 0})
    layer.attach(channel, inbox)
    await inbox.wait_for(1)
    await asyncio.sleep(0.1)  # the pump waits in BZPOPMIN now
    await sender.send(channel, {"type": "message.delta", "n": 1})
    await inbox.wait_for(2)
    assert [m["n"] for m in inbox.items] == [0, 1] and inbox.failed is None


async def test_joining_and_leaving_a_group_is_one_round_trip_each(redis_server, monkeypatch):
    """A socket's and a reply's groups (three joins and three leaves a reply) cost one round
    trip each, as does a group's first send reading its members; what they leave in Redis is
    what channels-redis leaves: the member with the time it joined, the group's expiry
    renewed."""
    layer, other = layer_on(redis_server), layer_on(redis_server)
    mine, theirs = await layer.new_channel(), await other.new_channel()
    await other.group_add("conversation.5", theirs)
    joined_at = time.time()

    async def join() -> None:
        await layer.group_add("conversation.5", mine)

    assert await _round_trips(monkeypatch, join) == ["PIPELINE"]
    check = redis.asyncio.Redis.from_url(redis_server.url)
    key = layer._group_key("conversation.5")
    scores = dict(await check.zrange(key, 0, -1, withscores=True))
    assert set(scores) == {mine.encode(), theirs.encode()}
    assert joined_at - 1 < scores[mine.encode()] < time.time() + 1
    assert layer.group_expiry - 5 < await check.ttl(key) <= layer.group_expiry

    async def first_send() -> None:
        await layer.group_send("conversation.5", {"type": "message.status"})

    assert await _round_trips(monkeypatch, first_send) in (
        ["PIPELINE", "EVALSHA"],  # the members read, then the delivery
        ["PIPELINE", "EVALSHA", "SCRIPT LOAD", "EVALSHA"],
    )
    assert await asyncio.wait_for(other.receive(theirs), 5) == {"type": "message.status"}

    async def leave() -> None:
        await layer.group_discard("conversation.5", mine)

    assert await _round_trips(monkeypatch, leave) == ["PIPELINE"]
    assert await check.zrange(key, 0, -1) == [theirs.encode()]
    await check.aclose()


async def test_concurrent_group_sends_share_round_trips_and_keep_each_groups_order(
    redis_server, monkeypatch
):
    """Sends that come while one is in flight go together in the next script call: 20
    replies streaming at once take far fewer round trips than frames, and every member gets
    its group's frames in order."""
    # Room in the receiving process's one queue for all 220 messages (the default is 100).
    sender = RedisChannelLayer(hosts=[{"address": redis_server.url}], capacity=1000)
    layer = layer_on(redis_server)
    channels = [await layer.new_channel() for _ in range(20)]
    for i, channel in enumerate(channels):
        await sender.group_add(f"conversation.{i}", channel)
        await sender.group_send(f"conversation.{i}", {"type": "message.delta", "n": -1})

    async def stream(i: int) -> None:
        for n in range(10):
            await sender.group_send(f"conversation.{i}", {"type": "message.delta", "n": n})

    async def streams() -> None:
        await asyncio.gather(*(stream(i) for i in range(20)))

    trips = await _round_trips(monkeypatch, streams)
    trips.remove("SCRIPT LOAD")  # the first batch loads the script
    assert set(trips) == {"EVALSHA"} and len(trips) <= 40  # 200 frames
    for channel in channels:
        got = [(await asyncio.wait_for(layer.receive(channel), 5))["n"] for _ in range(11)]
        assert got == list(range(-1, 10))


async def test_a_wire_selects_its_database_and_reports_redis_errors_as_redis_py_does(
    redis_server,
):
    wire = RedisWire.for_pool(redis.asyncio.ConnectionPool.from_url(redis_server.url + "/3"))
    assert wire is not None
    assert await wire.call("SET", "k", b"v\r\n") == b"OK"
    client = redis.asyncio.Redis.from_url(redis_server.url + "/3")
    assert await client.get("k") == b"v\r\n"  # in database 3, bytes as sent
    assert await wire.call("ZADD", "z", 1.5, "m") == 1
    with pytest.raises(redis.exceptions.NoScriptError):
        await wire.call("EVALSHA", "0" * 40, 0)
    with pytest.raises(redis.exceptions.ResponseError):
        await wire.call("NOSUCHCOMMAND")
    assert await wire.call("BZMPOP", 0.1, 1, "empty", "MIN", wait=0.1) is None
    redis_server.kill()
    with pytest.raises(redis.exceptions.ConnectionError):
        await wire.call("PING")
    redis_server.start()
    assert await wire.call("PING") == b"PONG"  # connects again
    redis_server.kill()
    redis_server.start()  # restarted while the wire was idle: its connection is closed
    assert await wire.call("PING") == b"PONG"  # tried once more on a new one


async def test_a_pop_redis_refuses_fails_the_listeners_instead_of_leaving_them_waiting(
    redis_server, caplog
):
    """Something else overwrote the process's queue with another type: Redis answers the pop
    with WRONGTYPE. Every listener fails (a socket closes with 4013 and reconnects), the
    error is logged, and once the key is fixed a new listener receives again."""
    sender, layer = layer_on(redis_server), layer_on(redis_server)
    channel, inbox = await layer.new_channel(), _Inbox()
    queue = layer.prefix + layer.non_local_name(channel)
    await sender.connection(0).set(queue, b"not a sorted set")
    layer.attach(channel, inbox)
    await inbox.wait_for(1)
    assert isinstance(inbox.failed, ChannelLayerAway)
    assert "receive pump" in caplog.text and "WRONGTYPE" in caplog.text
    await sender.connection(0).delete(queue)
    again, second = await layer.new_channel(), _Inbox()
    layer.attach(again, second)
    await sender.send(again, {"type": "message.delta", "n": 1})
    await second.wait_for(1)
    assert second.failed is None and second.items[0]["n"] == 1


async def test_a_consumer_attached_in_the_sending_process_gets_its_messages_without_redis(
    redis_server, monkeypatch
):
    """Sends to a consumer attached in this process go straight into its inbox, in the order
    they were made: frames to a group whose members are all here cost no round trip while
    those members are trusted, and any other group send checks the members with one script
    call that delivers nothing through Redis."""
    # Trusted for the whole test, however slow the machine: the expiry is the next test's.
    monkeypatch.setattr(channel_layers, "FRAME_MEMBERS_TRUSTED_SECONDS", 3600)
    layer = layer_on(redis_server)
    mine = await layer.new_channel()
    inbox = _Inbox()
    detach = layer.attach(mine, inbox)
    await layer.group_add("conversation.20", mine)
    await layer.group_send("conversation.20", {"type": "message.started", "n": 0})  # reads
    await layer.group_send("conversation.20", {"type": "message.status", "n": 1})  # loads

    async def sends() -> None:
        for n in range(2, 7):
            await layer.group_send_frame("conversation.20", {"type": "message.delta", "n": n})
        await layer.send(mine, {"type": "message.snapshot", "n": 7})
        await layer.group_send("conversation.20", {"type": "message.finished", "n": 8})

    trips = await _round_trips(monkeypatch, sends)
    assert [trip for trip in trips if trip != "BZMPOP"] == ["EVALSHA"]  # the finished event's
    assert [m["n"] for m in inbox.items] == list(range(9))
    assert await layer.connection(0).zcard(layer.prefix + layer.non_local_name(mine)) == 0
    detach()


async def test_frames_follow_the_members_here_as_they_come_and_go(redis_server, monkeypatch):
    """While a group's members are trusted, its frames go to the members attached here as
    they stand at each frame: one that joins gets the next frame, one that leaves the group
    or detaches gets none, and a full inbox misses a frame; a member leaving costs the next
    frame no round trip while the members Redis has are all here."""
    monkeypatch.setattr(channel_layers, "FRAME_MEMBERS_TRUSTED_SECONDS", 3600)
    layer = layer_on(redis_server)
    group = "conversation.25"
    first, second = await layer.new_channel(), await layer.new_channel()
    first_inbox, second_inbox = _Inbox(), _Inbox()
    layer.attach(first, first_inbox)
    await layer.group_add(group, first)
    await layer.group_send(group, {"type": "message.started", "n": 0})  # reads the members
    await layer.group_send_frame(group, {"type": "message.delta", "n": 1})

    detach_second = layer.attach(second, second_inbox)
    await layer.group_add(group, second)
    await layer.group_send(group, {"type": "message.status", "n": 2})  # reads them again
    await layer.group_send_frame(group, {"type": "message.delta", "n": 3})

    async def frames() -> None:
        await layer.group_discard(group, first)
        await layer.group_send_frame(group, {"type": "message.delta", "n": 4})

    trips = await _round_trips(monkeypatch, frames)
    assert [trip for trip in trips if trip != "BZMPOP"] == ["PIPELINE"]  # the ZREM alone
    detach_second()  # still a member in Redis, no longer here: the frame goes through it
    await layer.group_send_frame(group, {"type": "message.delta", "n": 5})
    assert [m["n"] for m in first_inbox.items] == [0, 1, 2, 3]
    assert [m["n"] for m in second_inbox.items] == [2, 3, 4]

    third, third_inbox = await layer.new_channel(), _Inbox()
    layer.attach(third, third_inbox)
    await layer.group_add(group, third)
    await layer.group_send(group, {"type": "message.status", "n": 6})
    monkeypatch.setattr(layer, "get_capacity", lambda channel: 1)
    fourth, fourth_inbox = await layer.new_channel(), _Inbox()
    layer.attach(fourth, fourth_inbox)  # holds one message at most
    await layer.group_add(group, fourth)
    await layer.group_send(group, {"type": "message.status", "n": 7})
    await layer.group_send_frame(group, {"type": "message.delta", "n": 8})
    assert [m["n"] for m in third_inbox.items] == [6, 7, 8]
    assert [m["n"] for m in fourth_inbox.items] == [7]  # full: 8 missed


async def test_frames_go_without_redis_again_once_the_members_are_confirmed(
    redis_server, monkeypatch
):
    """When the trust in a group's members runs out, one frame confirms them with Redis,
    and the frames after it go without a round trip again."""
    monkeypatch.setattr(channel_layers, "FRAME_MEMBERS_TRUSTED_SECONDS", 0.3)
    layer = layer_on(redis_server)
    group = "conversation.26"
    mine, inbox = await layer.new_channel(), _Inbox()
    layer.attach(mine, inbox)
    await layer.group_add(group, mine)
    await layer.group_send_frame(group, {"type": "message.delta", "n": 0})  # reads
    await layer.group_send_frame(group, {"type": "message.delta", "n": 1})  # trusts
    await asyncio.sleep(channel_layers.FRAME_MEMBERS_TRUSTED_SECONDS)

    async def confirming() -> None:
        await layer.group_send_frame(group, {"type": "message.delta", "n": 2})

    async def trusted() -> None:
        for n in range(3, 6):
            await layer.group_send_frame(group, {"type": "message.delta", "n": n})

    assert [trip for trip in await _round_trips(monkeypatch, confirming) if trip != "BZMPOP"]
    assert [trip for trip in await _round_trips(monkeypatch, trusted) if trip != "BZMPOP"] == []
    assert [m["n"] for m in inbox.items] == list(range(6))


async def test_frames_reach_a_member_that_joins_from_another_process(redis_server, monkeypatch):
    """A tab joining from another process gets a group's frames once the sending process
    checks the members again: at once after it answered a snapshot request (the joining tab
    asks for one), else at most FRAME_MEMBERS_TRUSTED_SECONDS later."""
    monkeypatch.setattr(channel_layers, "FRAME_MEMBERS_TRUSTED_SECONDS", 0.3)
    here, there = layer_on(redis_server), layer_on(redis_server)
    mine = await here.new_channel()
    inbox = _Inbox()
    here.attach(mine, inbox)
    for group in ("conversation.21", "conversation.22"):
        await here.group_add(group, mine)
        await here.group_send_frame(group, {"type": "message.delta", "n": 0})

    theirs = await there.new_channel()
    await there.group_add("conversation.21", theirs)
    here.recheck_members("conversation.21")  # it asked for a snapshot
    await here.group_send_frame("conversation.21", {"type": "message.delta", "n": 1})
    assert (await asyncio.wait_for(there.receive(theirs), 5))["n"] == 1

    later = await there.new_channel()
    await there.group_add("conversation.22", later)
    await asyncio.sleep(channel_layers.FRAME_MEMBERS_TRUSTED_SECONDS)
    await here.group_send_frame("conversation.22", {"type": "message.delta", "n": 2})
    assert (await asyncio.wait_for(there.receive(later), 5))["n"] == 2
    assert [m["n"] for m in inbox.items] == [0, 0, 1, 2]


async def test_a_recheck_is_not_undone_by_a_check_that_began_before_it(redis_server, monkeypatch):
    """A tab that joins from another process, and asks for a snapshot while a frame's check of
    the members is on its way back from Redis (checked before it joined), gets the next frame:
    that check's answer does not count as the members checked since."""
    monkeypatch.setattr(channel_layers, "FRAME_MEMBERS_TRUSTED_SECONDS", 3600)
    here, there = layer_on(redis_server), layer_on(redis_server)
    mine = await here.new_channel()
    inbox = _Inbox()
    here.attach(mine, inbox)
    await here.group_add("conversation.31", mine)
    await here.group_send_frame("conversation.31", {"type": "message.delta", "n": 0})
    here.recheck_members("conversation.31")

    answered, release = asyncio.Event(), asyncio.Event()
    send_batch = here._send_batch

    async def answer_held(deliveries: Any) -> Any:
        outcomes = await send_batch(deliveries)  # Redis checked the members: mine alone
        answered.set()
        await release.wait()
        return outcomes

    monkeypatch.setattr(here, "_send_batch", answer_held)
    on_its_way = asyncio.ensure_future(
        here.group_send_frame("conversation.31", {"type": "message.delta", "n": 1})
    )
    await asyncio.wait_for(answered.wait(), 5)
    theirs = await there.new_channel()
    await there.group_add("conversation.31", theirs)
    here.recheck_members("conversation.31")  # it asked for a snapshot
    release.set()
    await asyncio.wait_for(on_its_way, 5)

    await here.group_send_frame("conversation.31", {"type": "message.delta", "n": 2})
    assert (await asyncio.wait_for(there.receive(theirs), 5))["n"] == 2
    assert [m["n"] for m in inbox.items] == [0, 1, 2]


async def test_frames_check_the_members_again_after_redis_returns(redis_server, monkeypatch):
    """What a process read of a group's members before Redis went away is not trusted after
    it returns (a snapshot request sent meanwhile is lost): a tab that joined from another
    process gets the next frame."""
    monkeypatch.setattr(channel_layers, "FRAME_MEMBERS_TRUSTED_SECONDS", 3600)
    here, there = layer_on(redis_server), layer_on(redis_server)
    await here.group_send_frame("conversation.41", {"type": "message.delta", "n": 0})  # no one
    redis_server.kill()
    with pytest.raises(ChannelLayerAway):
        await here.group_send("conversation.41", {"type": "message.status"})
    redis_server.start()
    await asyncio.wait_for(here.reachable(), 10)

    theirs = await there.new_channel()
    await there.group_add("conversation.41", theirs)
    await here.group_send_frame("conversation.41", {"type": "message.delta", "n": 1})
    assert (await asyncio.wait_for(there.receive(theirs), 5))["n"] == 1


async def test_a_consumer_that_detaches_during_a_group_send_is_skipped(redis_server):
    """A tab closing while a group_send waits on Redis (the members elsewhere get theirs
    first) is skipped; the send still reaches every other member."""
    here, there = layer_on(redis_server), layer_on(redis_server)
    staying, leaving, theirs = await here.new_channel(), await here.new_channel(), None
    inboxes = [_Inbox(), _Inbox()]
    here.attach(staying, inboxes[0])
    detach_leaving = here.attach(leaving, inboxes[1])
    theirs = await there.new_channel()
    for channel in (staying, leaving):
        await here.group_add("conversation.23", channel)
    await there.group_add("conversation.23", theirs)
    sending = asyncio.ensure_future(
        here.group_send("conversation.23", {"type": "message.finished", "n": 1})
    )
    await asyncio.sleep(0)  # the send waits on Redis
    assert not sending.done()
    detach_leaving()
    await sending
    assert [m["n"] for m in inboxes[0].items] == [1] and inboxes[1].items == []
    assert (await asyncio.wait_for(there.receive(theirs), 5))["n"] == 1


async def test_more_calls_at_once_than_the_pool_holds_wait_their_turn(redis_server):
    """A burst (tabs reconnecting after a deploy, each joining its groups) larger than the
    connection pool is load, not an outage: each call waits for a connection. redis-py's
    pool raised MaxConnectionsError past 100 at once, the layer took Redis for away and every
    socket of the process was closed with 4013."""
    layer = RedisChannelLayer(
        hosts=[{"address": redis_server.url, "socket_connect_timeout": 5, "max_connections": 5}]
    )
    channels = [await layer.new_channel() for _ in range(40)]
    await asyncio.gather(*(layer.group_add(f"user.{i}", c) for i, c in enumerate(channels)))
    assert not outages.redis.away
    await asyncio.gather(*(layer.group_send(f"user.{i}", {"type": "x"}) for i in range(40)))
    received = await asyncio.gather(*(layer.receive(c) for c in channels))
    assert received == [{"type": "x"}] * 40
