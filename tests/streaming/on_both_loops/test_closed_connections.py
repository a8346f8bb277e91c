"""A connection to Redis whose socket was reset while it sat idle is opened again before the
next command: uvloop refuses a write to a closed transport with `RuntimeError`, which no
caller took for Redis being away (a worker's listener that met it ended the worker)."""

from __future__ import annotations

import asyncio

import pytest

from chat import outages
from chat.streaming.channel_layers import RedisChannelLayer
from chat.streaming.redis_wire import RedisWire


@pytest.fixture(autouse=True)
def redis_back():
    yield
    outages.redis.came_back()


async def test_the_layers_own_connection_reopens_a_socket_reset_while_idle():
    connections = []

    async def pongs(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while await reader.read(1024):
            writer.write(b"+PONG\r\n")
            await writer.drain()

    server = await asyncio.start_server(pongs, "127.0.0.1", 0)
    wire = RedisWire("127.0.0.1", server.sockets[0].getsockname()[1])
    assert await wire.call("PING") == b"PONG"
    assert wire._writer is not None
    wire._writer.transport.abort()  # as a reset does
    await asyncio.sleep(0.05)
    assert await wire.call("PING") == b"PONG"
    assert len(connections) == 2
    wire.close()
    server.close()


@pytest.mark.services
async def test_redis_pys_pooled_connections_reopen_a_socket_reset_while_idle(redis_server):
    layer = RedisChannelLayer(hosts=[{"address": redis_server.url}])
    assert await layer.connection(0).ping()
    pool = layer.connection(0).connection_pool
    idle = list(pool._available_connections)
    assert idle
    for connection in idle:
        connection._writer.transport.abort()
    await asyncio.sleep(0.05)
    # redis-py 8 speaks RESP3 by default, and so skips its pool's check of a connection it
    # hands out (maintenance notifications on "auto"): the reset one reaches the write. A write
    # under a socket timeout (a task of its own) that a reset overtakes fails as an OSError,
    # which redis-py retries on a new connection.
    with pytest.raises(ConnectionResetError):
        await idle[0]._send_packed_command([b"*1\r\n$4\r\nPING\r\n"])
    await layer.send("chat-stream", {"type": "generate", "n": 1})
    assert await asyncio.wait_for(layer.receive("chat-stream"), 5) == {
        "type": "generate",
        "n": 1,
    }
    assert not outages.redis.away
    await layer.flush()
