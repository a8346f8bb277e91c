"""The process's heartbeat (chat.streaming.generation.Heartbeats): each interval it saves the
partial text of every reply this process streams and renews its lease, stops a reply whose
lease another worker took, and keeps every text for the next beat while the database is away.

Real generations of real replies, but no stream: each is given its text as its stream's
completion would hold it."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError

from chat import outages, services
from chat.models import Message
from chat.streaming.completion import Completion
from chat.streaming.generation import Generation, Heartbeats
from chat.streaming.sse import ServerSentEvent
from tests.live import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("sent_to_worker")]

WORKER = "worker-1"


@pytest.fixture(autouse=True)
def quick_beats(settings):
    settings.CHAT_CHECKPOINT_SECONDS = 0.05
    yield
    outages.database.came_back()


def claimed_reply(user) -> Message:
    conversation = services.conversation_create(owner=user)
    _, reply = services.message_submit(conversation=conversation, content="q")
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.STREAMING, lease_owner=WORKER)
    reply.refresh_from_db()
    return reply


async def streaming(user) -> Generation:
    """A generation of a claimed reply, running (its task waits to be cancelled)."""
    generation = Generation(reply=await sync_to_async(claimed_reply)(user), worker_id=WORKER)
    generation.stream = SimpleNamespace(completion=Completion())  # type: ignore[assignment]
    generation._task = asyncio.create_task(asyncio.sleep(60))
    return generation


async def beating(heartbeats: Heartbeats, user, *texts: str) -> list[Generation]:
    """Generations streaming here, one per text, each with its text so far."""
    generations = [await streaming(user) for _ in texts]
    for generation, text in zip(generations, texts, strict=True):  # all by the same beat
        heartbeats.add(generation)
        say(generation, text)
    return generations


def end(heartbeats: Heartbeats, *generations: Generation) -> None:
    """As each ends by itself: off the heartbeat, its task done; never stopped by it."""
    for generation in generations:
        heartbeats.discard(generation)
        assert not stopped(generation)
        generation._task.cancel()  # type: ignore[union-attr]


def say(generation: Generation, text: str) -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": text}}]}
    generation.completion.feed(ServerSentEvent(json.dumps(chunk)))


async def saved_text(generation: Generation) -> str:
    return (await Message.objects.aget(pk=generation.reply.pk)).content


async def saved(generation: Generation) -> None:
    async def holds() -> bool:
        return await saved_text(generation) == generation.text

    await wait_for(holds, timeout=5, interval=0.01)


def stopped(generation: Generation) -> bool:
    assert generation._task is not None
    return generation._task.cancelled() or generation._task.cancelling() > 0


async def until_stopped(generation: Generation) -> None:
    async def holds() -> bool:
        return stopped(generation)

    await wait_for(holds, timeout=5, interval=0.01)


async def test_each_reply_streaming_here_is_saved_at_every_beat(user):
    heartbeats = Heartbeats.here()
    first, second = await beating(heartbeats, user, "one", "two")
    await saved(first)
    await saved(second)
    say(first, " and more")
    await saved(first)
    end(heartbeats, first, second)


async def test_a_lost_lease_stops_that_reply_alone_and_the_beat_goes_on_for_new_ones(user):
    heartbeats = Heartbeats.here()
    kept, taken = await beating(heartbeats, user, "kept", "taken")
    await saved(taken)
    await Message.objects.filter(pk=taken.reply.pk).aupdate(lease_owner="worker-2")
    say(kept, " on")
    say(taken, " later")

    await saved(kept)
    await until_stopped(taken)
    assert taken not in heartbeats and await saved_text(taken) == "taken"
    assert not stopped(kept)

    # The last reply here losing its lease ends the beat; the next reply starts it again.
    await Message.objects.filter(pk=kept.reply.pk).aupdate(lease_owner="worker-2")
    await until_stopped(kept)
    [new] = await beating(heartbeats, user, "new")
    await saved(new)
    end(heartbeats, new)


async def test_the_database_away_keeps_every_text_for_the_next_beat(user, monkeypatch):
    heartbeats = Heartbeats.here()
    calls: list[int] = []
    real = services.replies_checkpoint

    async def away_once(checkpoints: list[services.Checkpoint]) -> list[bool | Exception]:
        calls.append(len(checkpoints))
        if len(calls) == 1:
            raise OperationalError("connection refused")
        return await real(checkpoints)

    monkeypatch.setattr(services, "replies_checkpoint", away_once)
    generations = await beating(heartbeats, user, "text 0", "text 1", "text 2")
    for generation in generations:
        await saved(generation)

    assert calls[0] == 3 and len(calls) >= 2
    end(heartbeats, *generations)
