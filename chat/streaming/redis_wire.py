"""One plain connection to Redis for the channel layer's hot commands: the receive pump's pop
and the batched group send's script call, once or more per WebSocket frame in a cluster, and
the group memberships and members' reads, a few per reply and per socket
(chat.streaming.channel_layers). No Django here.

Through redis-py's client a command costs about 180 µs of CPU on this machine (the pool,
retries, timeouts, its command packer and parser, each a layer of Python), against about 30 µs
for the same request and reply on a bare asyncio stream. `RedisWire` is that bare stream: it
writes the command in RESP, lets hiredis (redis-py's own C parser) read the reply, and turns
what goes wrong into redis-py's exceptions, so the layer's outage handling (chat.outages) sees
what it always saw.

It serves a plain TCP connection only (`redis://`, with a password, user and database as the
URL or options give them); TLS, Unix sockets and Sentinel keep redis-py's path (`for_pool`
answers None). One call at a time: calls that come meanwhile wait their turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
import redis.exceptions
from redis._parsers.base import BaseParser  # redis-py's table of error replies

from .redis_connections import PLAIN_TCP

# A reply that has not come in this long after a blocking command's own timeout means a dead
# connection (Redis answers a BZMPOP at its timeout with a null). A watchdog, not a timeout
# around every call (a timer scheduled and cancelled per command), looks once a second.
REPLY_GRACE_SECONDS = 5.0
WATCH_INTERVAL_SECONDS = 1.0

_BROKEN = (OSError, EOFError, asyncio.IncompleteReadError, hiredis.ProtocolError)


def encode(*args: Any) -> bytes:
    """A command in RESP: an array of bulk strings (bytes as they are, str in UTF-8, numbers
    as Python writes them)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        kind = type(arg)
        if kind is bytes:
            data = arg
        elif kind is str:
            data = arg.encode()
        elif kind is int or kind is float:
            data = repr(arg).encode()
        else:
            raise TypeError(f"cannot send {kind.__name__} to Redis")
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
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
        self._replies = _reply_reader()
        self._lock = asyncio.Lock()
        # `pipeline`'s calls waiting for the next write, and the task that writes them.
        self._queued: list[tuple[tuple[bytes, ...], asyncio.Future[list[Any]]]] = []
        self._sender: asyncio.Future[None] | None = None
        self._deadline: float | None = None  # the call in flight must be answered by then
        self._overdue = False
        self._watchdog: asyncio.TimerHandle | None = None

    @classmethod
    def for_pool(cls, pool: Any) -> RedisWire | None:
        """A wire to where a redis-py connection pool connects, if that is plain TCP."""
        kwargs = pool.connection_kwargs
        if pool.connection_class not in PLAIN_TCP or "host" not in kwargs:
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
        """Send one command and return its reply. `wait`: how long Redis may block on it."""
        return await self.call_encoded(encode(*args), wait=wait)

    async def pipeline(self, *commands: bytes) -> list[Any]:
        """Send the commands (each `encode`d) together and return their replies in order; an
        error reply raises, once all are read. The pipelines of other tasks that come while
        one is on its way go together in the next write: one round trip for them all, however
        many tasks call (a burst of sockets joining their groups), and should the connection
        fail, all of them fail with it at once, none waiting out a timeout of its own. A
        caller that is cancelled stops waiting; its commands still go."""
        done: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queued.append((commands, done))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send_queued())
        replies = await done
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _send_queued(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            written = [command for commands, _ in batch for command in commands]
            try:
                replies = await self.call_encoded(b"".join(written), replies=len(written))
            except BaseException as error:
                # Those that came meanwhile would try a connection that just failed.
                batch, self._queued = batch + self._queued, []
                for _, done in batch:
                    if not done.done():
                        done.set_exception(error)
                        done.exception()  # read: its caller may have been cancelled
                if isinstance(error, asyncio.CancelledError):
                    raise
                continue
            at = 0
            for commands, done in batch:
                if not done.done():
                    done.set_result(replies[at : at + len(commands)])
                at += len(commands)

    async def call_encoded(
        self, command: bytes, *, wait: float = 0.0, replies: int | None = None
    ) -> Any:
        """`call` with the command already in RESP (`encode`), for one sent again and again.
        With `replies`, `command` is that many commands, and their replies come back as a
        list, an error reply as its exception (not raised).

        A kept connection that Redis closed (say it restarted while this one was idle) is
        tried once more on a new one, as the layer's redis-py pools do."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            for retry in (True, False):
                if self._writer is not None and self._writer.transport.is_closing():
                    self.close()  # Redis reset it while it was idle: uvloop refuses writes
                kept = self._writer is not None
                self._deadline = loop.time() + wait + REPLY_GRACE_SECONDS
                try:
                    if not kept:
                        await self._connect(loop)
                    if replies is None:
                        return await self._call(command)
                    return await self._call_many(command, replies)
                except redis.exceptions.ResponseError:
                    raise
                except _BROKEN as error:
                    self.close()
                    if self._overdue:
                        self._overdue = False
                        raise redis.exceptions.TimeoutError("Redis did not answer") from error
                    if retry and kept:
                        continue
                    raise redis.exceptions.ConnectionError(
                        f"Redis connection: {error!r}"
                    ) from error
                except BaseException:
                    self.close()  # cancelled mid-reply: the connection's state is unknown
                    raise
                finally:
                    self._deadline = None
        raise AssertionError("unreachable")

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Once a second while connected: a call past its deadline loses its connection (its
        read fails, and the call raises TimeoutError)."""
        deadline = self._deadline
        if deadline is not None and loop.time() > deadline and self._writer is not None:
            self._overdue = True
            self._writer.transport.abort()
            return
        self._watchdog = loop.call_later(WATCH_INTERVAL_SECONDS, self._watch, loop)

    async def _call(self, command: bytes) -> Any:
        assert self._writer is not None
        self._writer.write(command)
        reply = await self._reply()
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def _call_many(self, commands: bytes, count: int) -> list[Any]:
        assert self._writer is not None
        self._writer.write(commands)
        return [await self._reply() for _ in range(count)]

    async def _reply(self) -> Any:
        """The next reply, as hiredis reads it (an error as redis-py's exception for it)."""
        assert self._reader is not None
        while True:
            reply = self._replies.gets()
            if reply is not False:
                return reply
            data = await self._reader.read(65536)
            if not data:
                raise EOFError("Redis closed the connection")
            self._replies.feed(data)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            async with asyncio.timeout(self.connect_timeout):
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
                self._replies = _reply_reader()
                if self.password:
                    credentials = (
                        (self.username, self.password) if self.username else (self.password,)
                    )
                    await self._call(encode("AUTH", *credentials))
                if self.db:
                    await self._call(encode("SELECT", self.db))
        except TimeoutError as error:
            self.close()
            raise redis.exceptions.TimeoutError("could not connect to Redis in time") from error
        except redis.exceptions.ResponseError as error:  # AUTH or SELECT refused
            self.close()
            raise redis.exceptions.AuthenticationError(str(error)) from error
        except BaseException:
            self.close()
            raise
        self._watchdog = loop.call_later(WATCH_INTERVAL_SECONDS, self._watch, loop)

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def _reply_reader() -> hiredis.Reader:
    """A parser of Redis's replies that gives an error reply as redis-py's exception for it
    (as redis-py's own hiredis parser does): LOADING as `BusyLoadingError` and READONLY as
    `ReadOnlyError`, which the layer counts as Redis being away, NOSCRIPT as `NoScriptError`,
    WRONGPASS as `AuthenticationError`; any other as `ResponseError`."""
    return hiredis.Reader(replyError=BaseParser.parse_error)
