"""A server that stops hands back the replies it has not begun (GenerationRunner.shutdown): a
reply still being claimed, or waiting for the model's first token, goes back to the queue and
is offered on the shared channel, for another worker now or for this server's recovery when it
starts again. A reply that has streamed something is saved `interrupted` with it, and a Stop
stays a Stop.

In process: a real runner and its generations, the real database and the fake upstream on
loopback, which holds its answer until the test lets it go on."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

import chat.events as chat_events
from chat import services
from chat.models import Message
from chat.streaming.consumer import GenerationRunner
from chat.streaming.upstream import close_http_clients
from tests.fake_upstream import FakeRequest, reply_events
from tests.live import wait_for
from tests.test_turn_stops import ended, offered, start_turn

REAL_REQUEST_CANCEL = chat_events.request_cancel  # before `sent_to_worker` replaces it

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("sent_to_worker"),
    pytest.mark.timeout(60),
]

TOKENS = ["Hello", ",", " world", "!"]


class HeldAnswer:
    """The upstream's answer to the first request, held before its piece `at` (0: the role's
    chunk, then one piece a token) until `go`."""

    def __init__(self, fake_upstream, at: int) -> None:
        self.fake_upstream = fake_upstream
        self.at = at
        self._go = asyncio.Event()  # on the fake's loop
        fake_upstream.plan = self.plan

    async def plan(self, request: FakeRequest):
        async def before_piece(index: int) -> None:
            if request.index == 0 and index == self.at:
                await self._go.wait()

        return await request.stream(reply_events(TOKENS), before_piece=before_piece)

    def go(self) -> None:
        self.fake_upstream.loop.call_soon_threadsafe(self._go.set)


@pytest.fixture
async def upstream(settings, fake_upstream):
    settings.CHAT_DEMO_MODE = False
    settings.OPENAI_BASE_URL = fake_upstream.base_url
    settings.CHAT_GENERATE_TITLES = False
    await offered()  # none left from an earlier test
    yield fake_upstream
    await close_http_clients()


def hold_claim(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """The claim, held in the database's thread: (reached, may_go)."""
    reached, may_go = threading.Event(), threading.Event()
    take = services._Claim.take

    def claiming(claim):
        reached.set()
        may_go.wait(10)
        return take(claim)

    monkeypatch.setattr(services._Claim, "take", claiming)
    return reached, may_go


def hold_hand_back(runner, monkeypatch) -> tuple[asyncio.Event, asyncio.Event]:
    """The shutdown's hand-back, held before its trip to the database: (reached, may_go)."""
    reached, may_go = asyncio.Event(), asyncio.Event()
    hand_back = runner._hand_back_unbegun

    async def handing_back(message_ids):
        reached.set()
        await may_go.wait()
        await hand_back(message_ids)

    monkeypatch.setattr(runner, "_hand_back_unbegun", handing_back)
    return reached, may_go


async def until(predicate) -> None:
    async def check() -> bool:
        return predicate()

    await wait_for(check, timeout=10, interval=0.01)


async def row(reply: Message) -> tuple[str, str, str, str, bool]:
    saved = await Message.objects.aget(pk=reply.pk)
    return saved.status, saved.content, saved.error, saved.lease_owner, saved.lease_expires is None


@pytest.mark.parametrize("at", [0, 1], ids=["before-the-response", "after-the-role-chunk"])
async def test_a_reply_waiting_for_its_first_token_goes_back_to_the_queue(user, upstream, at):
    """The model has been asked and has sent no text yet (nothing, or only the chunk that
    names the role): the reply is pending again with nothing of this worker's on it, offered
    to any worker, and the upstream connection is closed."""
    held = HeldAnswer(upstream, at=at)
    runner, reply, turn = await start_turn(user)
    await until(lambda: len(upstream.requests) == 1)
    if at:  # and the role's chunk read
        await until(lambda: runner.generations[reply.pk].completion.model == "fake-model")

    await asyncio.wait_for(runner.shutdown(grace=0), 10)
    await ended(turn)

    assert await row(reply) == ("pending", "", "", "", True)
    assert await offered() == [reply.pk]
    await until(lambda: upstream.requests[0].disconnected)
    assert runner.tasks == {} and runner.generations == {}
    held.go()


async def test_a_reply_that_has_streamed_text_is_saved_interrupted_with_it(user, upstream):
    held = HeldAnswer(upstream, at=3)  # after the role's chunk, "Hello" and ","
    runner, reply, turn = await start_turn(user)
    await until(
        lambda: reply.pk in runner.generations and runner.generations[reply.pk].text == "Hello,"
    )

    await asyncio.wait_for(runner.shutdown(grace=0), 10)
    await ended(turn)

    assert await row(reply) == (
        "interrupted",
        "Hello,",
        "The server stopped while replying.",
        runner.worker_id,
        True,
    )
    assert await offered() == []
    held.go()


async def test_a_stop_before_the_first_token_stays_a_stop(user, upstream):
    held = HeldAnswer(upstream, at=0)
    runner, reply, turn = await start_turn(user)
    await until(lambda: len(upstream.requests) == 1)
    # Stop's cancel, and the shutdown's before the reply has saved itself.
    assert runner.cancel(reply.pk, by_user=True)
    await asyncio.wait_for(runner.shutdown(grace=0), 10)
    await ended(turn)

    assert (await row(reply))[:3] == ("cancelled", "", "")
    assert await offered() == []
    held.go()


async def test_a_claim_the_shutdown_cut_short_is_handed_back(user, upstream, monkeypatch):
    """The shutdown cancels the turn while its claim runs in the database's thread, where it
    commits all the same, after the turn has ended. The reply must not stay streaming for a
    worker that is gone until its lease lapses (and then end interrupted): it is handed back
    (in the same thread, after the claim)."""
    reached, may_go = hold_claim(monkeypatch)
    runner, reply, turn = await start_turn(user)
    await asyncio.to_thread(reached.wait, 10)

    shutdown = asyncio.create_task(runner.shutdown(grace=0))
    await ended(turn)  # while the claim is still held in its thread
    may_go.set()
    await asyncio.wait_for(shutdown, 10)

    assert await row(reply) == ("pending", "", "", "", True)
    assert await offered() == [reply.pk]
    assert upstream.requests == []


async def test_a_reply_whose_turn_had_not_claimed_it_yet_is_offered_again(
    user, upstream, monkeypatch
):
    """Taken off the channel, and the shutdown came before the claim: still pending, and the
    `generate` this worker took is given back."""
    from chat import events

    reached, may_go = asyncio.Event(), asyncio.Event()
    join = events.join_generation

    async def joining(message_id, channel_name):
        reached.set()
        await may_go.wait()
        await join(message_id, channel_name)

    monkeypatch.setattr(events, "join_generation", joining)
    runner, reply, turn = await start_turn(user)
    await asyncio.wait_for(reached.wait(), 10)

    await asyncio.wait_for(runner.shutdown(grace=0), 10)
    await ended(turn)

    assert await row(reply) == ("pending", "", "", "", True)
    assert await offered() == [reply.pk]


async def test_a_stop_that_came_during_the_claim_is_not_lost_to_the_hand_back(
    user, upstream, monkeypatch
):
    """Stop while the claim runs is remembered for the reply's start; the shutdown comes
    first. The reply ends cancelled, not handed back for another worker to generate."""
    reached, may_go = hold_claim(monkeypatch)
    runner, reply, turn = await start_turn(user)
    await asyncio.to_thread(reached.wait, 10)
    assert runner.cancel(reply.pk, by_user=True)

    shutdown = asyncio.create_task(runner.shutdown(grace=0))
    await asyncio.sleep(0.05)
    may_go.set()
    await asyncio.wait_for(shutdown, 10)
    await ended(turn)

    assert (await row(reply))[:3] == ("cancelled", "", "")
    assert await offered() == []
    assert upstream.requests == []


async def test_a_stop_that_comes_as_the_reply_is_handed_back_is_not_lost(
    user, upstream, monkeypatch
):
    """The turn has ended, leaving its reply for the hand-back, when a Stop for it comes: it
    finds no turn to stop, but the reply ends cancelled rather than pending."""
    held = HeldAnswer(upstream, at=0)
    runner, reply, turn = await start_turn(user)
    await until(lambda: len(upstream.requests) == 1)
    reached, may_go = hold_hand_back(runner, monkeypatch)
    shutdown = asyncio.create_task(runner.shutdown(grace=0))
    await asyncio.wait_for(reached.wait(), 10)
    assert turn.done()
    assert not runner.cancel(reply.pk, by_user=True)  # no turn to stop any more
    may_go.set()
    await asyncio.wait_for(shutdown, 10)

    assert (await row(reply))[:3] == ("cancelled", "", "")
    assert await offered() == []
    held.go()


async def test_a_stop_that_comes_after_the_hand_back_cancels_the_queued_reply(user, upstream):
    """The worker still hears Stop for the reply's group as it goes: the reply, queued again
    and not taken yet, ends cancelled rather than generated by another worker."""
    held = HeldAnswer(upstream, at=0)
    runner, reply, turn = await start_turn(user)
    await until(lambda: len(upstream.requests) == 1)
    await asyncio.wait_for(runner.shutdown(grace=0), 10)
    assert await row(reply) == ("pending", "", "", "", True)

    assert not runner.cancel(reply.pk, by_user=True)  # no turn to stop: it is queued

    async def cancelled() -> bool:
        return (await row(reply))[0] == "cancelled"

    await wait_for(cancelled, timeout=10, interval=0.01)
    held.go()


@pytest.mark.parametrize("fails", ["claim", "claim-answer-lost", "claimed-reply", "history"])
async def test_a_turn_that_meets_the_database_away_a_moment_waits_and_streams_the_reply(
    user, upstream, monkeypatch, settings, fails
):
    """One statement of the claim failed (the update, the update's answer after it committed,
    or the read after it), or the history's read: the turn ended there. The reply stayed
    queued for no one for a minute, or under a lease nothing streamed, until recovery marked
    it interrupted, empty; or failed."""
    from django.db import OperationalError

    from chat import outages, selectors

    target, name = {
        "claim": (services._CLAIM, "execute"),
        "claim-answer-lost": (services._CLAIM, "execute"),
        "claimed-reply": (services._CLAIMED_REPLY, "instances"),
        "history": (selectors, "model_messages"),
    }[fails]
    real = getattr(target, name)
    calls = []

    def once_away(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            if fails == "claim-answer-lost":
                real(*args, **kwargs)  # committed, and then the connection dropped
            raise OperationalError("server closed the connection unexpectedly")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, once_away)
    returns = outages.database.returns
    try:
        runner, reply, turn = await start_turn(user)
        await asyncio.wait({turn}, timeout=20)
        await until(lambda: turn.done())
        # The outage was noted (on PostgreSQL the retry's new connection ends it at once).
        noted = outages.database.away or outages.database.returns > returns
    finally:
        outages.database.came_back()
    saved = await Message.objects.aget(pk=reply.pk)
    assert (saved.status, saved.content) == ("complete", "Hello, world!"), saved.error
    assert noted and len(calls) == (1 if fails == "claim-answer-lost" else 2)
    assert len(upstream.requests) == 1


async def test_a_stop_pressed_while_a_stopping_worker_hands_the_reply_back_stops_it(
    user, upstream, monkeypatch
):
    """The turn left the reply's group as it ended, before the shutdown handed the reply
    back: a Stop in between (the reply still streaming for this worker, so the view tells
    the group) reached no one, and another worker generated the reply in full."""
    monkeypatch.setattr(chat_events, "request_cancel", REAL_REQUEST_CANCEL)
    held = HeldAnswer(upstream, at=0)  # the model has not sent its first token
    layer = get_channel_layer()

    conversation = await sync_to_async(services.conversation_create)(owner=user)
    _, reply = await sync_to_async(services.message_submit)(conversation=conversation, content="q")
    runner = GenerationRunner()
    channel = await layer.new_channel()

    async def consumer() -> None:  # StreamingConsumer.generation_cancel, on the runner's channel
        while True:
            message = await layer.receive(channel)
            if message["type"] == "generation.cancel":
                runner.cancel_for_channel_event(message)

    reading = asyncio.create_task(consumer())
    await runner.reserve()
    runner.start(reply.pk, channel)
    turn = runner.tasks[reply.pk]
    await until(lambda: len(upstream.requests) == 1)

    # The hand-back's trip to the database (held here so the window is visible).
    reached, may_go = hold_hand_back(runner, monkeypatch)
    shutdown = asyncio.create_task(runner.shutdown(grace=0))
    await asyncio.wait_for(reached.wait(), 10)
    assert turn.done()
    await asyncio.sleep(0.1)  # the turn's background leave of the group has run
    assert (await row(reply))[0] == "streaming"  # what the Stop view sees

    # The user presses Stop (the view's service, as a request's thread runs it).
    fresh = await Message.objects.aget(pk=reply.pk)
    await sync_to_async(services.reply_stop)(reply=fresh)
    await asyncio.sleep(0.2)  # the cancel event, if anybody got it, is handled

    may_go.set()
    await asyncio.wait_for(shutdown, 10)
    reading.cancel()

    held.go()
    assert (await row(reply))[0] == "cancelled"
    assert await offered() == []  # no other worker is offered it
