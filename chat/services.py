"""Writes: every change to conversations and messages, with its events sent after commit."""

from __future__ import annotations

import functools
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import events
from .markdown import render_markdown
from .models import Conversation, Message

MAX_MESSAGE_LENGTH = 100_000
TITLE_WORDS = 8


class ConversationBusy(Exception):
    """A reply is still being generated in this conversation."""


class MessageNotEditable(Exception):
    """Only the latest user message can be edited and sent again."""


def rendered_fields(*, content: str, reasoning: str) -> dict[str, str]:
    """The stored HTML of a reply that ends with this text. (A streamed reply's comes from
    its progressive renderer, which gives the same HTML.)"""
    return {
        "content_html": render_markdown(content),
        "reasoning_html": render_markdown(reasoning) if reasoning else "",
    }


def conversation_create(*, owner: User, model: str = "", system_prompt: str = "") -> Conversation:
    return Conversation.objects.create(
        owner=owner, model=model or settings.CHAT_MODEL, system_prompt=system_prompt
    )


def title_from(content: str) -> str:
    words = content.split()
    title = " ".join(words[:TITLE_WORDS])
    return title[:80] + ("…" if len(words) > TITLE_WORDS or len(title) > 80 else "")


def message_submit(
    *, conversation: Conversation, content: str, idempotency_key: uuid.UUID | None = None
) -> tuple[Message, Message]:
    """Save the user's message and a pending reply, and start the reply after commit.

    Submitting the same idempotency key again returns the first submission's pair.
    Raises ConversationBusy while an earlier reply is still pending or streaming.
    """
    if idempotency_key is not None:
        existing = _submission(conversation, idempotency_key)
        if existing is not None:
            return existing
    try:
        with transaction.atomic():
            # Lock the conversation so two submissions cannot both pass the busy check.
            Conversation.objects.select_for_update().filter(pk=conversation.pk).first()
            if idempotency_key is not None:
                # The same submission may have committed while this one waited for the lock.
                existing = _submission(conversation, idempotency_key)
                if existing is not None:
                    return existing
            busy = conversation.messages.filter(
                role=Message.Role.ASSISTANT,
                status__in=[Message.Status.PENDING, Message.Status.STREAMING],
            ).exists()
            if busy:
                raise ConversationBusy
            user_message = Message.objects.create(
                conversation=conversation,
                role=Message.Role.USER,
                content=content,
                status=Message.Status.COMPLETE,
                idempotency_key=idempotency_key,
                completed=timezone.now(),
            )
            reply = Message.objects.create(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                status=Message.Status.PENDING,
                model=conversation.model,
            )
            update_fields = ["updated"]
            if not conversation.title:
                conversation.title = title_from(content)
                conversation.title_source = Conversation.TitleSource.WORDS
                update_fields += ["title", "title_source"]
            conversation.save(update_fields=update_fields)
            transaction.on_commit(lambda: events.request_generation(reply.pk))
            # Other tabs open on this conversation show the new turn too.
            transaction.on_commit(
                lambda: events.messages_appended_sync(conversation.pk, [user_message.pk, reply.pk])
            )
    except IntegrityError:
        # The same submission raced us and won; answer with its pair.
        if idempotency_key is not None and (found := _submission(conversation, idempotency_key)):
            return found
        raise
    return user_message, reply


def _submission(conversation: Conversation, key: uuid.UUID) -> tuple[Message, Message] | None:
    user_message = conversation.messages.filter(idempotency_key=key).first()
    if user_message is None:
        return None
    reply = (
        conversation.messages.filter(role=Message.Role.ASSISTANT, id__gt=user_message.id)
        .order_by("id")
        .first()
    )
    return (user_message, reply) if reply is not None else None


def reply_stop(*, reply: Message) -> None:
    """Stop a reply: a queued one is cancelled here, a streaming one by its worker."""
    cancelled = Message.objects.filter(pk=reply.pk, status=Message.Status.PENDING).update(
        status=Message.Status.CANCELLED, completed=timezone.now()
    )
    if cancelled:
        transaction.on_commit(lambda: events.message_finished_sync(reply.conversation_id, reply.pk))
    else:
        events.request_cancel(reply.pk)


# --- Called by the streaming consumer --------------------------------------------------------


async def reply_claim(*, message_id: int, worker_id: str) -> Message | None:
    """Take a pending reply for this worker; None if it is not pending (taken, cancelled)."""
    now = timezone.now()
    claimed = await Message.objects.filter(
        pk=message_id, role=Message.Role.ASSISTANT, status=Message.Status.PENDING
    ).aupdate(
        status=Message.Status.STREAMING,
        lease_owner=worker_id,
        lease_expires=now + timedelta(seconds=settings.CHAT_LEASE_SECONDS),
    )
    if not claimed:
        return None
    return await Message.objects.select_related("conversation").aget(pk=message_id)


async def reply_checkpoint(*, message_id: int, worker_id: str, fields: dict[str, Any]) -> bool:
    """Save partial text and renew the lease; False if this worker no longer owns the reply."""
    lease_expires = timezone.now() + timedelta(seconds=settings.CHAT_LEASE_SECONDS)
    updated = await Message.objects.filter(
        pk=message_id, lease_owner=worker_id, status=Message.Status.STREAMING
    ).aupdate(lease_expires=lease_expires, **fields)
    return bool(updated)


async def reply_finish(*, message_id: int, worker_id: str, fields: dict[str, Any]) -> bool:
    """Save the finished reply once; False if this worker no longer owns it. `lease_owner`
    stays as the record of which worker generated the reply."""
    updated = await Message.objects.filter(
        pk=message_id, lease_owner=worker_id, status=Message.Status.STREAMING
    ).aupdate(lease_expires=None, completed=timezone.now(), **fields)
    return bool(updated)


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    conversation.title = title.strip()[:200]
    conversation.title_source = Conversation.TitleSource.USER
    conversation.save(update_fields=["title", "title_source", "updated"])
    return conversation


def conversation_configure(*, conversation: Conversation, model: str, system_prompt: str) -> None:
    """Set the model and system prompt used from the next reply on."""
    conversation.model = model
    conversation.system_prompt = system_prompt
    conversation.save(update_fields=["model", "system_prompt", "updated"])


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation and its messages; a reply still streaming is stopped first."""
    active = list(
        conversation.messages.filter(
            status__in=[Message.Status.PENDING, Message.Status.STREAMING]
        ).values_list("pk", flat=True)
    )
    conversation.delete()
    for message_id in active:
        transaction.on_commit(functools.partial(events.request_cancel, message_id))


def message_edit_and_resend(*, message: Message, content: str) -> tuple[Message, Message]:
    """Replace the latest user message's text and generate its reply again; the old reply
    (and anything after it, such as tool results) is removed."""
    with transaction.atomic():
        conversation = message.conversation
        Conversation.objects.select_for_update().filter(pk=conversation.pk).first()
        latest_user = conversation.messages.filter(role=Message.Role.USER).order_by("-id").first()
        if latest_user is None or latest_user.pk != message.pk:
            raise MessageNotEditable
        later = conversation.messages.filter(id__gt=message.pk)
        if later.filter(status__in=[Message.Status.PENDING, Message.Status.STREAMING]).exists():
            raise ConversationBusy
        later.delete()
        message.content = content
        message.save(update_fields=["content"])
        reply = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            status=Message.Status.PENDING,
            model=conversation.model,
        )
        conversation.save(update_fields=["updated"])
        transaction.on_commit(lambda: events.request_generation(reply.pk))
    return message, reply


def reply_feedback(*, reply: Message, rating: str, comment: str) -> Message:
    reply.feedback = rating
    reply.feedback_comment = comment.strip()[:5000]
    reply.save(update_fields=["feedback", "feedback_comment"])
    return reply


class ReplyNotRetryable(Exception):
    """Only the latest reply, once it has ended, can be retried or continued."""


def _latest_ended_reply(reply: Message, allowed: set[str]) -> None:
    latest = reply.conversation.messages.order_by("-id").first()
    if latest is None or latest.pk != reply.pk or reply.status not in allowed:
        raise ReplyNotRetryable


def reply_retry(*, reply: Message) -> Message:
    """Generate the latest reply again, replacing what it had."""
    with transaction.atomic():
        _latest_ended_reply(
            reply,
            {
                Message.Status.ERROR,
                Message.Status.INTERRUPTED,
                Message.Status.CANCELLED,
                Message.Status.COMPLETE,
            },
        )
        _reset_for_generation(reply, keep_content=False)
        transaction.on_commit(lambda: events.request_generation(reply.pk))
    return reply


def reply_continue(*, reply: Message) -> Message:
    """Ask the model to go on with a reply cut at the token limit; the text joins the reply."""
    with transaction.atomic():
        _latest_ended_reply(reply, {Message.Status.COMPLETE, Message.Status.INTERRUPTED})
        if reply.finish_reason != "length" and reply.status != Message.Status.INTERRUPTED:
            raise ReplyNotRetryable
        _reset_for_generation(reply, keep_content=True)
        transaction.on_commit(lambda: events.request_generation(reply.pk))
    return reply


def _reset_for_generation(reply: Message, *, keep_content: bool) -> None:
    reply.status = Message.Status.PENDING
    reply.finish_reason = ""
    reply.error = ""
    reply.completed = None
    if not keep_content:
        # A new answer: the old one's feedback does not apply to it.
        reply.feedback = ""
        reply.feedback_comment = ""
        reply.content = reply.content_html = ""
        reply.reasoning = reply.reasoning_html = ""
        reply.tool_calls = []
        reply.prompt_tokens = reply.completion_tokens = None
        reply.time_to_first_token = reply.duration = None
    reply.save()


async def reply_finish_with_tool_round(
    *,
    message_id: int,
    worker_id: str,
    fields: dict[str, Any],
    results: list[tuple[dict[str, str], str]],
) -> list[Message]:
    """Save a reply that called tools, the tools' results, and a new reply (already claimed by
    this worker) in one transaction. Returns the new messages, the new reply last; empty if
    this worker no longer owns the reply."""
    from asgiref.sync import sync_to_async

    def record() -> list[Message]:
        with transaction.atomic():
            owned = Message.objects.filter(
                pk=message_id, lease_owner=worker_id, status=Message.Status.STREAMING
            ).update(lease_expires=None, completed=timezone.now(), **fields)
            if not owned:
                return []
            reply = Message.objects.select_related("conversation").get(pk=message_id)
            created = [
                Message.objects.create(
                    conversation=reply.conversation,
                    role=Message.Role.TOOL,
                    content=result,
                    tool_calls=[call],
                    tool_call_id=call["id"],
                    status=Message.Status.COMPLETE,
                    completed=timezone.now(),
                )
                for call, result in results
            ]
            created.append(
                Message.objects.create(
                    conversation=reply.conversation,
                    role=Message.Role.ASSISTANT,
                    status=Message.Status.STREAMING,
                    model=reply.model,
                    lease_owner=worker_id,
                    lease_expires=timezone.now() + timedelta(seconds=settings.CHAT_LEASE_SECONDS),
                )
            )
            return created

    return await sync_to_async(record)()


# --- Recovery: replies whose worker died, and replies nobody took ----------------------------

WORKER_DIED = "The server streaming this reply stopped; the text received until then is kept."


def replies_interrupt_expired() -> list[Message]:
    """Mark `interrupted` every streaming reply whose worker stopped renewing its lease. The
    text kept is the last checkpoint."""
    now = timezone.now()
    expired = list(
        Message.objects.filter(status=Message.Status.STREAMING, lease_expires__lt=now).only(
            "pk", "conversation_id", "lease_owner", "content", "reasoning"
        )
    )
    interrupted = []
    for message in expired:
        # Conditional on the same lease: a worker that renewed meanwhile keeps its reply.
        updated = Message.objects.filter(
            pk=message.pk,
            status=Message.Status.STREAMING,
            lease_owner=message.lease_owner,
            lease_expires__lt=now,
        ).update(
            status=Message.Status.INTERRUPTED,
            error=WORKER_DIED,
            lease_expires=None,
            completed=now,
            **rendered_fields(content=message.content, reasoning=message.reasoning),
        )
        if updated:
            interrupted.append(message)
    return interrupted


def replies_requeue_unclaimed(*, older_than: float) -> list[int]:
    """Send `generate` again for pending replies that no worker claimed (a lost channel
    message, a worker that stopped before claiming). Claims are atomic, so a duplicate is
    harmless; `lease_expires` spaces the retries out."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=older_than)
    stale = Message.objects.filter(
        status=Message.Status.PENDING, role=Message.Role.ASSISTANT, created__lte=cutoff
    ).exclude(lease_expires__gt=now)
    ids = list(stale.values_list("pk", flat=True)[:500])
    if ids:
        Message.objects.filter(pk__in=ids, status=Message.Status.PENDING).update(
            lease_expires=now + timedelta(seconds=max(older_than, 5.0))
        )
    return ids
