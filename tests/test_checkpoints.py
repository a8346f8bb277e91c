"""A reply's checkpoints (chat.services.replies_checkpoint): only the worker that holds the
reply's lease saves its text or renews the lease, and only while it streams."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import IntegrityError, OperationalError
from django.utils import timezone

from chat import services
from chat.models import Message

# (sent_to_worker: the submitted reply waits for a worker that never comes; it is claimed here.)
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sent_to_worker")]

WORKER = "worker-1"


@pytest.fixture
def reply(user) -> Message:
    conversation = services.conversation_create(owner=user)
    _, reply = services.message_submit(conversation=conversation, content="q")
    async_to_sync(services.reply_claim)(message_id=reply.pk, worker_id=WORKER)
    return reply


def finish(reply: Message, worker: str = WORKER, **fields: object) -> bool:
    return async_to_sync(services.reply_finish)(
        message_id=reply.pk, worker_id=worker, fields=fields
    )


def checkpoint(reply: Message, worker: str = WORKER, **fields: str) -> bool:
    [outcome] = async_to_sync(services.replies_checkpoint)(
        [services.Checkpoint(reply.pk, worker, fields)]
    )
    assert isinstance(outcome, bool), outcome
    return outcome


@pytest.mark.parametrize(
    "fields",
    [
        {"content": "words so far", "reasoning": "thinking so far"},  # the generation's
        {"content": "words so far"},
        {},  # the lease alone
    ],
)
def test_the_owner_saves_the_text_and_renews_the_lease(reply: Message, fields: dict[str, str]):
    Message.objects.filter(pk=reply.pk).update(lease_expires=timezone.now())
    before = timezone.now()

    assert checkpoint(reply, **fields)

    saved = Message.objects.get(pk=reply.pk)
    assert saved.status == Message.Status.STREAMING
    assert saved.content == fields.get("content", "")
    assert saved.reasoning == fields.get("reasoning", "")
    assert saved.lease_owner == WORKER
    assert saved.lease_expires is not None and saved.lease_expires > before + timedelta(seconds=5)


@pytest.mark.parametrize("fields", [{"content": "late", "reasoning": "late"}, {}])
def test_another_worker_saves_nothing(reply: Message, fields: dict[str, str]):
    lease = Message.objects.get(pk=reply.pk).lease_expires

    assert not checkpoint(reply, worker="worker-2", **fields)

    saved = Message.objects.get(pk=reply.pk)
    assert (saved.content, saved.reasoning, saved.lease_expires) == ("", "", lease)


@pytest.mark.parametrize("fields", [{"content": "late", "reasoning": "late"}, {}])
def test_a_reply_no_longer_streaming_is_not_written_again(reply: Message, fields: dict[str, str]):
    Message.objects.filter(pk=reply.pk).update(
        status=Message.Status.INTERRUPTED, content="kept", lease_expires=None
    )

    assert not checkpoint(reply, **fields)

    saved = Message.objects.get(pk=reply.pk)
    assert (saved.status, saved.content, saved.lease_expires) == (
        Message.Status.INTERRUPTED,
        "kept",
        None,
    )


def claimed_reply(user, worker: str = WORKER) -> Message:
    conversation = services.conversation_create(owner=user)
    _, reply = services.message_submit(conversation=conversation, content="q")
    async_to_sync(services.reply_claim)(message_id=reply.pk, worker_id=worker)
    return reply


@pytest.mark.django_db(transaction=True)  # the heartbeat saves in autocommit
def test_replies_checkpointed_together_each_have_their_own_outcome(reply, user):
    """A process's heartbeat checkpoints all its replies in one call: a reply another worker
    owns is not written, and one whose value the database refuses fails alone, before and
    after the others are saved."""
    taken = claimed_reply(user, worker="worker-2")
    refused = claimed_reply(user)
    last = claimed_reply(user)
    outcomes = async_to_sync(services.replies_checkpoint)(
        [
            services.Checkpoint(reply.pk, WORKER, {"content": "one", "reasoning": ""}),
            services.Checkpoint(taken.pk, WORKER, {"content": "late", "reasoning": ""}),
            services.Checkpoint(refused.pk, WORKER, {"prompt_tokens": -1}),  # a check refuses
            services.Checkpoint(last.pk, WORKER, {}),  # the lease alone
        ]
    )

    assert outcomes[:2] == [True, False] and outcomes[3] is True
    assert isinstance(outcomes[2], IntegrityError)
    assert Message.objects.get(pk=reply.pk).content == "one"
    assert Message.objects.get(pk=taken.pk).content == ""
    assert Message.objects.get(pk=refused.pk).prompt_tokens is None


def test_the_database_away_fails_the_checkpoints_at_the_first(reply, user, monkeypatch):
    """Each statement would wait the pool's timeout: the first that finds the database away
    ends the call, and the heartbeat keeps every text for the next."""
    others = [claimed_reply(user), claimed_reply(user)]
    tried: list[int] = []

    def away(checkpoint: services.Checkpoint, lease_expires: object) -> bool:
        tried.append(checkpoint.message_id)
        raise OperationalError("connection refused")

    monkeypatch.setattr(services, "_checkpoint_one", away)
    with pytest.raises(OperationalError):
        async_to_sync(services.replies_checkpoint)(
            [services.Checkpoint(m.pk, WORKER, {}) for m in (reply, *others)]
        )
    assert tried == [reply.pk]


def test_a_nul_character_from_the_model_is_stored_as_the_page_shows_it(reply):
    """PostgreSQL refuses a NUL character in text and in JSON, and with it the whole row's
    save: a checkpoint, or a final save that would lose the reply's text."""
    assert checkpoint(reply, content="so\0 far", reasoning="thinking\0")
    reply.refresh_from_db()
    assert (reply.content, reply.reasoning) == ("so\ufffd far", "thinking\ufffd")
    assert finish(
        reply,
        status=Message.Status.COMPLETE,
        content="all\0 of it",
        error="a note\0",
        tool_calls=[{"id": "c\0", "name": "f", "arguments": '{"a": "\\u0000\0"}'}],
    )
    reply.refresh_from_db()
    assert (reply.status, reply.content, reply.error) == (
        "complete",
        "all\ufffd of it",
        "a note\ufffd",
    )
    assert reply.tool_calls == [
        {"id": "c\ufffd", "name": "f", "arguments": '{"a": "\\u0000\ufffd"}'}
    ]


@pytest.mark.django_db(transaction=True)  # the generation saves in autocommit, not in a test's
def test_a_final_save_the_database_refuses_keeps_the_replys_text(reply, caplog):
    """A value the database refuses (here a negative token count, which a check constraint
    refuses on every backend) no longer takes the reply's text with it, nor the other
    fields the database takes: how it finished (a reply cut at the length limit offers
    Continue by it), its other token count, its model."""
    assert checkpoint(reply, content="so far", reasoning="")
    assert finish(
        reply,
        status=Message.Status.COMPLETE,
        content="the whole reply",
        content_html="<p>the whole reply</p>",
        finish_reason="length",
        prompt_tokens=-1,
        completion_tokens=3,
        model="served-model",
    )
    reply.refresh_from_db()
    assert (reply.status, reply.content, reply.content_html) == (
        "complete",
        "the whole reply",
        "<p>the whole reply</p>",
    )
    assert reply.prompt_tokens is None  # what was refused is not saved
    assert (reply.finish_reason, reply.completion_tokens, reply.model) == (
        "length",
        3,
        "served-model",
    )
    assert reply.lease_expires is None and reply.completed is not None
    assert "the finished reply was refused" in caplog.text
    assert "its prompt_tokens was refused" in caplog.text
    assert "the whole reply" not in caplog.text  # the log names what was refused, not the text
    # Once saved, it is saved once: a second finish finds it no longer streaming.
    assert not finish(reply, content="again")


@pytest.mark.django_db(transaction=True)  # the generation saves in autocommit
def test_a_reply_whose_worker_was_lost_while_saving_field_by_field_ends_without_how_it_finished(
    reply, monkeypatch
):
    """After a refused final save, the fields are saved one by one, the text last. Should the
    database go away (or the worker die) before the text, the reply streams on with the
    final finish reason until its lease runs out; marked interrupted with the last
    checkpoint's text, it kept saying "stop", as if the checkpoint were the whole reply."""
    assert checkpoint(reply, content="so far", reasoning="")
    real_save = services._reply_finish
    saves: list[dict[str, object]] = []

    async def database_lost_at_the_text(
        message_id: int, worker_id: str, fields: dict[str, object]
    ) -> bool:
        saves.append(fields)
        if len(saves) == 2:  # the first, whole, was refused; the second is the text alone
            raise OperationalError("server closed the connection unexpectedly")
        return await real_save(message_id, worker_id, fields)

    monkeypatch.setattr(services, "_reply_finish", database_lost_at_the_text)
    with pytest.raises(OperationalError):
        finish(
            reply,
            status=Message.Status.COMPLETE,
            content="the whole reply",
            finish_reason="stop",
            prompt_tokens=-1,  # refused by a check constraint on every backend
            completion_tokens=3,
        )
    reply.refresh_from_db()
    assert (reply.status, reply.finish_reason) == ("streaming", "stop")  # saved on its own
    Message.objects.filter(pk=reply.pk).update(lease_expires=timezone.now() - timedelta(1))
    assert [m.pk for m in services.replies_interrupt_expired()] == [reply.pk]
    reply.refresh_from_db()
    assert (reply.status, reply.content, reply.finish_reason) == ("interrupted", "so far", "")


@pytest.mark.django_db(transaction=True)
def test_a_tool_round_the_database_refuses_keeps_the_replys_text(reply, caplog):
    """A refused tool round (the reply, the tools' results and the next reply are saved in one
    transaction) rolled back and left the reply's text to the lease's expiry."""
    call = {"id": "c1", "name": "calculate", "arguments": '{"expression": "1+1"}'}
    saved, created = async_to_sync(services.reply_finish_with_tool_round)(
        message_id=reply.pk,
        worker_id=WORKER,
        fields={
            "status": Message.Status.COMPLETE,
            "content": "Let me calculate.",
            "tool_calls": [call],
            "prompt_tokens": -1,  # refused by a check constraint on every backend
        },
        results=[(call, '{"result": 2}')],
    )
    assert (saved, created) == (True, [])
    reply.refresh_from_db()
    assert (reply.status, reply.content) == ("complete", "Let me calculate.")
    assert not Message.objects.filter(parent=reply).exists()  # no round: its results went
    assert "its tool round was refused" in caplog.text
