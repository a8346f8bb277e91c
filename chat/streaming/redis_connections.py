"""The kinds of redis-py connection the channel layer's pools make: redis-py's own, except that
a connection whose socket was reset while it waited in the pool is opened again rather than
written to. No Django here.

Written to as it was, uvloop raises `RuntimeError` ("the handler is closed"), which is not a
connection error: the call failed instead of being retried on a new connection, and a worker's
listener that met it ended the worker. (asyncio's own loop dropped the write and failed the
read, which redis-py retries.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis.asyncio
from redis.asyncio.connection import AbstractConnection


class _ReopensClosed(AbstractConnection):
    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        writer = self._writer
        if writer is not None and writer.transport.is_closing():
            await self.disconnect(nowait=True)  # and connected below, as a new connection
        await super().send_packed_command(command, check_health)

    async def _send_packed_command(self, command: Iterable[bytes]) -> None:
        # The write under a socket timeout runs in a task of its own (`asyncio.wait_for` on
        # Python 3.11): a reset can come between the check above and this write. As an
        # OSError, redis-py takes it for the connection lost, and its retry connects again.
        if self._writer is not None and self._writer.transport.is_closing():
            raise ConnectionResetError("Redis reset the connection")
        await super()._send_packed_command(command)


class ReopeningConnection(_ReopensClosed, redis.asyncio.Connection):
    """Plain TCP."""


class ReopeningSSLConnection(_ReopensClosed, redis.asyncio.SSLConnection):
    """TLS (`rediss://`)."""


class ReopeningUnixConnection(_ReopensClosed, redis.asyncio.UnixDomainSocketConnection):
    """A Unix socket (`unix://`)."""


REOPENING: dict[type[AbstractConnection], type[AbstractConnection]] = {
    redis.asyncio.Connection: ReopeningConnection,
    redis.asyncio.SSLConnection: ReopeningSSLConnection,
    redis.asyncio.UnixDomainSocketConnection: ReopeningUnixConnection,
}

# What the layer's own connection (chat.streaming.redis_wire) can stand in for: plain TCP.
PLAIN_TCP = (redis.asyncio.Connection, ReopeningConnection)
