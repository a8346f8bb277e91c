"""The channel layers chatsite picks in its settings: one per topology.

`InProcessChannelLayer` (one process, no Redis): Channels' in-memory layer, made cheaper per
frame. Measured at 200 streams, two costs of `InMemoryChannelLayer` stood out: it walks every
channel and group for expired messages on every send and receive (a tenth of the relay's CPU),
and its `group_send` starts an asyncio task per member for every message. Expiry is measured
in seconds (60 by default), so sweeping once a second loses nothing; and an in-memory `send`
never waits, so sending to each member in turn keeps the order and drops the task. Its `send`
also deep-copies every message (3% of the relay's CPU at 50 streams): here each member gets a
copy of the message's top level only, since the app's events (chat.events) are built afresh for
each send and nothing that receives one changes what is inside it.

`RedisChannelLayer` (several processes): channels-redis, riding out a Redis restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import channels_redis.core
import redis.exceptions
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer
from channels_redis.utils import create_pool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .. import outages
from ..outages import ChannelLayerAway

# channels-redis's own logger, whose lines (a member over capacity, on every frame to a socket
# that stopped reading) stay below the root logger's WARNING, as they did in channels-redis.
logger = logging.getLogger("channels_redis.core")

SWEEP_INTERVAL_SECONDS = 1.0
# A cancelled receive is cancelled again this often, this many times, until it ends.
CANCEL_AGAIN_SECONDS = 0.1
CANCEL_ATTEMPTS = 50

# channels-redis's group delivery, with each member's expired messages dropped first (which
# channels-redis does in a pipeline of its own before). KEYS: the members' queues; ARGV: one
# message per key, one capacity per key, then the time, the expiry and the oldest score kept.
GROUP_SEND_LUA = """
local n = #KEYS
local now = ARGV[2 * n + 1]
local expiry = ARGV[2 * n + 2]
local oldest = ARGV[2 * n + 3]
local over_capacity = 0
for i = 1, n do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, oldest)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[n + i]) then
        redis.call('ZADD', KEYS[i], now, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""

# channels-redis's receive without waiting: put back into the queue what the backup queue holds
# (messages a cancelled receive took), then pop the oldest message and keep a copy of it in
# the backup queue until it is handled. ARGV: the queue, its backup queue.
POP_WITH_BACKUP_LUA = """
local backed_up = redis.call('ZRANGE', ARGV[2], 0, -1, 'WITHSCORES')
for i = #backed_up, 1, -2 do
    redis.call('ZADD', ARGV[1], backed_up[i], backed_up[i - 1])
end
redis.call('DEL', ARGV[2])
local popped = redis.call('ZPOPMIN', ARGV[1])
if popped[1] then
    redis.call('ZADD', ARGV[2], popped[2], popped[1])
end
return popped
"""


class InProcessChannelLayer(InMemoryChannelLayer):
    _last_sweep = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep >= SWEEP_INTERVAL_SECONDS:
            self._last_sweep = now
            super()._clean_expired()

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_channel_name(channel)
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        try:
            queue.put_nowait((time.time() + self.expiry, dict(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def receive(self, channel: str) -> dict[str, Any]:
        # As InMemoryChannelLayer's, without a new Queue for every call (its setdefault).
        self._clean_expired()
        queue = self.channels.get(channel)
        if queue is None:
            self.require_valid_channel_name(channel)
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        try:
            _, message = await queue.get()
        finally:
            if queue.empty():
                self.channels.pop(channel, None)
        return cast(dict[str, Any], message)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, {})):
            try:
                await self.send(channel, message)
            except ChannelFull:
                pass  # as Channels does: a full channel misses the message (clients resync)


REDIS_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,  # also BusyLoadingError: a restarted Redis loading its data
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica during a failover
    ConnectionError,
)


class RedisChannelLayer(channels_redis.core.RedisChannelLayer):
    """channels-redis, riding out a Redis restart.

    - A call that finds Redis away raises `ChannelLayerAway` (chat.outages logs the outage once).
      Until Redis answers again, calls fail at once without touching the network, except one
      that probes it (a PING per host) each retry delay; calls that come while it probes wait
      for its answer. So an outage costs no connect timeouts and no flood of reconnects.
      `reachable()` waits for Redis.
    - The group memberships made through this layer are remembered, and a Redis restarted
      without its data gets them back when it answers again (the streaming consumer's groups
      must survive, or Stop and snapshot requests would reach nobody). Discards that could not
      reach Redis are done then too.
    - A pooled connection that Redis closed (say it restarted while idle) is retried once on a
      new one, so a restart nobody was using Redis for costs nothing.
    - A cancelled `receive` returns at once (see `receive`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._members: dict[str, set[str]] = {}
        self._missed_discards: set[tuple[str, str]] = set()
        self._next_probe = 0.0
        self._failed_probes = 0
        self._probing: asyncio.Future[None] | None = None
        self._group_send_scripts: dict[int, Any] = {}
        self._pop_script: Any = None

    def create_pool(self, index: int) -> Any:
        retry = Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,))
        return create_pool({"retry": retry, **self.hosts[index]})

    @contextlib.asynccontextmanager
    async def _redis(self) -> AsyncIterator[None]:
        """Around every call that talks to Redis: fail fast while it is away, and turn its
        connection errors into `ChannelLayerAway`."""
        if outages.redis.away:
            await self._probe()
        try:
            yield
        except REDIS_ERRORS as error:
            if not outages.redis.away:
                self._failed_probes = 0
                self._next_probe = time.monotonic()  # the next call tries again at once
                outages.redis.went_away(error)
            raise ChannelLayerAway(str(error)) from error

    async def _probe(self) -> None:
        """Return if Redis answers (restoring the groups first), else raise `ChannelLayerAway`.
        One probe at a time: a call that comes meanwhile waits for its answer."""
        loop = asyncio.get_running_loop()
        probing = self._probing
        if probing is not None and not probing.done() and probing.get_loop() is loop:
            await asyncio.shield(probing)
            return
        now = time.monotonic()
        if now < self._next_probe:
            raise ChannelLayerAway("Redis is away")
        self._next_probe = now + outages.retry_delay(self._failed_probes)
        self._failed_probes += 1
        self._probing = probing = loop.create_future()
        try:
            await self._restore()
        except REDIS_ERRORS as error:
            probing.set_exception(ChannelLayerAway(str(error)))
        except BaseException as error:  # cancelled: those waiting try again themselves
            probing.set_exception(ChannelLayerAway(f"probe interrupted: {error!r}"))
            probing.exception()  # read, so asyncio does not log it as never retrieved
            raise
        else:
            self._failed_probes = 0
            outages.redis.came_back()
            probing.set_result(None)
        finally:
            self._probing = None
        probing.result()  # raises ChannelLayerAway if Redis did not answer

    async def _restore(self) -> None:
        for index in range(self.ring_size):
            await self.connection(index).ping()
        for group, channels in list(self._members.items()):
            for channel in list(channels):
                await super().group_add(group, channel)
        for group, channel in list(self._missed_discards):
            await super().group_discard(group, channel)
            self._missed_discards.discard((group, channel))

    async def reachable(self) -> None:
        """Return once Redis answers, probing it with backoff (at once if it is there)."""
        while outages.redis.away:
            try:
                await self._probe()
            except ChannelLayerAway:
                await asyncio.sleep(max(self._next_probe - time.monotonic(), 0.01))

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        async with self._redis():
            await super().send(channel, message)

    async def receive(self, channel: str) -> dict[str, Any]:
        """As channels-redis's, in a task of its own that a cancelled caller does not wait
        for: redis-py connects under `asyncio.wait_for`, which on Python 3.11 can swallow a
        cancellation (fixed in 3.12), and then the receive would go on blocking its caller (a
        consumer that is closing) until a message comes. Left alone, it ends with the next
        message this process receives."""
        async with self._redis():
            receiving = asyncio.ensure_future(super().receive(channel))
            try:
                return cast(dict[str, Any], await asyncio.shield(receiving))
            except asyncio.CancelledError:
                _cancel_until_done(receiving)
                raise

    async def group_add(self, group: str, channel: str) -> None:
        self._members.setdefault(group, set()).add(channel)
        self._missed_discards.discard((group, channel))
        async with self._redis():
            await super().group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        members = self._members.get(group)
        if members is not None:
            members.discard(channel)
            if not members:
                del self._members[group]
        try:
            async with self._redis():
                await super().group_discard(group, channel)
        except ChannelLayerAway:
            self._missed_discards.add((group, channel))
            raise

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """As channels-redis's, in two round trips instead of four: it reads the members with
        one command and expires them with another, then expires each member's old messages in
        a pipeline, and then sends its Lua script's text to deliver. Here the first two share a
        pipeline, and the expiry is done inside the delivering script, called by its digest.
        Every frame of a reply goes through here."""
        assert self.require_valid_group_name(group), "Group name not valid"
        async with self._redis():
            key = self._group_key(group)
            connection = self.connection(self.consistent_hash(group))
            members = connection.pipeline(transaction=False)
            members.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
            members.zrange(key, 0, -1)
            _, names = await members.execute()
            channel_names = [name.decode("utf8") for name in names]
            keys_by_connection, message_by_key, capacity_by_key = (
                self._map_channel_keys_to_connection(channel_names, message)
            )
            for index, keys in keys_by_connection.items():
                now = time.time()
                args = [message_by_key[k] for k in keys] + [capacity_by_key[k] for k in keys]
                args += [now, self.expiry, int(now) - int(self.expiry)]
                over_capacity = await self._group_send_script(index)(
                    keys=keys, args=args, client=self.connection(index)
                )
                if over_capacity > 0:
                    logger.info(
                        "%s of %s channels over capacity in group %s",
                        over_capacity,
                        len(channel_names),
                        group,
                    )

    def _group_send_script(self, index: int) -> Any:
        """The delivering script (its digest; called on the connection of the running loop)."""
        script = self._group_send_scripts.get(index)
        if script is None:
            script = self.connection(index).register_script(GROUP_SEND_LUA)
            self._group_send_scripts[index] = script
        return script

    async def flush(self) -> None:
        async with self._redis():
            await super().flush()

    async def _brpop_with_clean(self, index: int, channel: str, timeout: float) -> Any:
        """As channels-redis's, in one round trip while messages are waiting, instead of three:
        its script puts back what a cancelled receive left in the backup queue, then it pops
        the next message and copies it to the backup. Here one script does all three; only an
        empty queue falls back to channels-redis's blocking pop."""
        connection = self.connection(index)
        backup_queue = self._backup_channel_name(channel)
        if self._pop_script is None:
            self._pop_script = connection.register_script(POP_WITH_BACKUP_LUA)
        popped = await self._pop_script(args=[channel, backup_queue], client=connection)
        if popped:
            return popped[0]
        return await super()._brpop_with_clean(index, channel, timeout)

    async def _clean_receive_backup(self, index: int, channel: str) -> None:
        # A detached task in channels-redis, whose error nobody would read. Left undone, the
        # message comes again from its backup queue: a duplicate, which every receiver here
        # tolerates (claims are atomic, frames carry cursors).
        with contextlib.suppress(*REDIS_ERRORS):
            await super()._clean_receive_backup(index, channel)


def _cancel_until_done(task: asyncio.Future[Any]) -> None:
    """Cancel the task, and cancel it again while it goes on: a swallowed cancellation (see
    `RedisChannelLayer.receive`) would leave it blocking in a BZPOPMIN until a message came,
    and an event loop that is closing would wait for it forever."""
    task.add_done_callback(_retrieve_outcome)
    _cancel_again(task, CANCEL_ATTEMPTS)


def _cancel_again(task: asyncio.Future[Any], attempts: int) -> None:
    if task.done():
        return
    task.cancel()
    if attempts > 1:
        asyncio.get_running_loop().call_later(
            CANCEL_AGAIN_SECONDS, _cancel_again, task, attempts - 1
        )


def _retrieve_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # read, so asyncio does not log it as never retrieved
