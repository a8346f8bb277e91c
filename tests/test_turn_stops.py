"""A turn stopped during its tool round (chat.streaming.consumer.GenerationRunner and
chat.streaming.generation.Generation): by Stop, by the server's shutdown or by a lost lease,
while the tool runs, while the round is being saved, or while the turn joins its follow-up's
group. The turn ends there, each reply saved as stopped (unless another worker has it), and
nothing is left streaming or asked of the model again.

In process: a real runner and its generations, the real database and the fake upstream on
loopback; the tool waits for the test, and the round's save and the group join can be held."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from chat import events, services, tools
from chat.models import Message
from chat.streaming.consumer import GenerationRunner
from chat.streaming.upstream import close_http_clients
from tests.e2e import scenarios
from tests.live import wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("sent_to_worker"),
    pytest.mark.timeout(60),
]

STOPPED = {
    "user": ("cancelled", ""),
    "server": ("interrupted", "The server stopped while replying."),
}


class SlowLookup:
    """The `slow_lookup` tool of scenarios.slow_tool_plan, which runs until the test lets it
    end."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.may_end = threading.Event()
        self.returned = threading.Event()

    def __call__(self) -> str:
        self.started.set()
        self.may_end.wait(60)
        self.returned.set()
        return "found"


@pytest.fixture
async def lookup(monkeypatch, settings, fake_upstream):
    settings.CHAT_DEMO_MODE = False
    settings.OPENAI_BASE_URL = fake_upstream.base_url
    settings.CHAT_TOOLS_ENABLED = True
    settings.CHAT_GENERATE_TITLES = False
    settings.CHAT_CHECKPOINT_SECONDS = 0.05
    scenarios.slow_tool_plan(fake_upstream, calls=1)
    tool = SlowLookup()
    # Longer than a turn may take to end: a tool given up on at its timeout is not a stop.
    monkeypatch.setattr(tools, "TOOL_TIMEOUT", 60.0)
    schema = {"type": "object", "properties": {}, "required": []}
    monkeypatch.setitem(
        tools.REGISTRY, "slow_lookup", tools.Tool("slow_lookup", "Looks it up.", schema, tool)
    )
    yield tool
    tool.may_end.set()
    await close_http_clients()


async def start_turn(user) -> tuple[GenerationRunner, Message, asyncio.Task[None]]:
    conversation = await sync_to_async(services.conversation_create)(owner=user)
    _, reply = await sync_to_async(services.message_submit)(
        conversation=conversation, content="look it up"
    )
    runner = GenerationRunner()
    await runner.reserve()
    runner.start(reply.pk, await get_channel_layer().new_channel())
    return runner, reply, runner.tasks[reply.pk]


async def ended(turn: asyncio.Task[None]) -> None:
    """The turn's task ends, cancelled (as a stopped turn does, for shutdown's bookkeeping)."""
    await asyncio.wait({turn}, timeout=10)
    assert turn.cancelled()


async def offered() -> list[int]:
    """The replies offered on the shared channel since the last call (on Redis, the channel
    outlives a test: a test that reads it calls this first)."""
    layer = get_channel_layer()
    found = []
    while True:
        try:
            message = await asyncio.wait_for(layer.receive(settings.CHAT_STREAM_CHANNEL), 0.3)
        except TimeoutError:
            return found
        assert message["type"] == "generate"
        found.append(message["message_id"])


async def rows(reply: Message) -> list[tuple[str, str, str, str]]:
    return [
        (m.role, m.status, m.content, m.error)
        async for m in Message.objects.filter(conversation_id=reply.conversation_id).order_by("id")
    ]


class Held:
    """A call held where it starts until `release()`; `reached` is set when one arrives."""

    def __init__(self) -> None:
        self.reached, self._may_go = asyncio.Event(), asyncio.Event()

    async def wait_reached(self) -> None:
        await asyncio.wait_for(self.reached.wait(), 10)

    async def hold(self) -> None:
        self.reached.set()
        await self._may_go.wait()

    def release(self) -> None:
        self._may_go.set()


def hold_round_save(monkeypatch) -> Held:
    """The save of the tool round, held."""
    held, save_round = Held(), services.reply_finish_with_tool_round

    async def saving(**kwargs):
        await held.hold()
        return await save_round(**kwargs)

    monkeypatch.setattr(services, "reply_finish_with_tool_round", saving)
    return held


def hold_follow_up_join(monkeypatch, first: Message) -> Held:
    """The turn's join of a follow-up's generation group (not of `first`'s), held."""
    held, join = Held(), events.join_generation

    async def joining(message_id, channel_name):
        if message_id != first.pk:
            await held.hold()
        await join(message_id, channel_name)

    monkeypatch.setattr(events, "join_generation", joining)
    return held


@pytest.mark.parametrize("by", ["user", "server"])
async def test_stopped_while_the_tool_runs_the_turn_ends_there(user, lookup, fake_upstream, by):
    """The tool is still running when the turn has ended: the reply is saved stopped with its
    text and its call, unanswered."""
    runner, reply, turn = await start_turn(user)
    await asyncio.to_thread(lookup.started.wait, 10)

    assert runner.cancel(reply.pk, by_user=by == "user")
    await ended(turn)

    assert not lookup.returned.is_set()  # the tool still runs
    status, error = STOPPED[by]
    assert await rows(reply) == [
        ("user", "complete", "look it up", ""),
        ("assistant", status, "Looking it up.", error),
    ]
    saved = await Message.objects.aget(pk=reply.pk)
    assert [call["name"] for call in saved.tool_calls] == ["slow_lookup"]
    assert saved.lease_expires is None
    assert len(fake_upstream.requests) == 1


@pytest.mark.parametrize("by", ["user", "server"])
async def test_stopped_while_the_round_is_saved_its_follow_up_ends_unstarted(
    user, lookup, fake_upstream, monkeypatch, by
):
    """The round was saved as the stop came: the follow-up it made, streaming for this worker,
    is saved stopped too, at once, not left to recovery once its lease lapses; the model is not
    asked for it."""
    lookup.may_end.set()
    save = hold_round_save(monkeypatch)
    runner, reply, turn = await start_turn(user)
    await save.wait_reached()

    assert runner.cancel(reply.pk, by_user=by == "user")
    save.release()
    await ended(turn)

    status, error = STOPPED[by]
    assert await rows(reply) == [
        ("user", "complete", "look it up", ""),
        ("assistant", "complete", "Looking it up.", ""),
        ("tool", "complete", '{"result": "found"}', ""),
        ("assistant", status, "", error),
    ]
    follow_up = await Message.objects.order_by("-id").afirst()
    assert follow_up is not None and follow_up.lease_expires is None
    assert len(fake_upstream.requests) == 1
    assert runner.tasks == {} and runner.generations == {}


async def test_a_lease_lost_while_the_tool_runs_ends_the_turn_and_saves_nothing(
    user, lookup, fake_upstream
):
    """The heartbeat finds the reply taken by another worker (recovery, after this one was
    thought dead): it stops the turn, tool and all, and writes nothing over the other's."""
    runner, reply, turn = await start_turn(user)
    await asyncio.to_thread(lookup.started.wait, 10)

    async def checkpointed() -> bool:
        return (await Message.objects.aget(pk=reply.pk)).content == "Looking it up."

    await wait_for(checkpointed, timeout=10, interval=0.01)
    await Message.objects.filter(pk=reply.pk).aupdate(lease_owner="worker-2")
    await ended(turn)

    assert not lookup.returned.is_set()
    assert await rows(reply) == [
        ("user", "complete", "look it up", ""),
        ("assistant", "streaming", "Looking it up.", ""),
    ]
    assert len(fake_upstream.requests) == 1


@pytest.mark.parametrize("stop_first", [False, True], ids=["shutdown", "stop-then-shutdown"])
async def test_shutdown_as_the_turn_joins_its_follow_up_ends_the_follow_up_unstarted(
    user, lookup, fake_upstream, monkeypatch, stop_first
):
    """Shutdown cancels every turn's task; the turn's first reply is done, so the cancel comes
    as the task itself, not through a reply's `stop`, while it joins the follow-up's group.
    The follow-up, unstarted, goes back to the queue for another worker to answer from the
    tool's result (tests/test_shutdown_hand_back.py); a Stop that came before stays a Stop."""
    await offered()
    lookup.may_end.set()
    save = hold_round_save(monkeypatch)
    runner, reply, turn = await start_turn(user)
    join = hold_follow_up_join(monkeypatch, reply)
    await save.wait_reached()
    if stop_first:
        assert runner.cancel(reply.pk, by_user=True)
    save.release()
    await join.wait_reached()
    # The join never ends by itself: shutdown must not wait for it.
    await asyncio.wait_for(runner.shutdown(grace=0), 10)
    await ended(turn)

    status, error = STOPPED["user"] if stop_first else ("pending", "")
    assert (await rows(reply))[1:] == [
        ("assistant", "complete", "Looking it up.", ""),
        ("tool", "complete", '{"result": "found"}', ""),
        ("assistant", status, "", error),
    ]
    follow_up = await Message.objects.order_by("-id").afirst()
    assert follow_up is not None and follow_up.lease_expires is None
    assert await offered() == ([] if stop_first else [follow_up.pk])
    assert len(fake_upstream.requests) == 1


async def test_shutdown_as_the_round_is_saved_hands_its_follow_up_back(
    user, lookup, fake_upstream, monkeypatch
):
    """The shutdown's cancel comes while the round is saved: the save completes, making the
    follow-up streaming for this worker after the shutdown began. It goes back to the queue
    too (not left streaming until its lease lapses), to be answered from the tool's result."""
    await offered()
    lookup.may_end.set()
    save = hold_round_save(monkeypatch)
    runner, reply, turn = await start_turn(user)
    await save.wait_reached()

    shutdown = asyncio.create_task(runner.shutdown(grace=0))
    await asyncio.sleep(0.05)  # the turn's cancel is in
    save.release()
    await asyncio.wait_for(shutdown, 10)
    await ended(turn)

    assert (await rows(reply))[1:] == [
        ("assistant", "complete", "Looking it up.", ""),
        ("tool", "complete", '{"result": "found"}', ""),
        ("assistant", "pending", "", ""),
    ]
    follow_up = await Message.objects.order_by("-id").afirst()
    assert follow_up is not None and (follow_up.lease_owner, follow_up.lease_expires) == ("", None)
    assert await offered() == [follow_up.pk]
    assert len(fake_upstream.requests) == 1


def test_stop_for_a_reply_done_goes_to_its_turn_only_if_it_ended_in_a_tool_round(user, monkeypatch):
    """Sent for a reply that ended in a tool round, Stop goes to that reply's group (its turn's
    worker stops the turn where it is, if it still runs); for a reply done otherwise it goes
    nowhere; it never names a later reply, which a later turn (a Retry, say) may be making."""
    cancels: list[int] = []
    monkeypatch.setattr(events, "request_cancel", cancels.append)
    conversation = services.conversation_create(owner=user)

    def add(parent, role, status="complete", **fields):
        return Message.objects.create(
            conversation=conversation, parent=parent, role=role, status=status, **fields
        )

    calling = add(add(None, "user", content="look it up"), "assistant", finish_reason="tool_calls")
    follow_up = add(add(calling, "tool", content="found"), "assistant", status="streaming")
    services.reply_stop(reply=calling)
    assert cancels == [calling.pk]

    Message.objects.filter(pk=follow_up.pk).update(status="complete", finish_reason="stop")
    services.reply_stop(reply=Message.objects.get(pk=follow_up.pk))
    assert cancels == [calling.pk]
    services.reply_stop(reply=follow_up)  # as the view found it: still streaming
    assert cancels == [calling.pk, follow_up.pk]


async def test_stop_named_for_the_reply_whose_round_just_ended_stops_the_turn_where_it_is(
    user, lookup, fake_upstream, monkeypatch
):
    """The Stop reaches the worker by the group of the reply the tab named, done by now, while
    the turn joins its follow-up's: the follow-up, where the turn is, ends stopped."""
    lookup.may_end.set()
    runner, reply, turn = await start_turn(user)
    join = hold_follow_up_join(monkeypatch, reply)
    await join.wait_reached()
    runner.cancel_for_channel_event({"type": "generation.cancel", "message_id": reply.pk})
    join.release()
    await ended(turn)

    assert (await rows(reply))[1:] == [
        ("assistant", "complete", "Looking it up.", ""),
        ("tool", "complete", '{"result": "found"}', ""),
        ("assistant", "cancelled", "", ""),
    ]
    assert len(fake_upstream.requests) == 1
    assert runner.tasks == {} and runner.turn_generations == {}


@pytest.mark.parametrize("save", ["reply_finish", "reply_finish_with_tool_round"])
async def test_a_final_save_whose_commit_answer_was_lost_is_taken_as_made(
    user, lookup, fake_upstream, monkeypatch, save
):
    """The save committed, then the connection dropped with its answer: the retry found the
    reply no longer streaming and took it as not saved. A tool round's new reply then waited
    for no one (streaming, empty, until recovery marked it interrupted); a plain reply's tabs
    were not sent its end, and no title was asked."""
    from django.db import OperationalError

    from chat import events, outages

    lookup.may_end.set()
    if save == "reply_finish":  # the model answers at once, without a tool
        fake_upstream.plan = fake_upstream.default_plan
    real = getattr(services, save)
    calls = []

    async def commit_then_lose_the_answer(**kwargs):
        calls.append(1)
        result = await real(**kwargs)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return result

    monkeypatch.setattr(services, save, commit_then_lose_the_answer)
    finished = []
    message_finished = events.message_finished

    async def recording(conversation_id, message_id, final=None):
        finished.append((message_id, final))
        await message_finished(conversation_id, message_id, final)

    monkeypatch.setattr(events, "message_finished", recording)
    try:
        runner, reply, turn = await start_turn(user)
        await asyncio.wait_for(asyncio.shield(turn), 20)
    finally:
        outages.database.came_back()
    found = await rows(reply)
    assert len(calls) == 2
    if save == "reply_finish":
        assert found[-1] == ("assistant", "complete", "Hello, world!", "")
    else:
        assert [role for role, *_ in found] == ["user", "assistant", "tool", "assistant"]
        assert found[-1] == ("assistant", "complete", "Found it.", "")
        assert len(fake_upstream.requests) == 2
    assert finished[0][0] == reply.pk and finished[0][1] is not None  # its end, not all of it


@pytest.mark.django_db(transaction=True)
async def test_a_reply_recovery_took_is_not_taken_for_the_workers_own_save(user, settings):
    """Recovery keeps the lease's owner and may save the same text: the retry's check took its
    `interrupted` for the worker's own save, and the tabs were sent an end (thinking and all)
    that the database did not have."""
    from django.utils import timezone

    conversation = await sync_to_async(services.conversation_create)(owner=user)
    _, reply = await sync_to_async(services.message_submit)(conversation=conversation, content="q")
    await Message.objects.filter(pk=reply.pk).aupdate(
        status="interrupted",
        lease_owner="w1",
        lease_expires=None,
        reasoning="thinking so far",
        error=services.WORKER_DIED,
        completed=timezone.now(),
    )
    fields = {
        "status": "interrupted",
        "content": "",
        "reasoning": "thinking so far, and more",
        "error": "The connection to the model ended before the reply was complete.",
        "completed": timezone.now(),
    }
    went = services.reply_finish_went_through
    assert not await went(message_id=reply.pk, worker_id="w1", fields=fields)
    assert not await services.reply_finish(message_id=reply.pk, worker_id="w1", fields=fields)
    # The worker's own save, its answer lost, is told by its end time.
    await Message.objects.filter(pk=reply.pk).aupdate(completed=fields["completed"])
    assert await went(message_id=reply.pk, worker_id="w1", fields=fields)
