"""The streaming worker's application instances (chat.streaming.worker.StreamWorker): one
that ends is forgotten at once, its error logged, and the next message starts a new one."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer

from chat import outages
from chat.streaming import worker as worker_module
from chat.streaming.consumer import GenerationRunner
from chat.streaming.worker import StreamWorker
from tests.live import wait_for

SCOPE = {"type": "channel", "channel": "chat-stream"}


class FailsOnFirst:
    """An application whose first instance fails at its first message."""

    def __init__(self) -> None:
        self.instances = 0
        self.handled: list[tuple[int, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.instances += 1
        instance = self.instances
        while True:
            message = await receive()
            self.handled.append((instance, message["n"]))
            if instance == 1:
                raise RuntimeError("the first instance broke")


async def _until(predicate: Any) -> None:
    async def holds() -> bool:
        return bool(predicate())

    await wait_for(holds, timeout=5, interval=0.001)


async def test_an_instance_that_ended_is_replaced_at_the_next_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not a poll's time later (asgiref's checker looked ten times a second): a message sent
    in between went into the ended instance's queue, and nobody read it."""
    application = FailsOnFirst()
    worker = StreamWorker(
        application=application, channels=["chat-stream"], channel_layer=InMemoryChannelLayer()
    )
    checker = asyncio.create_task(worker.application_checker())  # as `arun` runs it
    await worker.get_or_create_application_instance("chat-stream", SCOPE).put({"n": 1})
    first = worker.application_instances["chat-stream"]["future"]
    await _until(first.done)
    await asyncio.sleep(0)  # its done callbacks run
    with caplog.at_level(logging.ERROR):
        await worker.get_or_create_application_instance("chat-stream", SCOPE).put({"n": 2})
        await _until(lambda: len(application.handled) == 2)
    assert application.handled == [(1, 1), (2, 2)]
    assert "the first instance broke" in caplog.text
    checker.cancel()


async def test_a_running_instance_takes_every_message() -> None:
    application = FailsOnFirst()
    application.instances = 1  # its instances never fail
    worker = StreamWorker(
        application=application, channels=["chat-stream"], channel_layer=InMemoryChannelLayer()
    )
    for n in range(3):
        await worker.get_or_create_application_instance("chat-stream", SCOPE).put({"n": n})
    await _until(lambda: len(application.handled) == 3)
    assert application.handled == [(2, 0), (2, 1), (2, 2)]
    assert len(worker.application_instances) == 1


async def test_messages_sent_while_an_instance_ends_go_to_the_next() -> None:
    """The second message arrives before the first instance has failed on the first: it
    waits in the ended instance's queue, and a new instance takes it."""
    application = FailsOnFirst()
    worker = StreamWorker(
        application=application, channels=["chat-stream"], channel_layer=InMemoryChannelLayer()
    )
    for n in (1, 2, 3):
        await worker.get_or_create_application_instance("chat-stream", SCOPE).put({"n": n})
    await _until(lambda: len(application.handled) == 3)
    assert application.handled == [(1, 1), (2, 2), (2, 3)]


async def test_a_cancelled_instance_frees_the_slots_of_the_replies_it_never_read() -> None:
    """The listener reserves a generation slot for each `generate` it takes off the channel;
    one the instance never read must not hold its slot for good."""
    started = asyncio.Event()

    async def never_reads(scope: dict[str, Any], receive: Any, send: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    runner = GenerationRunner.current()
    reserved = runner.reserved
    worker = StreamWorker(
        application=never_reads, channels=["chat-stream"], channel_layer=InMemoryChannelLayer()
    )
    queue = worker.get_or_create_application_instance("chat-stream", SCOPE)
    await started.wait()
    await runner.reserve()
    await queue.put({"type": "generate", "message_id": 1})
    worker.application_instances["chat-stream"]["future"].cancel()
    await _until(lambda: runner.reserved == reserved)
    assert worker.application_instances == {}


class Breaks(InMemoryChannelLayer):
    """A channel layer whose first `times` receives fail with an error that is not an
    outage."""

    def __init__(self, times: float) -> None:
        super().__init__()
        self.times = times
        self.receives = 0

    async def receive(self, channel: str) -> dict[str, Any]:
        self.receives += 1
        if self.receives <= self.times:
            raise RuntimeError("unable to perform operation; the handler is closed")
        return await super().receive(channel)


async def test_the_listener_lives_on_after_a_receive_fails_otherwise_than_by_an_outage(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """It re-raised, which ended the worker's process."""
    monkeypatch.setattr(outages, "FIRST_RETRY_DELAY", 0.01)
    application = FailsOnFirst()
    application.instances = 1  # its instances never fail
    layer = Breaks(times=1)
    worker = StreamWorker(application=application, channels=["chat-stream"], channel_layer=layer)
    runner = GenerationRunner.current()
    reserved = runner.reserved
    with caplog.at_level(logging.ERROR):
        listening = asyncio.create_task(worker.listener("chat-stream"))
        await layer.send("chat-stream", {"type": "note", "n": 1})
        await _until(lambda: application.handled == [(2, 1)])
    assert not listening.done()
    assert "receiving from chat-stream failed; trying again" in caplog.text
    listening.cancel()
    await asyncio.gather(listening, return_exceptions=True)
    assert runner.reserved == reserved  # the failed receive's slot was given back


async def test_a_receive_that_keeps_failing_ends_the_listener_after_a_while(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A fault no retry mends (say, a channel layer misconfigured) ends the worker for its
    supervisor to see, after one traceback and a line a retry."""
    monkeypatch.setattr(outages, "FIRST_RETRY_DELAY", 0.01)
    monkeypatch.setattr(outages, "LAST_RETRY_DELAY", 0.01)
    monkeypatch.setattr(worker_module, "LISTENER_GIVE_UP_SECONDS", 0.2)
    layer = Breaks(times=math.inf)
    worker = StreamWorker(application=FailsOnFirst(), channels=["chat-stream"], channel_layer=layer)
    with caplog.at_level(logging.WARNING), pytest.raises(RuntimeError, match="handler is closed"):
        await asyncio.wait_for(worker.listener("chat-stream"), 5)
    assert layer.receives > 3
    assert caplog.text.count("Traceback") == 1
    assert caplog.text.count("failed again") == layer.receives - 2


@pytest.mark.django_db(transaction=True)
async def test_a_worker_whose_listeners_end_by_themselves_exits_as_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not with 0 and nothing logged, as a worker that was asked to stop does."""
    worker = StreamWorker(
        application=FailsOnFirst(), channels=["chat-stream"], channel_layer=InMemoryChannelLayer()
    )

    async def returns() -> None:
        return None

    worker.arun = returns  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exited:
        await worker.serve_until_signalled()
    assert exited.value.code == 1
    assert "worker failed" in caplog.text and "the listeners returned" in caplog.text
