"""The channel layer's own Redis connection against servers that misbehave (no Redis needed:
a loopback server of the test's own stands in)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio
import redis.exceptions

from chat.streaming import redis_wire
from chat.streaming.channel_layers import RedisChannelLayer
from chat.streaming.redis_wire import RedisWire, encode


async def test_a_call_that_gets_no_answer_times_out_and_the_next_connects_again(monkeypatch):
    monkeypatch.setattr(redis_wire, "REPLY_GRACE_SECONDS", 0.3)
    monkeypatch.setattr(redis_wire, "WATCH_INTERVAL_SECONDS", 0.1)
    connections = []

    async def silent_then_pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await reader.read(1024)
        if len(connections) > 1:  # the second connection answers
            writer.write(b"+PONG\r\n")
            await writer.drain()
        await reader.read(1024)

    server = await asyncio.start_server(silent_then_pong, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    wire = RedisWire("127.0.0.1", port)
    with pytest.raises(redis.exceptions.TimeoutError):
        await asyncio.wait_for(wire.call("PING"), 5)
    assert await asyncio.wait_for(wire.call("PING"), 5) == b"PONG"
    assert len(connections) == 2
    wire.close()
    server.close()


async def test_a_refused_password_is_an_authentication_error():
    async def refuses(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"-WRONGPASS invalid username-password pair\r\n")
        await writer.drain()

    server = await asyncio.start_server(refuses, "127.0.0.1", 0)
    wire = RedisWire("127.0.0.1", server.sockets[0].getsockname()[1], password="nope")
    with pytest.raises(redis.exceptions.AuthenticationError):
        await wire.call("PING")
    server.close()


async def test_a_pipeline_reads_every_reply_before_it_raises_an_error_reply():
    """Commands sent together get their replies in order, in one write; an error among them
    raises as redis-py's exception only once all are read, so the next call reads its own."""
    writes = []

    async def answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writes.append(data)
            if len(writes) == 1:
                writer.write(b":1\r\n*1\r\n$1\r\na\r\n")
            elif len(writes) == 2:
                writer.write(b"-WRONGTYPE wrong kind of value\r\n:0\r\n")
            else:
                writer.write(b"+PONG\r\n")
            await writer.drain()

    server = await asyncio.start_server(answers, "127.0.0.1", 0)
    wire = RedisWire("127.0.0.1", server.sockets[0].getsockname()[1])
    zadd, zrange = encode("ZADD", "g", 1.5, "c"), encode("ZRANGE", "g", 0, -1)
    assert await wire.pipeline(zadd, zrange) == [1, [b"a"]]
    assert writes == [zadd + zrange]
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        await wire.pipeline(zrange, encode("ZREM", "g", "c"))
    assert await wire.call("PING") == b"PONG"
    wire.close()
    server.close()


async def test_error_replies_are_redis_pys_exceptions():
    """As redis-py reads them: a Redis still loading its data, or a replica, counts as Redis
    away for the channel layer (chat.streaming.channel_layers.REDIS_ERRORS)."""
    answers = [b"-LOADING Redis is loading the dataset in memory\r\n"] + [
        b"-READONLY You can't write against a read only replica.\r\n"
    ] * 2

    async def answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while answers and await reader.read(1024):
            writer.write(answers.pop(0))
            await writer.drain()

    server = await asyncio.start_server(answering, "127.0.0.1", 0)
    wire = RedisWire("127.0.0.1", server.sockets[0].getsockname()[1])
    with pytest.raises(redis.exceptions.BusyLoadingError):
        await wire.call("ZREM", "g", "c")
    with pytest.raises(redis.exceptions.ReadOnlyError):
        await wire.pipeline(encode("ZREM", "g", "c"))
    with pytest.raises(redis.exceptions.ReadOnlyError):
        await wire.call("ZREM", "g", "c")
    wire.close()
    server.close()


async def test_pipelines_called_at_once_share_writes_and_fail_together(monkeypatch):
    """Many tasks' pipelines (sockets joining their groups after a deploy) go in a write or
    two, not one round trip each; against a Redis that answers nothing they all fail within
    one timeout, not each after waiting out the timeouts of those before it."""
    monkeypatch.setattr(redis_wire, "REPLY_GRACE_SECONDS", 0.3)
    monkeypatch.setattr(redis_wire, "WATCH_INTERVAL_SECONDS", 0.1)
    writes: list[bytes] = []
    silent = {"on": False}

    async def answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writes.append(data)
            if not silent["on"]:
                writer.write(b":1\r\n" * data.count(b"ZREM"))
                await writer.drain()

    server = await asyncio.start_server(answering, "127.0.0.1", 0)
    wire = RedisWire("127.0.0.1", server.sockets[0].getsockname()[1])
    calls = [wire.pipeline(encode("ZREM", "g", f"c{n}")) for n in range(30)]
    assert await asyncio.gather(*calls) == [[1]] * 30
    assert len(writes) <= 2
    silent["on"] = True
    started = asyncio.get_running_loop().time()
    calls = [wire.pipeline(encode("ZREM", "g", f"c{n}")) for n in range(30)]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(o, redis.exceptions.TimeoutError) for o in outcomes), outcomes
    assert asyncio.get_running_loop().time() - started < 2.0
    wire.close()
    server.close()


def test_commands_are_written_in_resp():
    assert encode("ZADD", "z", 1.5, b"a\r\nb", 7) == (
        b"*5\r\n$4\r\nZADD\r\n$1\r\nz\r\n$3\r\n1.5\r\n$4\r\na\r\nb\r\n$1\r\n7\r\n"
    )
    with pytest.raises(TypeError):
        encode("SET", "k", None)


def test_a_wire_serves_plain_tcp_only():
    plain = RedisWire.for_pool(redis.asyncio.ConnectionPool.from_url("redis://:pw@h:6380/3"))
    assert plain is not None
    assert (plain.host, plain.port, plain.db, plain.password) == ("h", 6380, 3, "pw")
    for url in ("rediss://h:6380/0", "unix:///run/redis.sock"):
        assert RedisWire.for_pool(redis.asyncio.ConnectionPool.from_url(url)) is None


def test_the_layers_pools_keep_their_kind_of_connection_and_plain_tcp_its_wire():
    """The layer's pools open a connection reset while idle again (their own classes): the
    address still decides TLS or a Unix socket, and plain TCP still gets the wire."""
    pools = {
        url: RedisChannelLayer(hosts=[{"address": url}]).create_pool(0)
        for url in ("redis://:pw@h:6380/3", "rediss://h:6380/0", "unix:///run/redis.sock")
    }
    kinds = [redis.asyncio.Connection, redis.asyncio.SSLConnection]
    kinds.append(redis.asyncio.UnixDomainSocketConnection)
    for pool, kind in zip(pools.values(), kinds, strict=True):
        assert issubclass(pool.connection_class, kind)
        assert pool.connection_class is not kind
    plain = RedisWire.for_pool(pools["redis://:pw@h:6380/3"])
    assert plain is not None and (plain.port, plain.db, plain.password) == (6380, 3, "pw")
    assert RedisWire.for_pool(pools["rediss://h:6380/0"]) is None
    assert RedisWire.for_pool(pools["unix:///run/redis.sock"]) is None
