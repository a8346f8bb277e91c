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
import dataclasses
import hashlib
import logging
import math
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, cast

import channels_redis.core
import redis.asyncio
import redis.exceptions
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer
from channels_redis.utils import create_pool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .. import outages
from ..outages import ChannelLayerAway
from .redis_connections import REOPENING
from .redis_wire import RedisWire, encode

# channels-redis's own logger, whose lines (a member over capacity, on every frame to a socket
# that stopped reading) stay below the root logger's WARNING, as they did in channels-redis.
logger = logging.getLogger("channels_redis.core")
layer_logger = logging.getLogger(__name__)  # what goes wrong in this layer itself

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

# The same delivery for a batch of groups, each to the members this process last read for it,
# in one round trip. For each group the script first drops its expired members and checks that
# the rest are exactly the members the caller names; if not, it delivers nothing to that group
# (-1 in its place: the caller reads the members again). KEYS: per group, the group then its
# members' queues. ARGV: the oldest membership kept, the oldest message score kept, the
# expiry; then per group the number of members and their names, the number of queues, and per
# queue its message, capacity and score (increasing through the batch, so that messages to
# one queue keep their order). Returns per group the number of queues over capacity, or -1.
GROUP_SEND_BATCH_LUA = """
local oldest_member, oldest, expiry = ARGV[1], ARGV[2], ARGV[3]
local results = {}
local k, a = 1, 4
while a <= #ARGV do
    local group = KEYS[k]
    local count = tonumber(ARGV[a])
    local base = a + count + 1
    local n = tonumber(ARGV[base])
    redis.call('ZREMRANGEBYSCORE', group, 0, oldest_member)
    local members = redis.call('ZRANGE', group, 0, -1)
    local same = #members == count
    if same then
        for i = 1, count do
            if members[i] ~= ARGV[a + i] then
                same = false
                break
            end
        end
    end
    if same then
        local over_capacity = 0
        for i = 1, n do
            local queue = KEYS[k + i]
            local at = base + 3 * (i - 1)
            redis.call('ZREMRANGEBYSCORE', queue, 0, oldest)
            if redis.call('ZCOUNT', queue, '-inf', '+inf') < tonumber(ARGV[at + 2]) then
                redis.call('ZADD', queue, ARGV[at + 3], ARGV[at + 1])
                redis.call('EXPIRE', queue, expiry)
            else
                over_capacity = over_capacity + 1
            end
        end
        results[#results + 1] = over_capacity
    else
        results[#results + 1] = -1
    end
    k = k + 1 + n
    a = base + 3 * n + 1
end
return results
"""

SEND_BATCH_SHA = hashlib.sha1(GROUP_SEND_BATCH_LUA.encode()).hexdigest()

# How many messages the receive pump takes from Redis in one round trip, and how long it waits
# for one when none are there (then it looks whether anybody still listens).
PUMP_BATCH = 100
PUMP_WAIT_SECONDS = 1
# How many detached channels a process remembers, to drop messages that still come for them.
DETACHED_REMEMBERED = 10_000

# How many groups' members a process remembers for GROUP_SEND_BATCH_LUA.
KNOWN_GROUPS = 4096
# How long a process trusts what it last read of a group's members for a frame that a member
# that misses it mends by itself (`group_send_frame`): that long, such frames to a group whose
# members are all in this process cost no round trip to Redis. A member that joins elsewhere
# meanwhile misses at most this much of a reply, and its cursor's gap asks for a snapshot;
# a tab that joins mid-stream asks for one at once, which makes the next frame check
# (`recheck_members`), and a reply's start and Redis's return read the members afresh. So this
# bound is a backstop: measured at 50 streams in 2 processes, a second instead of 250 ms cut
# the cluster's CPU per token by 5-10% and Redis's own by half, and five seconds instead of
# one a further 2-8% (three pairs).
FRAME_MEMBERS_TRUSTED_SECONDS = 5.0

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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._attached: dict[str, tuple[AttachedInbox, int]] = {}

    def attach(self, channel: str, inbox: AttachedInbox) -> Callable[[], None]:
        """Put the channel's messages in `inbox` as they are sent, in place of queueing them
        for `receive` (chat.streaming.dispatch: a consumer's inbox, no task woken in between).
        The channel's capacity holds for the inbox: a message that finds it full is dropped,
        as from a full queue. What was queued before goes first. Returns the call that
        detaches the inbox."""
        self.require_valid_channel_name(channel)
        queue = self.channels.pop(channel, None)
        while queue is not None and not queue.empty():
            _, message = queue.get_nowait()
            inbox.put(message)
        self._attached[channel] = (inbox, self.get_capacity(channel))

        def detach() -> None:
            if self._attached.get(channel, (None,))[0] is inbox:
                del self._attached[channel]

        return detach

    async def flush(self) -> None:
        await super().flush()
        self._attached.clear()

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep >= SWEEP_INTERVAL_SECONDS:
            self._last_sweep = now
            super()._clean_expired()

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_channel_name(channel)
        if not self._put(channel, time.time() + self.expiry, message):
            raise ChannelFull(channel)

    def _put(self, channel: str, expires: float, message: dict[str, Any]) -> bool:
        attached = self._attached.get(channel)
        if attached is not None:
            inbox, capacity = attached
            if len(inbox) >= capacity:
                return False
            inbox.put(dict(message))
            return True
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        try:
            queue.put_nowait((expires, dict(message)))
        except asyncio.QueueFull:
            return False
        return True

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
        if group not in self.groups:  # (a group's name was checked when its first member joined)
            self.require_valid_group_name(group)
        self._clean_expired()
        expires = time.time() + self.expiry
        # The members' names were checked when they joined. A full channel misses the message,
        # as in Channels (clients resync).
        for channel in list(self.groups.get(group, {})):
            self._put(channel, expires, message)

    # In one process every member is here: nothing to trust about members elsewhere.
    group_send_frame = group_send


class AttachedInbox(Protocol):
    """Where an attached channel's messages go (chat.streaming.dispatch)."""

    def put(self, item: Any) -> None: ...

    def fail(self, error: BaseException) -> None:
        """The channel's messages stopped (Redis went away): the consumer raises `error`."""

    def __len__(self) -> int: ...


class _Pump:
    """A receive pump's state: the process queue it pops and how many listen on it."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.listeners = 0
        self.task: asyncio.Future[None] = None  # type: ignore[assignment]  # set at once


@dataclasses.dataclass
class _Delivery:
    """One group_send waiting for its batch: what goes to which queue, and its outcome."""

    group: str
    members: list[str]  # the group's members the script checks
    message_by_key: dict[Any, bytes]
    capacity_by_key: dict[Any, int]
    outcome: asyncio.Future[int] = dataclasses.field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class _SendBatches:
    """A process's group_sends waiting for the batch in flight (per event loop)."""

    def __init__(self) -> None:
        self.pending: list[_Delivery] = []
        self.sender: asyncio.Future[None] | None = None


class _PumpFailed:
    """In a plain receiver's buffer: the pump met Redis away."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _LocalRoute:
    """Where a group's frames go while its members, as last read or confirmed, are all
    consumers attached in this process on `loop`: their inboxes and capacities, and until
    when (monotonic) those members are trusted. Made once from the layer's tables
    (`RedisChannelLayer._local_route`) and dropped whenever one of them changes for the
    group, so a frame costs a lookup instead of walking the tables again."""

    __slots__ = ("inboxes", "loop", "until")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        inboxes: list[tuple[AttachedInbox, int]],
        until: float,
    ) -> None:
        self.loop = loop
        self.inboxes = inboxes
        self.until = until


REDIS_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,  # also BusyLoadingError: a restarted Redis loading its data
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica during a failover
    ConnectionError,
)


# Connections to Redis per event loop and host (redis-py's default), and how long a call waits
# for one while all are in use (a burst of sockets joining their groups) before it fails as
# Redis being away.
POOL_MAX_CONNECTIONS = 100
POOL_WAIT_SECONDS = 10.0


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
        self._known_members: dict[str, list[str]] = {}  # by group, as read last
        self._send_batch_script: Any = None
        self._wires: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, RedisWire | None]
        ] = weakref.WeakKeyDictionary()
        self._send_batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SendBatches] = (
            weakref.WeakKeyDictionary()
        )
        self._pop_script: Any = None
        # By channel: the inbox, the channel's capacity, and the loop of the consumer.
        self._attached: dict[str, tuple[AttachedInbox, int, asyncio.AbstractEventLoop]] = {}
        self._detached: set[str] = set()
        # By group: when the last read or confirmation of its `_known_members` began
        # (monotonic), and when `recheck_members` last asked for one (a read or confirmation
        # that began before that must not count).
        self._members_read_at: dict[str, float] = {}
        self._rechecked_at: dict[str, float] = {}
        self._rechecks_forgotten_at = -math.inf
        # By group: where its frames go without Redis (`group_send_frame`), made from the
        # tables above and dropped as any of them changes for the group.
        self._local_routes: dict[str, _LocalRoute] = {}
        self._bzmpop = True  # until Redis says it does not know it
        self._pumps: dict[tuple[asyncio.AbstractEventLoop, str], _Pump] = {}

    def create_pool(self, index: int) -> Any:
        """This loop's connections to one host: a pool that makes a call wait for a free
        connection when POOL_MAX_CONNECTIONS are in use (redis-py's plain pool raises
        MaxConnectionsError, a ConnectionError, which would count as Redis being away and
        close every socket of the process). Sentinel keeps channels-redis's pool."""
        retry = Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,))
        host = {"retry": retry, **self.hosts[index]}
        if "master_name" in host:
            return create_pool(host)
        host.setdefault("max_connections", POOL_MAX_CONNECTIONS)
        host.setdefault("timeout", POOL_WAIT_SECONDS)
        address = host.pop("address", None)
        if address is not None:  # as redis-py's `from_url`: the address's options win
            host.update(redis.asyncio.connection.parse_url(address))
        kind = host.get("connection_class", redis.asyncio.Connection)
        host["connection_class"] = REOPENING.get(kind, kind)
        return redis.asyncio.BlockingConnectionPool(**host)

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
        except Exception as error:  # not Redis's: still away, for the prober as for the others
            layer_logger.error("probing Redis failed", exc_info=error)
            probing.set_exception(ChannelLayerAway(f"probe failed: {error!r}"))
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
        # What was read of the groups' members before Redis went away is not trusted after
        # (nor a read that began before now): a tab may have joined elsewhere meanwhile, and
        # its snapshot request may be lost.
        self._known_members.clear()
        self._members_read_at.clear()
        self._rechecked_at.clear()
        self._rechecks_forgotten_at = time.monotonic()
        self._local_routes.clear()
        for group, channels in list(self._members.items()):
            for channel in list(channels):
                await self._restored(super().group_add, group, channel)
        for group, channel in list(self._missed_discards):
            if await self._restored(super().group_discard, group, channel):
                self._missed_discards.discard((group, channel))

    @staticmethod
    async def _restored(
        membership: Callable[[str, str], Awaitable[None]], group: str, channel: str
    ) -> bool:
        """Join or leave again as Redis comes back. A membership that Redis answers with an
        error (a key of another type, an ACL that forbids it, out of memory) is logged and
        skipped, not taken for Redis being away: one bad key must not keep the layer away
        for every caller, probe after probe. It is tried again at the next restore."""
        try:
            await membership(group, channel)
        except REDIS_ERRORS:
            raise
        except redis.exceptions.ResponseError as error:
            layer_logger.warning(
                "Redis refused to restore a membership of group %s: %s", group, error
            )
            return False
        return True

    async def reachable(self) -> None:
        """Return once Redis answers, probing it with backoff (at once if it is there)."""
        while outages.redis.away:
            try:
                await self._probe()
            except ChannelLayerAway:
                await asyncio.sleep(max(self._next_probe - time.monotonic(), 0.01))

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """As channels-redis's, except to a consumer attached in this process on this loop:
        that goes straight into its inbox, in order with the group frames that reach it the
        same way (a snapshot must not arrive after frames sent after it)."""
        async with self._redis():
            attached = self._attached.get(channel)
            if attached is not None and attached[2] is asyncio.get_running_loop():
                inbox, capacity, _ = attached
                if len(inbox) >= capacity:
                    raise ChannelFull(channel)
                inbox.put(dict(message))
                return
            await super().send(channel, message)

    async def receive(self, channel: str) -> dict[str, Any]:
        """A process-specific channel's next message, from the process's receive pump (see
        `attach`); any other channel's as channels-redis's, in a task of its own that a
        cancelled caller does not wait for: redis-py connects under `asyncio.wait_for`, which
        on Python 3.11 can swallow a cancellation (fixed in 3.12), and then the receive would
        go on blocking its caller (a consumer that is closing) until a message comes. Left
        alone, it ends with the next message this process receives."""
        if "!" in channel:
            return await self._receive_pumped(channel)
        async with self._redis():
            receiving = asyncio.ensure_future(super().receive(channel))
            try:
                return cast(dict[str, Any], await asyncio.shield(receiving))
            except asyncio.CancelledError:
                _cancel_until_done(receiving)
                raise

    # --- The receive pump: one per process (per event loop) for its specific channels -------
    #
    # channels-redis receives a process-specific channel's messages one at a time: every
    # waiting receiver runs `asyncio.wait` over two new tasks (the receive lock and its
    # buffer), the lock's holder pops one message (a round trip) and starts a task that
    # removes it from a backup queue (another round trip, which the next pop waits for). In a
    # cluster that was a third of a web process's CPU. Here one task per process pops up to
    # PUMP_BATCH messages in a round trip (blocking only when none wait; what arrives during a
    # round trip waits for the next, so the busier the process, the more each takes) and
    # hands each to its
    # channel: into the inbox of a consumer that attached it (no task woken in between), or
    # into the buffer a plain `receive` reads. No backup queue: nothing cancels the pump (it
    # ends by itself once nobody in the process listens), and a process's specific channels
    # end with it. A Redis outage fails every listener with `ChannelLayerAway` (a socket
    # closes with 4013, and the page reconnects), as a receive that met it did.

    def attach(self, channel: str, inbox: AttachedInbox) -> Callable[[], None]:
        """Put a process-specific channel's messages in `inbox` as the pump pops them (a
        consumer's inbox, chat.streaming.dispatch). The channel's capacity holds for the
        inbox: a message that finds it full is dropped, as channels-redis drops the oldest.
        Returns the call that detaches the inbox."""
        assert self.require_valid_channel_name(channel) and "!" in channel
        buffered = self.receive_buffer.pop(channel, None)
        while buffered is not None and not buffered.empty():
            inbox.put(buffered.get_nowait())
        self._attached[channel] = (
            inbox,
            self.get_capacity(channel),
            asyncio.get_running_loop(),
        )
        self._local_routes.clear()
        pump = self._listen(channel)

        def detach() -> None:
            if self._attached.get(channel, (None,))[0] is inbox:
                del self._attached[channel]
                self._local_routes.clear()
                self._stop_listening(pump)
            # Frames sent before its groups let it go are dropped, not kept for nobody.
            if len(self._detached) >= DETACHED_REMEMBERED:
                self._detached.clear()
            self._detached.add(channel)

        return detach

    async def _receive_pumped(self, channel: str) -> dict[str, Any]:
        assert self.require_valid_channel_name(channel)
        buffer = self.receive_buffer[channel]
        pump = self._listen(channel)
        try:
            item = await buffer.get()
        finally:
            if buffer.empty() and self.receive_buffer.get(channel) is buffer:
                del self.receive_buffer[channel]
            self._stop_listening(pump)
        if isinstance(item, _PumpFailed):
            raise ChannelLayerAway(str(item.error)) from item.error
        return cast(dict[str, Any], item)

    def _listen(self, channel: str) -> _Pump:
        """The running pump for the channel's process queue, started if need be, with one
        more listener counted."""
        key = (asyncio.get_running_loop(), self.non_local_name(channel))
        pump = self._pumps.get(key)
        if pump is None or pump.task.done():
            pump = self._pumps[key] = _Pump(key[1])
            pump.task = asyncio.ensure_future(self._run_pump(pump))
        pump.listeners += 1
        return pump

    def _stop_listening(self, pump: _Pump) -> None:
        pump.listeners -= 1  # the pump ends after its round trip if nobody listens by then

    async def _run_pump(self, pump: _Pump) -> None:
        index = self.consistent_hash(pump.channel)
        key = self.prefix + pump.channel
        try:
            while pump.listeners > 0:
                try:
                    async with self._redis():
                        popped = await self._pop_batch(self.connection(index), key)
                except ChannelLayerAway as error:
                    self._fail_listeners(pump, error)
                    return
                except Exception as error:  # say, WRONGTYPE: the listeners must not wait on
                    layer_logger.error(
                        "the receive pump of %s stopped: %s: %s", key, type(error).__name__, error
                    )
                    self._fail_listeners(pump, ChannelLayerAway(f"receive failed: {error!r}"))
                    return
                # Handed over even if nobody listens now: a message for a channel nobody
                # receives waits in its buffer, as in channels-redis.
                for content, _ in popped:
                    try:
                        message = self.deserialize(content)
                    except Exception:
                        layer_logger.error(
                            "the receive pump of %s dropped a message it cannot read", key
                        )
                        continue
                    self._hand_over(message)
        finally:
            for key_, running in list(self._pumps.items()):
                if running is pump:
                    del self._pumps[key_]

    async def _pop_batch(self, connection: Any, key: str) -> list[Any]:
        """Up to PUMP_BATCH (message, score) pairs from the queue, oldest first, waiting up to
        PUMP_WAIT_SECONDS for one: one BZMPOP (Redis 7), else a ZPOPMIN and, when it finds
        none, a BZPOPMIN."""
        wire = self._wire(f"pump {key}")  # one a pump: its pops block
        if self._bzmpop:
            try:
                if wire is not None:
                    command = encode(
                        "BZMPOP", PUMP_WAIT_SECONDS, 1, key, "MIN", "COUNT", PUMP_BATCH
                    )
                    got = await wire.call_encoded(command, wait=PUMP_WAIT_SECONDS)
                else:
                    got = await connection.bzmpop(
                        PUMP_WAIT_SECONDS, 1, [key], min=True, count=PUMP_BATCH
                    )
            except redis.exceptions.ResponseError as error:
                if "unknown command" not in str(error).lower():
                    raise
                self._bzmpop = False  # Redis before 7.0
            else:
                return list(got[1]) if got else []
        popped = await connection.zpopmin(key, PUMP_BATCH)
        if popped:
            return list(popped)
        got = await connection.bzpopmin(key, timeout=PUMP_WAIT_SECONDS)
        return [(got[1], got[2])] if got else []

    def _hand_over(self, message: dict[str, Any]) -> None:
        channels = message.pop("__asgi_channel__", None)
        if channels is None:
            return  # not sent to a specific channel: nobody here asked for it
        for channel in [channels] if isinstance(channels, str) else channels:
            attached = self._attached.get(channel)
            if attached is None:
                if channel not in self._detached:  # else its consumer has gone: dropped
                    self.receive_buffer[channel].put_nowait(message)
                continue
            inbox, capacity, _ = attached
            if len(inbox) < capacity:
                inbox.put(message)

    def _fail_listeners(self, pump: _Pump, error: ChannelLayerAway) -> None:
        prefix = pump.channel
        for channel, (inbox, _, _) in list(self._attached.items()):
            if channel.startswith(prefix):
                del self._attached[channel]
                self._local_routes.clear()
                inbox.fail(error)
        for channel, buffer in list(self.receive_buffer.items()):
            if channel.startswith(prefix) and buffer.empty():  # a receiver waits on it
                buffer.put_nowait(_PumpFailed(error))

    async def group_add(self, group: str, channel: str) -> None:
        """As channels-redis's, in one round trip instead of two (`_membership_on_wire`)."""
        self._members.setdefault(group, set()).add(channel)
        self._local_routes.pop(group, None)
        self._missed_discards.discard((group, channel))
        async with self._redis():
            if not await self._membership_on_wire(group, channel, join=True):
                await super().group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        members = self._members.get(group)
        if members is not None:
            members.discard(channel)
            if not members:
                del self._members[group]
        self._local_routes.pop(group, None)
        try:
            async with self._redis():
                if not await self._membership_on_wire(group, channel, join=False):
                    await super().group_discard(group, channel)
        except ChannelLayerAway:
            self._missed_discards.add((group, channel))
            raise

    async def _membership_on_wire(self, group: str, channel: str, *, join: bool) -> bool:
        """Join (channels-redis's ZADD with the time, then EXPIRE) or leave (ZREM) a group in
        one round trip on this loop's wire; False where there is none (redis-py's path)."""
        wire = self._members_wire()
        if wire is None:
            return False
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        key = self._group_key(group)
        if join:
            await wire.pipeline(
                encode("ZADD", key, time.time(), channel),
                encode("EXPIRE", key, self.group_expiry),
            )
        else:
            await wire.pipeline(encode("ZREM", key, channel))
        return True

    def _members_wire(self) -> RedisWire | None:
        """This loop's wire for the groups' memberships and members' reads, where the groups
        are on one Redis. Its pipelines: the calls of many sockets and replies at once share
        round trips (`RedisWire.pipeline`)."""
        return self._wire("members") if self.ring_size == 1 else None

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """As channels-redis's, in one round trip instead of four while the group's members
        stay as they were, and none for the members in this process.

        Members whose consumers are attached in this process on this loop get the message
        straight into their inboxes. For the others, channels-redis reads the members with one
        command and expires them with another, then expires each member's old messages in a
        pipeline, and then sends its Lua script's text to deliver. Here one script, called by
        its digest, checks that the members are those this process read last, and delivers
        (GROUP_SEND_BATCH_LUA, with the sends of other tasks that came meanwhile); when they
        changed, the members are read again (one pipelined round trip) and a second script
        delivers."""
        await self._group_send(group, message)

    async def group_send_frame(self, group: str, message: dict[str, Any]) -> None:
        """`group_send` for a frame that a member that misses it mends by itself (a gap in its
        cursor asks for a snapshot: `message.delta`). For FRAME_MEMBERS_TRUSTED_SECONDS after
        this process last read or confirmed the group's members, a group whose members are
        all in this process gets such a frame with no round trip to Redis: when the
        streaming consumer runs in the process whose sockets watch the reply (the embedded
        worker), its frames do not cross Redis."""
        route = self._local_routes.get(group)
        if route is None and self.ring_size == 1:
            route = self._local_route(group)
        if (
            route is not None
            and route.loop is asyncio.get_running_loop()
            and time.monotonic() < route.until
            and not outages.redis.away
        ):
            # No `_redis()` around it: nothing to reach. A full inbox misses the frame, as a
            # full queue does.
            for inbox, capacity in route.inboxes:
                if len(inbox) < capacity:
                    inbox.put(dict(message))
            return
        await self._group_send(group, message)

    def _local_route(self, group: str) -> _LocalRoute | None:
        """The group's `_LocalRoute`, made and kept, if its members as read or confirmed
        lately are all attached in this process on this loop (`_all_here_lately`)."""
        known = self._known_members.get(group)
        if known is None or not self._all_here_lately(group, known):
            return None
        attached = self._attached
        route = self._local_routes[group] = _LocalRoute(
            asyncio.get_running_loop(),
            [attached[channel][:2] for channel in self._attached_members(group)],
            self._members_read_at[group] + FRAME_MEMBERS_TRUSTED_SECONDS,
        )
        return route

    async def _group_send(self, group: str, message: dict[str, Any]) -> None:
        if group not in self._known_members:  # (a known group's name was checked before)
            assert self.require_valid_group_name(group), "Group name not valid"
        async with self._redis():
            here = self._attached_members(group)
            # Elsewhere first: if Redis fails, nobody got the message, and a retry
            # (chat.events) cannot give the members here a second copy.
            await self._send_elsewhere(group, message, here)
            self._deliver(here, message)

    async def _send_elsewhere(self, group: str, message: dict[str, Any], here: list[str]) -> None:
        """Deliver to the group's members but those `here`."""
        if self.ring_size == 1:  # the group and its members' queues on one Redis
            known = self._known_members.get(group)
            if known is not None and await self._send_to_known_members(group, known, message, here):
                return
        key = self._group_key(group)
        oldest = int(time.time()) - self.group_expiry
        began = time.monotonic()
        wire = self._members_wire()
        if wire is not None:
            _, names = await wire.pipeline(
                encode("ZREMRANGEBYSCORE", key, 0, oldest), encode("ZRANGE", key, 0, -1)
            )
        else:
            members = self.connection(self.consistent_hash(group)).pipeline(transaction=False)
            members.zremrangebyscore(key, min=0, max=oldest)
            members.zrange(key, 0, -1)
            _, names = await members.execute()
        channel_names = [name.decode("utf8") for name in names]
        if self.ring_size == 1:
            if len(self._known_members) >= KNOWN_GROUPS:
                self._known_members.clear()
                self._members_read_at.clear()
                self._local_routes.clear()
            self._known_members[group] = channel_names
            self._local_routes.pop(group, None)
            self._members_confirmed(group, began)
        channel_names = [name for name in channel_names if name not in here]
        if not channel_names:
            return
        keys_by_connection, message_by_key, capacity_by_key = self._map_channel_keys_to_connection(
            channel_names, message
        )
        for index, keys in keys_by_connection.items():
            now = time.time()
            args = [message_by_key[k] for k in keys] + [capacity_by_key[k] for k in keys]
            args += [now, self.expiry, int(now) - int(self.expiry)]
            over_capacity = await self._group_send_script(index)(
                keys=keys, args=args, client=self.connection(index)
            )
            self._log_over_capacity(over_capacity, len(channel_names), group)

    def recheck_members(self, group: str) -> None:
        """The group's next frame checks its members with Redis (one may have joined from
        another process), and a read or confirmation still on its way does not count."""
        self._members_read_at.pop(group, None)
        self._local_routes.pop(group, None)
        if len(self._rechecked_at) >= KNOWN_GROUPS:
            self._rechecked_at.clear()
            self._rechecks_forgotten_at = time.monotonic()
        self._rechecked_at[group] = time.monotonic()

    def _members_confirmed(self, group: str, began: float) -> None:
        """Redis answered a read or check of the group's members that `began` then: trust it
        for frames, unless a recheck was asked for since it began (its answer may predate a
        member that joined elsewhere)."""
        if self._rechecked_at.get(group, self._rechecks_forgotten_at) < began:
            self._members_read_at[group] = began
            self._local_routes.pop(group, None)  # trusted for longer now

    def _attached_members(self, group: str) -> list[str]:
        """The group's members whose consumers are attached in this process, on this loop."""
        members = self._members.get(group)
        if not members:
            return []
        loop = asyncio.get_running_loop()
        attached = self._attached
        return [
            channel for channel in members if channel in attached and attached[channel][2] is loop
        ]

    def _deliver(self, channels: list[str], message: dict[str, Any]) -> None:
        """Put the message in the inbox of each channel still attached on this loop (one may
        have gone during the round trip before; a full one misses it, as a full queue does)."""
        loop = asyncio.get_running_loop()
        for channel in channels:
            attached = self._attached.get(channel)
            if attached is not None and attached[2] is loop and len(attached[0]) < attached[1]:
                attached[0].put(dict(message))

    def _all_here_lately(self, group: str, known: list[str]) -> bool:
        """Whether the group's members, as read or confirmed lately, are all consumers
        attached in this process on this loop (a member here that reads with `receive`, or
        on another loop, gets its messages through Redis)."""
        read_at = self._members_read_at.get(group, -FRAME_MEMBERS_TRUSTED_SECONDS)
        if time.monotonic() - read_at >= FRAME_MEMBERS_TRUSTED_SECONDS:
            return False
        loop = asyncio.get_running_loop()
        attached = self._attached
        return all(channel in attached and attached[channel][2] is loop for channel in known)

    async def _send_to_known_members(
        self, group: str, members: list[str], message: dict[str, Any], here: list[str]
    ) -> bool:
        """Deliver to the members not `here` if the group's members are still `members`;
        False if they changed.

        Sends go out in batches, one script call each, at most one in flight per process: a
        send that comes while one is in flight waits for it and goes with the others that
        came meanwhile. So a process that keeps up sends each frame at once, and one that
        falls behind sends many frames a round trip instead of queueing round trips."""
        elsewhere = [channel for channel in members if channel not in here]
        message_by_key: dict[str, bytes] = {}
        capacity_by_key: dict[str, int] = {}
        if elsewhere:
            _, message_by_key, capacity_by_key = self._map_channel_keys_to_connection(
                elsewhere, message
            )
        delivery = _Delivery(group, members, message_by_key, capacity_by_key)
        loop = asyncio.get_running_loop()
        batch = self._send_batches.get(loop)
        if batch is None:
            batch = self._send_batches[loop] = _SendBatches()
        batch.pending.append(delivery)
        if batch.sender is None or batch.sender.done():
            batch.sender = asyncio.ensure_future(self._send_batches_until_done(batch))
        began = time.monotonic()
        over_capacity = await delivery.outcome
        if over_capacity < 0:
            return False
        self._members_confirmed(group, began)
        self._log_over_capacity(over_capacity, len(members), group)
        return True

    async def _send_batches_until_done(self, batch: _SendBatches) -> None:
        while batch.pending:
            deliveries, batch.pending = batch.pending, []
            try:
                outcomes = await self._send_batch(deliveries)
            except BaseException as error:
                for delivery in deliveries:
                    if not delivery.outcome.done():
                        delivery.outcome.set_exception(error)
                        delivery.outcome.exception()  # its sender may have been cancelled
                if isinstance(error, asyncio.CancelledError):
                    raise
                continue
            for delivery, outcome in zip(deliveries, outcomes, strict=True):
                if not delivery.outcome.done():
                    delivery.outcome.set_result(int(outcome))

    async def _send_batch(self, deliveries: list[_Delivery]) -> list[int]:
        now = time.time()
        keys: list[Any] = []
        args: list[Any] = [int(now) - self.group_expiry, int(now) - int(self.expiry), self.expiry]
        score = now
        for delivery in deliveries:
            keys.append(self._group_key(delivery.group))
            args += [len(delivery.members), *delivery.members]
            args.append(len(delivery.message_by_key))
            for key, content in delivery.message_by_key.items():
                keys.append(key)
                args += [content, delivery.capacity_by_key[key], repr(score)]
                score += 1e-6
        wire = self._wire("send")
        if wire is not None:
            try:
                return cast(
                    list[int], await wire.call("EVALSHA", SEND_BATCH_SHA, len(keys), *keys, *args)
                )
            except redis.exceptions.NoScriptError:
                await wire.call("SCRIPT", "LOAD", GROUP_SEND_BATCH_LUA)
                return cast(
                    list[int], await wire.call("EVALSHA", SEND_BATCH_SHA, len(keys), *keys, *args)
                )
        connection = self.connection(0)
        if self._send_batch_script is None:
            self._send_batch_script = connection.register_script(GROUP_SEND_BATCH_LUA)
        return cast(
            list[int], await self._send_batch_script(keys=keys, args=args, client=connection)
        )

    def _wire(self, purpose: str) -> RedisWire | None:
        """This loop's plain connection for one purpose (a pump, the batch sender, the
        memberships), or None where Redis is not reached over plain TCP (see
        chat.streaming.redis_wire)."""
        wires = self._wires.get(asyncio.get_running_loop())
        if wires is None:
            wires = self._wires[asyncio.get_running_loop()] = {}
        if purpose not in wires:
            wires[purpose] = RedisWire.for_pool(self.connection(0).connection_pool)
        return wires[purpose]

    @staticmethod
    def _log_over_capacity(over_capacity: int, members: int, group: str) -> None:
        if over_capacity > 0:
            logger.info(
                "%s of %s channels over capacity in group %s", over_capacity, members, group
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
