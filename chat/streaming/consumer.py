"""The background streaming consumer on the `chat-stream` channel.

A Channels consumer handles its messages one at a time, so each `generate` message starts its
own task; a semaphore bounds how many stream at once. The consumer also joins each reply's
generation group, so Stop and snapshot requests reach whichever worker streams that reply; it
outlives a Redis outage, as those groups name its channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from django.conf import settings

from .. import events, outages, services
from ..outages import ChannelLayerAway
from .dispatch import DirectEventDispatch, Inbox, dispatch_many
from .generation import Generation
from .liveness import new_worker_id

logger = logging.getLogger(__name__)

# How long a stopping worker waits for the database to hand back the replies it had not begun.
HAND_BACK_DATABASE_SECONDS = 5.0
# How long a shutdown waits, at its end, for what it left to run in the background.
BACKGROUND_SECONDS = 5.0


class StreamingConsumer(DirectEventDispatch, AsyncConsumer):
    """Starts, cancels and snapshots generations; the work itself is in `Generation`."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """As Channels' own, except that reading its channel waits out a Redis outage instead
        of ending the consumer: the generation groups of the replies in flight name this
        channel, so a new consumer would never hear their Stop or snapshot requests."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.base_send = send
        inbox = Inbox()
        runner = GenerationRunner.current()
        runner.inbox = inbox
        try:
            with contextlib.suppress(StopConsumer):
                await dispatch_many([receive, self._receive_event], self.dispatch, inbox)
        finally:
            if runner.inbox is inbox:
                runner.inbox = None

    async def _receive_event(self) -> dict[str, Any]:
        while True:
            try:
                message: dict[str, Any] = await self.channel_layer.receive(self.channel_name)
                return message
            except ChannelLayerAway:
                await events.channel_layer_reachable()

    async def generate(self, message: dict[str, Any]) -> None:
        runner = GenerationRunner.current()
        runner.start(message["message_id"], self.channel_name)

    async def generation_cancel(self, message: dict[str, Any]) -> None:
        # Sent to a reply's generation group; find which of our generations it is for.
        GenerationRunner.current().cancel_for_channel_event(message)

    async def generation_snapshot_request(self, message: dict[str, Any]) -> None:
        # A failed snapshot (a full or unreachable channel) must not end this consumer: the
        # groups of every reply in flight point at its channel.
        try:
            await GenerationRunner.current().answer_snapshot(message)
        except Exception:
            logger.exception("could not answer a snapshot request")


class GenerationRunner:
    """The generations running in this process, one task each.

    Capacity is reserved before a `generate` message is taken off the shared channel, so a
    full worker leaves work to the others instead of queueing it behind its own.
    """

    _instances: dict[int, GenerationRunner] = {}

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.worker_id = new_worker_id()
        self.capacity = settings.CHAT_MAX_CONCURRENT_GENERATIONS
        self.reserved = 0
        self._capacity_freed = asyncio.Event()
        self.generations: dict[int, Generation] = {}
        # Every reply of a running turn (the first, its tool rounds' follow-ups) -> its task,
        # and each turn's task -> the reply it is on: a Stop for any reply of the turn stops
        # the turn where it is (a tab may name the reply whose tool round has just ended).
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.turn_generations: dict[asyncio.Task[None], Generation] = {}
        self.cancel_requested: set[int] = set()
        # At shutdown: the replies left claimed with nothing streamed, to hand back, and those
        # a user stopped meanwhile (they end cancelled instead).
        self.left_for_hand_back: set[int] = set()
        self.stops_while_stopping: set[int] = set()
        self.leave_after_shutdown: list[tuple[int, str]] = []  # (reply, channel) to leave
        self._keep: set[asyncio.Task[Any]] = set()
        self.accepting = True
        # The inbox of this loop's streaming consumer while it runs: `start_here` hands it
        # a `generate` message, as if it came over the shared channel.
        self.inbox: Inbox | None = None

    @classmethod
    def serving_here(cls) -> GenerationRunner | None:
        """The runner of this event loop's streaming consumer, if one runs on it."""
        loop = asyncio.get_running_loop()
        runner = cls._instances.get(id(loop))
        if runner is None or runner.loop is not loop or runner.inbox is None:
            return None
        return runner

    @classmethod
    def current(cls) -> GenerationRunner:
        loop_id = id(asyncio.get_running_loop())
        if loop_id not in cls._instances:
            cls._instances[loop_id] = cls()
        return cls._instances[loop_id]

    async def reserve(self) -> None:
        """Wait for a free slot and take it (the worker calls this before each receive)."""
        while self.reserved >= self.capacity:
            self._capacity_freed.clear()
            await self._capacity_freed.wait()
        self.reserved += 1

    def release(self) -> None:
        self.reserved -= 1
        self._capacity_freed.set()

    def start_here(self, message_id: int) -> bool:
        """Give a reply requested in this process to this loop's streaming consumer, if it
        runs, takes work and has a free slot (taken now); False if not (the reply then goes
        on the shared channel). The consumer starts it in its own task, outside the caller's
        context (a view's thread, which ends with the request)."""
        if self.inbox is None or not self.accepting or self.reserved >= self.capacity:
            return False
        self.reserved += 1
        self.inbox.put({"type": "generate", "message_id": message_id})
        return True

    def start(self, message_id: int, channel_name: str) -> None:
        """Start a turn in the slot reserved for this message."""
        if not self.accepting:
            # Taken off the channel while stopping: hand it back for another worker.
            self.release()
            self._background(events.request_generation_async(message_id))
            return
        if message_id in self.tasks:
            self.release()
            return
        self.tasks[message_id] = asyncio.create_task(self._run_turn(message_id, channel_name))

    def _background(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._keep.add(task)
        task.add_done_callback(self._keep.discard)

    async def _run_turn(self, message_id: int, channel_name: str) -> None:
        """Stream a reply and, after each tool round, the follow-up reply, in this one task.

        The worker joins a reply's generation group before claiming it, so a Stop sent once
        the reply is claimed reaches it; a Stop that comes before its Generation exists is
        remembered and honoured as the Generation starts."""
        joined: list[int] = []
        turn_task = self.tasks[message_id]
        try:
            await events.join_generation(message_id, channel_name)
            joined.append(message_id)
            reply = await services.reply_claim(message_id=message_id, worker_id=self.worker_id)
            stopped_reply: Generation | None = None  # the turn's reply that was stopped
            while reply is not None:  # None: cancelled while queued, or another worker has it
                generation = Generation(reply=reply, worker_id=self.worker_id)
                if stopped_reply is not None:
                    generation.stop_like(stopped_reply)
                elif reply.pk in self.cancel_requested:
                    generation.stop(by_user=True)
                self.generations[reply.pk] = generation
                self.tasks[reply.pk] = turn_task
                self.turn_generations[turn_task] = generation
                try:
                    if reply.pk not in joined:  # a follow-up, streaming for this worker already
                        joined.append(reply.pk)
                        try:
                            await events.join_generation(reply.pk, channel_name)
                        except asyncio.CancelledError:
                            # Not through `stop` (the turn's first reply is done): the
                            # follow-up saves itself stopped, then the turn ends.
                            generation.stop(by_user=False)
                    await generation.run()
                except asyncio.CancelledError:
                    if generation.next_reply is None:
                        raise
                    # Stopped as its tool round was saved: the follow-up, made streaming for
                    # this worker, ends the same way before it streams (then this re-raises).
                    stopped_reply = generation
                finally:
                    self.generations.pop(reply.pk, None)
                    self.cancel_requested.discard(reply.pk)
                    if generation.left_for_hand_back:
                        self.left_for_hand_back.add(reply.pk)
                reply = generation.next_reply
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("generation task for message %s failed", message_id)
        finally:
            for reply_id in [message_id, *joined]:
                self.tasks.pop(reply_id, None)
            self.turn_generations.pop(turn_task, None)
            self.cancel_requested.discard(message_id)
            self.release()
            for joined_id in joined:
                if self.accepting:
                    self._background(events.leave_generation(joined_id, channel_name))
                else:
                    # Stopping: the reply may be handed back, and must hear a Stop until its
                    # hand-back has committed (from then on the Stop's view cancels it queued).
                    self.leave_after_shutdown.append((joined_id, channel_name))

    def cancel(self, message_id: int, *, by_user: bool, hand_back: bool = False) -> bool:
        stopped_while_stopping = by_user and not self.accepting
        if stopped_while_stopping:
            self.stops_while_stopping.add(message_id)  # in case the reply is handed back
        task = self.tasks.get(message_id)
        if task is None:
            if stopped_while_stopping:
                # Its turn ended in the shutdown: handed back already, it is queued.
                self._background(self._stop_if_queued(message_id))
            return False
        generation = self.generations.get(message_id) or self.turn_generations.get(task)
        if generation is None and by_user:
            # Claimed (or being claimed) but not started: it stops as it starts.
            self.cancel_requested.add(message_id)
            return True
        if generation is not None:
            generation.stop(by_user=by_user, hand_back=hand_back)
        if generation is None or not generation.started:
            task.cancel()  # the turn waits between replies (joining the next one's group)
        return True

    def cancel_for_channel_event(self, message: dict[str, Any]) -> None:
        message_id = message.get("message_id")
        if isinstance(message_id, int):
            self.cancel(message_id, by_user=True)

    async def answer_snapshot(self, message: dict[str, Any]) -> None:
        message_id = message.get("message_id")
        generation = self.generations.get(message_id) if isinstance(message_id, int) else None
        if generation is None:
            return
        events.snapshot_requested(generation.reply.conversation_id)
        await events.snapshot_send(
            message["reply_channel"], generation.reply.pk, **generation.snapshot()
        )

    async def shutdown(self, *, grace: float) -> None:
        """Stop: wait up to `grace` seconds, then cancel what still runs. Each reply that has
        streamed something is saved `interrupted` with all its text; one that has not (it
        waited for the model's first token, or was still being claimed) goes back to the
        queue, for another worker now or this server's recovery when it starts again."""
        self.accepting = False
        tasks = set(self.tasks.values())
        if tasks and grace > 0:
            await asyncio.wait(tasks, timeout=grace)
        # Turns with no Generation yet are joining their reply's group or claiming it (a Stop
        # for one is remembered in `cancel_requested` until its turn ends). A claim cancelled
        # here still runs in the database's thread, which nothing can stop; the hand-back
        # below goes to the same thread (asgiref's one thread for thread-sensitive calls made
        # outside a request: the turns' and this drain's), so it comes after the claim.
        unstarted = [
            message_id
            for message_id, task in self.tasks.items()
            if message_id not in self.generations and task not in self.turn_generations
        ]
        self.stops_while_stopping.update(self.cancel_requested.intersection(unstarted))
        for message_id in list(self.tasks):
            self.cancel(message_id, by_user=False, hand_back=True)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._hand_back_unbegun([*unstarted, *self.left_for_hand_back])
        for message_id, channel_name in self.leave_after_shutdown:
            self._background(events.leave_generation(message_id, channel_name))
        self.leave_after_shutdown.clear()
        if self._keep:  # the leaves, and a Stop's cancel of a reply handed back
            await asyncio.wait(set(self._keep), timeout=BACKGROUND_SECONDS)

    async def _hand_back_unbegun(self, message_ids: list[int]) -> None:
        """Put these replies, claimed (or about to be) and not begun, back in the queue and
        offer them on the shared channel; those a user stopped meanwhile end cancelled. While
        the database is away this waits for it for HAND_BACK_DATABASE_SECONDS (the final saves
        before it may have waited CHAT_DATABASE_OUTAGE_SECONDS); past that, recovery ends them
        interrupted once their leases lapse, with nothing of theirs lost."""
        if not message_ids:
            return
        try:
            pending, cancelled = await outages.retried_while_database_away(
                lambda: services.replies_hand_back(
                    worker_id=self.worker_id,
                    message_ids=message_ids,
                    stopped_ids=list(self.stops_while_stopping),
                ),
                within=HAND_BACK_DATABASE_SECONDS,
            )
            for reply in cancelled:
                await events.message_finished(reply.conversation_id, reply.pk)
            for message_id in pending:
                if message_id in self.stops_while_stopping:  # stopped as it went back
                    await self._stop_if_queued(message_id)
                    continue
                await events.request_generation_async(message_id)
        except Exception:  # recovery offers them later, or marks them interrupted
            logger.exception("handing back %d replies failed", len(message_ids))
            return
        if pending:
            logger.info("handed back %d replies that had not started", len(pending))

    async def _stop_if_queued(self, message_id: int) -> None:
        """A Stop that came once the reply's turn had ended in the shutdown: the reply is
        cancelled if it is still queued (handed back, and no worker has taken it)."""
        try:
            reply = await services.reply_cancel_queued(message_id=message_id)
            if reply is not None:
                await events.message_finished(reply.conversation_id, reply.pk)
        except Exception:
            logger.exception("could not stop message %s", message_id)
