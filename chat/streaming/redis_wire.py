"""One plain connection to Redis for the channel layer's two hot commands: the receive pump's
pop and the batched group send's script call (chat.streaming.channel_layers). No Django here.

Each of those runs once or more per WebSocket frame in a cluster. Through redis-py's client a
command costs about 180 µs of CPU on this machine (the pool, retries, timeouts, its command
packer and parser, each a layer of Python), against about 30 µs for the same request and reply
on a bare asyncio stream. `RedisWire` is that bare stream: it writes the command in RESP,
lets hiredis (redis-py's own C parser) read the reply, and turns what goes wrong into
redis-py's exceptions, so the layer's outage handling (chat.outages) sees what it always saw.

It serves a plain TCP connection only (`redis://`, with a password, user and database as the
URL or options give them); TLS, Unix sockets and Sentinel keep redis-py's path (`for_pool`
answers None). One caller at a time: each wire belongs to one task (the pump, the sender).
"""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
import redis.exceptions

# A reply that has not come in this long after a blocking command's own timeout means a dead
# connection (Redis answers a BZMPOP at its timeout with a null).
REPLY_GRACE_SECONDS = 5.0


_BROKEN = (OSError, EOFError, asyncio.IncompleteReadError, hiredis.ProtocolError)


def _encode(args: tuple[Any, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int | float):
            data = repr(arg).encode()
        else:
            raise TypeError(f"cannot send {type(arg).__name__} to Redis")
        parts.append(b"$%d\r\n" % len(data))
        parts.append(data)
        parts.append(b"\r\n")
    return b"".join(parts)


class RedisWire:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        self.host, self.port, self.db = host, port, db
        self.username, self.password = username, password
        self.connect_timeout = connect_timeout or REPLY_GRACE_SECONDS
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._replies = hiredis.Reader()
        self._lock = asyncio.Lock()

    @classmethod
    def for_pool(cls, pool: Any) -> RedisWire | None:
        """A wire to where a redis-py connection pool connects, if that is plain TCP."""
        from redis.asyncio.connection import Connection

        kwargs = pool.connection_kwargs
        if pool.connection_class is not Connection or "host" not in kwargs:
            return None
        return cls(
            kwargs["host"],
            int(kwargs.get("port", 6379)),
            db=int(kwargs.get("db") or 0),
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            connect_timeout=kwargs.get("socket_connect_timeout"),
        )

    async def call(self, *args: Any, wait: float = 0.0) -> Any:
        """Send one command and return its reply. `wait`: how long Redis may block on it.

        A kept connection that Redis closed (say it restarted while this one was idle) is
        tried once more on a new one, as the layer's redis-py pools do."""
        command = _encode(args)
        async with self._lock:
            for retry in (True, False):
                kept = self._writer is not None
                try:
                    async with asyncio.timeout(wait + REPLY_GRACE_SECONDS):
                        if not kept:
                            await self._connect()
                        return await self._call(command)
                except redis.exceptions.ResponseError:
                    raise
                except TimeoutError as error:
                    self.close()
                    raise redis.exceptions.TimeoutError(
                        f"Redis did not answer {args[0]}"
                    ) from error
                except _BROKEN as error:
                    self.close()
                    if retry and kept:
                        continue
                    raise redis.exceptions.ConnectionError(
                        f"Redis connection: {error!r}"
                    ) from error
                except BaseException:
                    self.close()  # cancelled mid-reply: the connection's state is unknown
                    raise
        raise AssertionError("unreachable")

    async def _call(self, command: bytes) -> Any:
        assert self._writer is not None and self._reader is not None
        self._writer.write(command)
        while True:
            reply = self._replies.gets()
            if reply is not False:
                break
            data = await self._reader.read(65536)
            if not data:
                raise EOFError("Redis closed the connection")
            self._replies.feed(data)
        if isinstance(reply, hiredis.ReplyError):
            message = str(reply)
            if message.startswith("NOSCRIPT"):
                raise redis.exceptions.NoScriptError(message)
            raise redis.exceptions.ResponseError(message)
        return reply

    async def _connect(self) -> None:
        async with asyncio.timeout(self.connect_timeout):
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._replies = hiredis.Reader()
        try:
            if self.password:
                credentials = (self.username, self.password) if self.username else (self.password,)
                await self._call(_encode(("AUTH", *credentials)))
            if self.db:
                await self._call(_encode(("SELECT", self.db)))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
