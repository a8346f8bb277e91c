"""Running the streaming consumer: inside the web process (no Redis), or as `runworker`.

Either way the process also runs recovery: at start and then every third of the lease time it
marks `interrupted` the replies whose worker died, and offers unclaimed replies again.

A worker outlives Redis and database outages: its listener waits for Redis to come back, and
recovery skips a pass the database cannot take.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import signal
from typing import Any, cast

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.worker import Worker
from django.conf import settings

from .. import events, outages, services
from ..outages import ChannelLayerAway
from .consumer import GenerationRunner
from .liveness import known_dead
from .upstream import close_http_clients

logger = logging.getLogger(__name__)

# How long a worker's listener goes on trying a receive that fails otherwise than by Redis
# being away before it ends the worker.
LISTENER_GIVE_UP_SECONDS = 60.0


async def recover_once(*, requeue_older_than: float) -> None:
    # After a database outage no worker could renew its leases: give them a lease's time to
    # do so before taking a lapsed lease for a dead worker. A worker known dead (a process
    # of this machine that has ended) renews nothing: its leases are given up at once.
    if outages.database.back_for() >= settings.CHAT_LEASE_SECONDS:
        dead = known_dead if settings.CHAT_DETECT_DEAD_WORKERS else None
        for message in await sync_to_async(services.replies_interrupt_expired)(dead=dead):
            logger.warning("message %s: its worker stopped; marked interrupted", message.pk)
            await events.message_finished(message.conversation_id, message.pk)
    for message_id in await sync_to_async(services.replies_requeue_unclaimed)(
        older_than=requeue_older_than
    ):
        logger.info("message %s was never claimed; offering it again", message_id)
        await events.request_generation_async(message_id)


async def recovery_loop() -> None:
    """At start every pending reply is offered again (an in-memory queue died with its
    process), and so after Redis comes back (a restarted Redis lost its queue); otherwise only
    those left unclaimed for CHAT_REQUEUE_SECONDS."""
    requeue_older_than = 0.0
    redis_returns = outages.redis.returns
    while True:
        try:
            if await outages.database_answers():
                await recover_once(requeue_older_than=requeue_older_than)
        except outages.DATABASE_ERRORS as error:
            await sync_to_async(outages.database_failed)(error)
        except Exception:
            logger.exception("recovery pass failed")
        requeue_older_than = settings.CHAT_REQUEUE_SECONDS
        await asyncio.sleep(max(settings.CHAT_LEASE_SECONDS / 3, 0.2))
        if outages.redis.returns != redis_returns:
            redis_returns = outages.redis.returns
            requeue_older_than = 0.0


class StreamWorker(Worker):
    """The Channels worker for `chat-stream`, with recovery and a graceful SIGTERM: it stops
    taking generations, lets those in flight finish for CHAT_SHUTDOWN_GRACE_SECONDS, then saves
    each remaining one as `interrupted` with all its text (one with none yet goes back to the
    queue: `GenerationRunner.shutdown`), and exits."""

    async def application_checker(self) -> None:
        """Nothing to poll: asgiref's checker woke ten times a second to find application
        instances that had ended, half of an idle process's CPU. Each is reaped as it ends
        instead (`get_or_create_application_instance`)."""

    def get_or_create_application_instance(
        self, scope_id: str, scope: dict[str, Any]
    ) -> asyncio.Queue[Any]:
        """As asgiref's, and an instance is forgotten the moment it ends (its exception
        logged), so the next message for its channel starts a new one rather than waiting in
        the ended one's queue."""
        known = self.application_instances.get(scope_id)
        if known is not None and known["future"].done():  # ended; its callback has not run yet
            del self.application_instances[scope_id]
        queue = super().get_or_create_application_instance(scope_id, scope)
        details = self.application_instances[scope_id]
        if details is not known:
            details["future"].add_done_callback(functools.partial(self._ended, scope_id, details))
        return cast(asyncio.Queue[Any], queue)

    def _ended(self, scope_id: str, details: dict[str, Any], future: asyncio.Future[Any]) -> None:
        if self.application_instances.get(scope_id) is details:
            del self.application_instances[scope_id]
        if not future.cancelled() and (error := future.exception()) is not None:
            logger.error("the %s consumer ended with an error", scope_id, exc_info=error)
        # Messages put in its queue after it stopped reading (while it ended): the listener
        # reserved a generation slot for each `generate`. A new instance takes them (and, if
        # the worker is stopping, frees their slots and offers their replies again, as for any
        # message taken then); an instance cancelled frees their slots, and recovery offers
        # their replies again.
        queue: asyncio.Queue[Any] = details["input_queue"]
        waiting = [queue.get_nowait() for _ in range(queue.qsize())]
        if not waiting:
            return
        if not future.cancelled():
            fresh = self.get_or_create_application_instance(scope_id, details["scope"])
            for message in waiting:
                fresh.put_nowait(message)
            return
        runner = GenerationRunner.current()
        for message in waiting:
            if message.get("type") == "generate":
                runner.release()

    async def handle(self) -> None:
        """Like Channels' handle, but its listeners stop with it (on shutdown they must stop
        taking messages off the shared channel), and the consumer of each channel starts at
        once rather than with its first message: a reply requested in this process can then
        start here (`GenerationRunner.start_here`) before any came over the channel."""
        for channel in self.channels:
            self.get_or_create_application_instance(
                channel, {"type": "channel", "channel": channel}
            )
        listeners = [asyncio.ensure_future(self.listener(channel)) for channel in self.channels]
        try:
            await asyncio.gather(*listeners)
        finally:
            for listener in listeners:
                listener.cancel()

    async def listener(self, channel: str) -> None:
        """Like Channels' listener, but takes a message only when a generation slot is free,
        and waits out a Redis outage (the channel layer logs it) instead of failing. Any other
        error of a receive is tried again after a pause, rather than ending the worker at once
        (whose share of the replies would wait for its restart); one that lasts
        LISTENER_GIVE_UP_SECONDS, a fault no retry mends, ends it for its supervisor to see."""
        runner = GenerationRunner.current()
        loop = asyncio.get_running_loop()
        failures = 0
        failing_since = 0.0
        while runner.accepting:
            await runner.reserve()
            try:
                message = await self.channel_layer.receive(channel)
            except ChannelLayerAway:
                runner.release()
                await events.channel_layer_reachable()
                continue
            except Exception as error:
                runner.release()
                if not failures:
                    failing_since = loop.time()
                    logger.exception("receiving from %s failed; trying again", channel)
                elif loop.time() - failing_since > LISTENER_GIVE_UP_SECONDS:
                    raise
                else:
                    logger.warning("receiving from %s failed again: %r", channel, error)
                await asyncio.sleep(outages.retry_delay(failures))
                failures += 1
                continue
            except BaseException:
                runner.release()
                raise
            failures = 0
            if message.get("type") != "generate":
                runner.release()  # only `generate` takes a slot
            scope = {"type": "channel", "channel": channel}
            await self.get_or_create_application_instance(channel, scope).put(message)

    def run(self) -> None:
        asyncio.run(self.serve_until_signalled())

    async def serve_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        serving = asyncio.create_task(self.arun())
        recovery = asyncio.create_task(recovery_loop())
        stopped = asyncio.create_task(stop.wait())
        logger.info(
            "worker %s listening on %s (event loop: %s)",
            GenerationRunner.current().worker_id,
            self.channels,
            _loop_kind(loop),
        )
        await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
        failure: BaseException | None = None
        if serving.done():  # it ends only when signalled: an end of its own is a failure
            if serving.cancelled():
                failure = RuntimeError("the listeners were cancelled")
            else:
                failure = serving.exception() or RuntimeError("the listeners returned")
        if failure is not None:
            logger.error("worker failed; saving replies in flight and exiting", exc_info=failure)
        logger.info("worker stopping: no new generations")
        runner = GenerationRunner.current()
        runner.accepting = False
        for task in (serving, recovery):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(serving, recovery, return_exceptions=True)
        await runner.shutdown(grace=settings.CHAT_SHUTDOWN_GRACE_SECONDS)
        await close_http_clients()  # else aiohttp logs an unclosed session as an error at exit
        logger.info("worker stopped")
        if failure is not None:
            raise SystemExit(1)  # let the process supervisor restart it


class EmbeddedWorkerMiddleware:
    """Starts the streaming consumer on the server's event loop at the first ASGI call.

    Daphne has no lifespan events, and nothing can reach the `chat-stream` channel before the
    first request, so the first call of any kind is early enough. A `channel` call comes from
    a worker's own consumer (`runworker` loads the same application): that process already
    runs the streaming consumer, so none is started for it.
    """

    def __init__(self, application: Any) -> None:
        self.application = application
        self._started_on: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        loop = asyncio.get_running_loop()
        if self._started_on is not loop and scope["type"] != "channel":
            self._started_on = loop
            worker = StreamWorker(
                application=self.application,
                channels=[settings.CHAT_STREAM_CHANNEL],
                channel_layer=get_channel_layer(),
            )
            self._tasks = {loop.create_task(worker.arun()), loop.create_task(recovery_loop())}
            _stop_with_the_server(loop, self._tasks)
            logger.info(
                "streaming consumer running inside the web process (event loop: %s)",
                _loop_kind(loop),
            )
        return await self.application(scope, receive, send)


def _loop_kind(loop: asyncio.AbstractEventLoop) -> str:
    """'uvloop' or 'asyncio': the package whose event loop this is (chatsite.event_loop)."""
    return type(loop).__module__.partition(".")[0]


def _stop_with_the_server(loop: asyncio.AbstractEventLoop, tasks: set[asyncio.Task[None]]) -> None:
    """Daphne stops (on SIGTERM, say) without telling the application: as its reactor shuts
    down, stop the streaming consumer as a worker does on SIGTERM (it stops taking replies
    and recovering; those in flight get CHAT_SHUTDOWN_GRACE_SECONDS, then each is saved
    `interrupted` with all its text, or goes back to the queue if it has none yet), then close
    the upstream client, or aiohttp logs an unclosed session as an error."""
    try:
        from twisted.internet import reactor
        from twisted.internet.defer import Deferred
    except ImportError:  # not under daphne
        return

    async def stop() -> None:
        runner = GenerationRunner.current()
        runner.accepting = False
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        if runner.tasks:
            turns = len(set(runner.tasks.values()))
            logger.info("server stopping: saving %d replies in flight", turns)
        await runner.shutdown(grace=settings.CHAT_SHUTDOWN_GRACE_SECONDS)
        await close_http_clients()

    def stop_with_the_reactor() -> Deferred[None]:
        # In a context of its own: the signal's callback may have copied a request's, whose
        # thread-sensitive calls go to that request's thread (or fail once it has ended).
        return Deferred.fromFuture(loop.create_task(stop(), context=contextvars.Context()))

    cast(Any, reactor).addSystemEventTrigger("before", "shutdown", stop_with_the_reactor)
