"""A turn stopped during its tool round (chat.streaming.consumer.GenerationRunner and
chat.streaming.generation.Generation): by Stop, or by the server (shutdown, a lost lease,
Redis away), while the tool runs or while the round is being saved. The turn ends there,
each reply saved as stopped, and nothing is left streaming or asked of the model again.

In process: a real runner and its generations, the real database and the fake upstream on
loopback; the tool waits for the test, and the round's save can be held."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from chat import services, tools
from chat.models import Message
from chat.streaming.consumer import GenerationRunner
from chat.streaming.upstream import close_http_clients
from tests.e2e import scenarios

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

    def __call__(self) -> str:
        self.started.set()
        self.may_end.wait(20)
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
    await asyncio.wait({turn}, timeout=20)
    assert turn.done()


async def rows(reply: Message) -> list[tuple[str, str, str, str]]:
    return [
        (m.role, m.status, m.content, m.error)
        async for m in Message.objects.filter(conversation_id=reply.conversation_id).order_by("id")
    ]


@pytest.mark.parametrize("by", ["user", "server"])
async def test_stopped_while_the_tool_runs_the_turn_ends_there(user, lookup, fake_upstream, by):
    """The tool is still running when the turn has ended: the reply is saved stopped with its
    text and its call, unanswered."""
    runner, reply, turn = await start_turn(user)
    await asyncio.to_thread(lookup.started.wait, 10)

    assert runner.cancel(reply.pk, by_user=by == "user")
    await ended(turn)

    assert not lookup.may_end.is_set()  # the tool still runs
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
    saving, may_save = asyncio.Event(), asyncio.Event()
    save_round = services.reply_finish_with_tool_round

    async def held(**kwargs):
        saving.set()
        await may_save.wait()
        return await save_round(**kwargs)

    monkeypatch.setattr(services, "reply_finish_with_tool_round", held)
    runner, reply, turn = await start_turn(user)
    await asyncio.wait_for(saving.wait(), 10)

    assert runner.cancel(reply.pk, by_user=by == "user")
    may_save.set()
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
