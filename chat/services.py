"""Writes: every change to conversations and messages, with its events sent after commit."""

from __future__ import annotations

import contextlib
import functools
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Q, QuerySet
from django.db.models.signals import post_save, pre_save
from django.utils import timezone

from . import events, fragments, limits, outages, selectors, titles
from .compiled import Column, CompiledInsert, CompiledQuery, CompiledUpdate
from .markdown import render_markdown
from .models import ACTIVE_STATUSES, WORKER_DIED, Conversation, Message

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_MESSAGE_LENGTH = 100_000
TITLE_WORDS = 8


class ConversationBusy(Exception):
    """A reply is still being generated in this conversation."""


class ConversationChanged(Exception):
    """The message was written below a message the conversation no longer ends with (another
    tab or window switched versions, or sent a turn, since this one was drawn), or on a page
    that the browser's history showed again as it was drawn (its key sent before)."""


class ReplyNotRetryable(Exception):
    """The reply cannot be generated again or continued (it is still being generated, or
    Continue was asked of a reply that did not stop early or is not the latest)."""


@contextlib.contextmanager
def conversation_lock(conversation: Conversation) -> Iterator[None]:
    """One turn at a time per conversation: a transaction that holds the conversation's row
    lock, so two submissions, edits or retries cannot both see it idle."""
    with transaction.atomic():
        # SQLite has no row locks: its transactions here are IMMEDIATE (chatsite/settings.py),
        # so each takes the database's one write lock as it begins, a stronger lock than these.
        if connection.features.has_select_for_update:
            _TURN_LOCKS.rows(pk=conversation.pk)
        yield


# The turn's row locks, in one statement (chat.compiled): the conversation's, and its owner's
# too, as their limits count replies across all their conversations.
_TURN_LOCKS = CompiledQuery[Conversation](
    lambda pk: (
        Conversation.objects.select_for_update(of=("self", "owner"))
        .select_related("owner")
        .only("id", "owner__id")
        .filter(pk=pk)
        .order_by()
    ),
    pk=uuid.UUID,
)


# The owner's row lock, taken before a new conversation's idempotency key is looked up.
_OWNER_LOCK = CompiledQuery[User](
    lambda pk: User.objects.select_for_update().only("id").filter(pk=pk).order_by(), pk=int
)


def _ensure_idle(conversation: Conversation) -> None:
    """Who may take a turn: nobody while a reply of this conversation is still generated.
    (`message_submit` finds it in its one read of the tree, `selectors.turn_state`.)"""
    if conversation.messages.active().exists():
        raise ConversationBusy


def _shown(message: Message) -> bool:
    """Whether `message` is on the branch the conversation shows: the chosen version of its
    turn, under chosen versions all the way up. (A tab that missed a version switch may ask
    to go on with a version no longer shown.)"""
    path = selectors.path_to(message=message, fields=("selected",))
    return message.selected and all(m.selected for m in path)


def _select(message: Message) -> None:
    """Make `message` the chosen version of its turn (its siblings are unchosen), and the
    branch that leads to it the one shown."""
    for version in [*selectors.path_to(message=message), message]:
        if version is message or not version.selected:
            siblings = Message.objects.filter(
                conversation_id=version.conversation_id, parent_id=version.parent_id
            )
            siblings.exclude(pk=version.pk).update(selected=False)
            siblings.filter(pk=version.pk).update(selected=True)
            version.selected = True


# Every new message: a turn's two, the user's and the reply (chat.compiled).
_NEW_MESSAGE = CompiledInsert(Message)


def _save_conversation(conversation: Conversation, fields: list[str]) -> None:
    """`conversation.save(update_fields=fields)`, compiled (chat.compiled): each field's
    value taken as `save` takes it (`updated`, `auto_now`, set to now)."""
    if pre_save.has_listeners(Conversation) or post_save.has_listeners(Conversation):
        conversation.save(update_fields=fields)  # sends them
        return
    columns = {f.name: f for f in Conversation._meta.concrete_fields}
    values = {name: columns[name].pre_save(conversation, False) for name in fields}
    if not _conversation_update(frozenset(values)).execute(pk=conversation.pk, **values):
        raise DatabaseError("Save with update_fields did not affect any rows.")


@functools.cache
def _conversation_update(fields: frozenset[str]) -> CompiledUpdate[Conversation]:
    return CompiledUpdate[Conversation](
        lambda pk, **values: (Conversation.objects.filter(pk=pk), values),
        pk=uuid.UUID,
        **dict.fromkeys(sorted(fields), Column),
    )


def _path_shown_anew(conversation: Conversation, *, after: int | None, tab: str) -> None:
    """Once committed, the conversation's other tabs draw its path anew from after the message
    `after` (None: from the top): Regenerate, an edit or a version switch changed which
    versions are shown. The tab that asked (`tab`, as it names itself) gets the whole list in
    its answer instead. Each other tab reads and draws the path itself (`consumers`), so that
    nobody pays for it with no other tab open. Registered before a new reply's start, as a
    turn's event is (`message_submit`): it reaches every tab before the reply's first frame."""
    conversation_id = conversation.pk
    transaction.on_commit(
        lambda: events.path_changed_sync(conversation_id, after=after, not_tab=tab), robust=True
    )


def _new_reply(conversation: Conversation, *, parent: Message) -> Message:
    """A pending reply after `parent`, generated once the transaction commits. Raises
    LimitReached if the owner may not start one now."""
    limits.check_reply(conversation.owner)
    reply = _NEW_MESSAGE.create(
        conversation=conversation,
        parent=parent,
        role=Message.Role.ASSISTANT,
        status=Message.Status.PENDING,
        model=conversation.model,
        system_prompt=conversation.system_prompt,
    )
    transaction.on_commit(lambda: events.request_generation(reply.pk))
    return reply


def rendered_fields(*, content: str, reasoning: str) -> dict[str, str]:
    """The stored HTML of a reply that ends with this text. (A streamed reply's comes from
    its progressive renderer, which gives the same HTML.)"""
    return {
        "content_html": render_markdown(content),
        "reasoning_html": render_markdown(reasoning) if reasoning else "",
    }


def conversation_create(*, owner: User, model: str = "", system_prompt: str = "") -> Conversation:
    """A new conversation; raises LimitReached past the owner's conversations a minute. The
    owner's open tabs list it."""
    limits.check_conversation(owner)
    conversation = Conversation.objects.create(
        owner=owner, model=model or settings.CHAT_MODEL, system_prompt=system_prompt
    )
    _list_changed(owner.pk)
    return conversation


def conversation_start(
    *,
    owner: User,
    content: str,
    idempotency_key: uuid.UUID | None = None,
    model: str = "",
) -> tuple[Message, Message]:
    """Start a conversation with its first message: the conversation, the message and a
    pending reply are saved together, so no conversation is ever left empty.

    Submitting the same idempotency key again returns the first submission's pair, also
    while the first is still being saved (a double click): the key is looked up with the
    owner's row locked, so the second waits for the first to commit. The same key with
    another text raises ConversationChanged (`_submission`).
    """
    with transaction.atomic():
        if idempotency_key is not None:
            # SQLite's transactions here take its one write lock as they begin (IMMEDIATE).
            if connection.features.has_select_for_update:
                _OWNER_LOCK.rows(pk=owner.pk)
            first = (
                Message.objects.filter(
                    conversation__owner=owner,
                    role=Message.Role.USER,
                    idempotency_key=idempotency_key,
                )
                .select_related("conversation")
                .first()
            )
            if first is not None and (
                found := _submission(first.conversation, idempotency_key, content)
            ):
                return found
        conversation = conversation_create(owner=owner, model=model)
        return message_submit(
            conversation=conversation, content=content, idempotency_key=idempotency_key
        )


def title_from(content: str) -> str:
    """A conversation's first title: its first message's first words, without markdown's
    marks."""
    return titles.first_words(titles.without_marks(content), TITLE_WORDS, 80)


def message_submit(
    *,
    conversation: Conversation,
    content: str,
    idempotency_key: uuid.UUID | None = None,
    after: int | None = None,
) -> tuple[Message, Message]:
    """Save the user's message after the last one shown and a pending reply, and start the
    reply after commit.

    Submitting the same idempotency key again returns the first submission's pair (with
    another text: ConversationChanged, `_submission`).
    Raises ConversationBusy while an earlier reply is still pending or streaming, and
    ConversationChanged if `after` (the last message the sender's page shows; 0 for none) is
    not the conversation's last message: the model would be sent turns the sender never saw.
    """
    try:
        with conversation_lock(conversation):
            # Read under the lock: the same submission may have committed while this one
            # waited for it. (One read of the tree answers what `_submission`,
            # `_ensure_idle` and the active path would each ask the database.)
            state = selectors.turn_state(conversation=conversation, idempotency_key=idempotency_key)
            if state.submitted and idempotency_key is not None:
                existing = _submission(conversation, idempotency_key, content)
                if existing is not None:
                    return existing
            if state.busy:
                raise ConversationBusy
            if after is not None and after != (state.leaf_id or 0):
                raise ConversationChanged
            user_message = _NEW_MESSAGE.create(
                conversation=conversation,
                parent_id=state.leaf_id,
                role=Message.Role.USER,
                content=content,
                status=Message.Status.COMPLETE,
                idempotency_key=idempotency_key,
                completed=timezone.now(),
            )
            # Other tabs open on this conversation show the new turn too, drawn here once for
            # all of them. The sender's tab also gets it in the HTTP response (it must not
            # depend on its socket being up); the page drops whichever copy comes second
            # (`chat-frames` in static/chat/chat.js). Registered before the reply's start
            # (`_new_reply`), so it reaches every tab before the reply's first frame: a frame
            # first, and the turn's event after it would make the socket ask for a snapshot
            # of text its tab already shows.
            # `robust`: should it fail, the reply is still started (Django skips the callbacks
            # after one that raises).
            transaction.on_commit(
                lambda: events.messages_appended_sync(
                    conversation.pk,
                    [user_message.pk, reply.pk],
                    after=user_message.parent_id,
                    html=fragments.appended_for_event([user_message, reply]),
                    active=[reply.pk],
                ),
                robust=True,
            )
            reply = _new_reply(conversation, parent=user_message)
            update_fields = ["updated"]
            if conversation.archived:
                # Written in again, it is back among the others (as mail is, answered), where
                # the sender's list already puts it.
                conversation.archived = False
                update_fields.append("archived")
            if not conversation.title:
                conversation.title = title_from(content)
                conversation.title_source = Conversation.TitleSource.WORDS
                update_fields += ["title", "title_source"]
            _save_conversation(conversation, update_fields)
    except IntegrityError:
        # The same submission raced us and won; answer with its pair.
        if idempotency_key is not None and (
            found := _submission(conversation, idempotency_key, content)
        ):
            return found
        raise
    return user_message, reply


def _submission(
    conversation: Conversation, key: uuid.UUID, content: str
) -> tuple[Message, Message] | None:
    """The message and reply that an earlier submission of `key` saved (a double click, a
    retry); None if none. Raises ConversationChanged if that submission was another text: a
    page that the browser's history showed again as it was sends the key it was drawn with
    (it was taken for the same submission, and the new text was lost)."""
    user_message = conversation.messages.filter(idempotency_key=key).first()
    if user_message is None:
        return None
    if user_message.content != content:
        raise ConversationChanged
    reply = user_message.children.replies().order_by("id").first()
    return (user_message, reply) if reply is not None else None


def reply_stop(*, reply: Message) -> None:
    """Stop a reply: a queued one is cancelled here, a streaming one by its worker. A reply
    that has just ended in a tool round stops its turn where it is (the follow-up): the tab
    sent Stop for the reply it showed as the round ended, and the turn's worker, in that
    reply's group until the turn ends, takes it for the turn. Any other reply done is left
    alone."""
    if not reply.is_active:
        if reply.finish_reason == "tool_calls":
            events.request_cancel(reply.pk)
        return
    if _cancel_if_queued(reply.pk):
        transaction.on_commit(lambda: events.message_finished_sync(reply.conversation_id, reply.pk))
    else:
        events.request_cancel(reply.pk)


def _cancel_if_queued(message_id: int) -> bool:
    """Cancel the reply if it is still queued (pending): True if it was."""
    return bool(
        Message.objects.filter(pk=message_id, status=Message.Status.PENDING).update(
            status=Message.Status.CANCELLED, completed=timezone.now()
        )
    )


# --- Called by the streaming consumer --------------------------------------------------------


async def reply_claim(*, message_id: int, worker_id: str) -> Message | None:
    """Take a pending reply for this worker; None if it is not pending (taken, cancelled).
    The database away a moment is waited out, as for the final save: a claim left half made
    would leave the reply under a lease that nothing streams, or queued for no one."""
    lease_expires = timezone.now() + timedelta(seconds=settings.CHAT_LEASE_SECONDS)
    claim = _Claim(message_id, worker_id, lease_expires)
    return await outages.retried_while_database_away(sync_to_async(claim.take))


@dataclass
class _Claim:
    message_id: int
    worker_id: str
    lease_expires: datetime
    made: bool = False  # the update went through: a retry only reads the reply
    tried: bool = False

    def take(self) -> Message | None:
        # Two statements, each committed on its own, in one trip to a thread.
        if not self.made and self.tried:
            # The update may have committed, its answer lost with the connection: then the
            # reply is this worker's, under this very lease.
            self.made = bool(
                _OWN_CLAIM.rows(pk=self.message_id, worker=self.worker_id, until=self.lease_expires)
            )
        self.tried = True
        if not self.made:
            if not _CLAIM.execute(
                pk=self.message_id, worker=self.worker_id, until=self.lease_expires
            ):
                return None
            self.made = True
        found = _CLAIMED_REPLY.instances(pk=self.message_id)
        if not found:
            raise Message.DoesNotExist(self.message_id)
        return found[0]


# Run once for every reply a worker takes (chat.compiled).
_CLAIM = CompiledUpdate[Message](
    lambda pk, worker, until: (
        Message.objects.filter(pk=pk, role=Message.Role.ASSISTANT, status=Message.Status.PENDING),
        {"status": Message.Status.STREAMING, "lease_owner": worker, "lease_expires": until},
    ),
    pk=int,
    worker=str,
    until=datetime,
)
_OWN_CLAIM = CompiledQuery[Message](
    lambda pk, worker, until: (
        Message.objects.filter(
            pk=pk, status=Message.Status.STREAMING, lease_owner=worker, lease_expires=until
        )
        .order_by()
        .values_list("pk")[:1]
    ),
    pk=int,
    worker=str,
    until=datetime,
)
_CLAIMED_REPLY = CompiledQuery[Message](
    lambda pk: Message.objects.select_related("conversation").filter(pk=pk).order_by()[:1],
    pk=int,
)


@dataclass(frozen=True)
class Checkpoint:
    """One reply's checkpoint: its partial text (`fields`; none to renew the lease alone)."""

    message_id: int
    worker_id: str
    fields: dict[str, Any]


async def replies_checkpoint(checkpoints: list[Checkpoint]) -> list[bool | Exception]:
    """Each reply's checkpoint, in one call to the database's thread: True where it was
    saved and its lease renewed, False where this worker no longer owns the reply, the error
    where its statement failed. One reply's failure is its own; the database away fails them
    all (raised at the first: the others would each wait the pool's timeout)."""
    return await sync_to_async(_checkpoint_each)(checkpoints)


def _checkpoint_each(checkpoints: list[Checkpoint]) -> list[bool | Exception]:
    lease_expires = timezone.now() + timedelta(seconds=settings.CHAT_LEASE_SECONDS)
    outcomes: list[bool | Exception] = []
    for checkpoint in checkpoints:
        try:
            outcomes.append(_checkpoint_one(checkpoint, lease_expires))
        except outages.DATABASE_ERRORS:
            raise
        except Exception as error:
            outcomes.append(error)
    return outcomes


def _checkpoint_one(checkpoint: Checkpoint, lease_expires: datetime) -> bool:
    """The generation's checkpoints (the lease alone, or with `content` and `reasoning`) run
    compiled; other fields through the ORM."""
    message_id, worker_id = checkpoint.message_id, checkpoint.worker_id
    fields = _storable(checkpoint.fields)
    if not fields:
        updated = _RENEW_LEASE.execute(pk=message_id, worker=worker_id, until=lease_expires)
    elif fields.keys() == {"content", "reasoning"}:
        updated = _CHECKPOINT.execute(
            pk=message_id, worker=worker_id, until=lease_expires, **fields
        )
    else:
        updated = _owned_reply(message_id, worker_id).update(lease_expires=lease_expires, **fields)
    return bool(updated)


def _storable(value: T) -> T:
    """What the model server sent (text, or JSON of it), as every database stores it: a NUL
    character, which PostgreSQL refuses in text and in JSON (the whole row's save with it),
    becomes U+FFFD, as the page draws it (chat.progressive.normalise)."""
    if isinstance(value, str):
        return value.replace("\0", "\ufffd") if "\0" in value else value  # type: ignore[return-value]
    if isinstance(value, list | tuple):
        return type(value)(_storable(item) for item in value)  # type: ignore[return-value]
    if isinstance(value, dict):
        return {key: _storable(item) for key, item in value.items()}  # type: ignore[return-value]
    return value


def _owned_reply(pk: int, worker: str) -> QuerySet[Message]:
    return Message.objects.filter(pk=pk, lease_owner=worker, status=Message.Status.STREAMING)


# Run every CHAT_CHECKPOINT_SECONDS for every reply in flight (chat.compiled).
_RENEW_LEASE = CompiledUpdate[Message](
    lambda pk, worker, until: (_owned_reply(pk, worker), {"lease_expires": until}),
    pk=int,
    worker=str,
    until=datetime,
)
_CHECKPOINT = CompiledUpdate[Message](
    lambda pk, worker, until, content, reasoning: (
        _owned_reply(pk, worker),
        {"lease_expires": until, "content": content, "reasoning": reasoning},
    ),
    pk=int,
    worker=str,
    until=datetime,
    content=str,
    reasoning=str,
)


async def reply_finish(*, message_id: int, worker_id: str, fields: dict[str, Any]) -> bool:
    """Save the finished reply once; False if this worker no longer owns it. `lease_owner`
    stays as the record of which worker generated the reply.

    Should the database refuse a value (not be away: that error is raised, for the caller to
    retry), the reply is saved with its text (`REPLY_TEXT_FIELDS`) and every other field the
    database takes one by one (how it finished, its token counts, its model), not lost."""
    try:
        return await _reply_finish(message_id, worker_id, fields)
    except DatabaseError as refused:
        if isinstance(refused, outages.DATABASE_ERRORS):
            raise
        logger.error(
            "message %s: the finished reply was refused (%s); saving its text",
            message_id,
            _refusal(refused),
        )
    for name in fields.keys() - REPLY_TEXT_FIELDS:
        try:
            await _finish_update(frozenset([name])).aexecute(
                pk=message_id, worker=worker_id, **_storable({name: fields[name]})
            )
        except DatabaseError as refused:
            if isinstance(refused, outages.DATABASE_ERRORS):
                raise
            logger.warning(
                "message %s: its %s was refused (%s)", message_id, name, _refusal(refused)
            )
    text = {name: fields[name] for name in REPLY_TEXT_FIELDS if name in fields}
    return await _reply_finish(message_id, worker_id, text)


def _refusal(error: DatabaseError) -> str:
    """What the database refused, for the log: the error's class and the constraint it names,
    not its text (PostgreSQL's quotes the row's values, the reply's text among them)."""
    diag = getattr(error.__cause__, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    return type(error).__name__ + (f" on {constraint}" if constraint else "")


# What a finished reply keeps whatever else the database refuses: its text, as drawn, and
# how it ended (all in columns of any length, and made here or cleaned by `_storable`).
REPLY_TEXT_FIELDS = ("status", "content", "reasoning", "content_html", "reasoning_html", "error")


async def _reply_finish(message_id: int, worker_id: str, fields: dict[str, Any]) -> bool:
    values = {"completed": timezone.now(), **_storable(fields), "lease_expires": None}
    update = _finish_update(frozenset(values))
    return bool(await update.aexecute(pk=message_id, worker=worker_id, **values))


@functools.cache
def _finish_update(fields: frozenset[str]) -> CompiledUpdate[Message]:
    """A reply's final save of these fields (chat.compiled): one for each set of fields a
    generation ends with (with the model's token counts or without), and one for each field
    that `reply_finish` saves on its own after a refusal."""
    return CompiledUpdate[Message](
        lambda pk, worker, **values: (_owned_reply(pk, worker), values),
        pk=int,
        worker=str,
        **dict.fromkeys(sorted(fields), Column),
    )


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    """Rename it; its other open tabs show the new title too (header and list), and so do the
    owner's tabs on other conversations (their lists)."""
    conversation.title = title.strip()[:200]
    conversation.title_source = Conversation.TitleSource.USER
    _save_conversation(conversation, ["title", "title_source", "updated"])
    html = fragments.conversation_title(conversation)  # drawn once here for every tab
    transaction.on_commit(
        lambda: events.conversation_updated_sync(conversation.pk, html=html), robust=True
    )
    _list_changed(conversation.owner_id, not_conversation=conversation.pk)
    return conversation


def conversation_organize(
    *,
    conversation: Conversation,
    pinned: bool | None = None,
    archived: bool | None = None,
    tab: str = "",
) -> Conversation:
    """Pin or unpin, archive or unarchive. Neither counts as activity: the conversation keeps
    its place in time (`updated`). The owner's other tabs draw their lists again, if anything
    changed (not for a second click, or a stale menu's)."""
    changes = {
        name: value
        for name, value in (("pinned", pinned), ("archived", archived))
        if value is not None
    }
    if not changes:
        return conversation
    # Compared by the database, in the write: a value read before another tab's opposite
    # change committed would skip a write that is due.
    changed = Conversation.objects.filter(pk=conversation.pk).exclude(**changes).update(**changes)
    for name, value in changes.items():
        setattr(conversation, name, value)
    if changed:
        _list_changed(conversation.owner_id, tab=tab)
    return conversation


def _list_changed(
    owner_id: int, *, tab: str = "", not_conversation: uuid.UUID | None = None
) -> None:
    """After commit, the owner's tabs draw their sidebars' lists again, but the tab `tab` (the
    one that asked: it draws its own) and the tabs on `not_conversation` (an event of their
    own draws it there: a rename, a deletion)."""
    transaction.on_commit(
        lambda: events.conversations_changed_sync(
            owner_id, not_tab=tab, not_conversation=not_conversation
        ),
        robust=True,
    )


def conversation_configure(*, conversation: Conversation, model: str, system_prompt: str) -> None:
    """Set the model and system prompt used from the next reply on."""
    conversation.model = model
    conversation.system_prompt = system_prompt
    _save_conversation(conversation, ["model", "system_prompt", "updated"])


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation and its messages; a reply still streaming is stopped first. What
    its replies spent today still counts toward the owner's tokens a day."""
    conversation_id = conversation.pk
    with transaction.atomic():
        active = list(conversation.messages.active().values_list("pk", flat=True))
        limits.keep_tokens_of(conversation)
        conversation.delete()
        for message_id in active:
            transaction.on_commit(functools.partial(events.request_cancel, message_id))
        transaction.on_commit(
            functools.partial(events.conversation_deleted_sync, conversation_id), robust=True
        )
        _list_changed(conversation.owner_id, not_conversation=conversation_id)


def message_edit(*, message: Message, content: str, tab: str = "") -> tuple[Message, Message]:
    """Send an edited version of a user message: a new branch from that point, with a new
    reply. The old message and everything after it stay, one switch away."""
    conversation = message.conversation
    with conversation_lock(conversation):
        _ensure_idle(conversation)
        edited = _NEW_MESSAGE.create(
            conversation=conversation,
            parent_id=message.parent_id,
            role=Message.Role.USER,
            content=content,
            status=Message.Status.COMPLETE,
            completed=timezone.now(),
        )
        _select(edited)
        _path_shown_anew(conversation, after=message.parent_id, tab=tab)
        reply = _new_reply(conversation, parent=edited)
        _save_conversation(conversation, ["updated"])
    return edited, reply


def message_select(*, message: Message, tab: str = "") -> Message:
    """Show this version of its turn (and the branch that leads to it), and below it the
    versions chosen there before. Not while a reply is generated: its tool results and
    follow-up would land on a branch the user no longer sees."""
    with conversation_lock(message.conversation):
        _ensure_idle(message.conversation)
        _select(message)
        _path_shown_anew(message.conversation, after=message.parent_id, tab=tab)
    return message


def reply_feedback(*, reply: Message, rating: str, comment: str) -> Message:
    """Rate a reply ("up", "down") with an optional comment; no rating withdraws both (the
    page sends the comment's box with the withdrawal, and then hides it)."""
    reply.feedback = rating
    reply.feedback_comment = comment.strip()[:5000] if rating else ""
    reply.save(update_fields=["feedback", "feedback_comment"])
    return reply


def reply_regenerate(*, reply: Message, tab: str = "") -> Message:
    """Generate a new version of a reply (Regenerate, or Retry after a failure). The old
    version stays as it was, with its feedback; the new one is shown."""
    conversation = reply.conversation
    with conversation_lock(conversation):
        _ensure_idle(conversation)
        if reply.parent is None:
            raise ReplyNotRetryable
        _path_shown_anew(conversation, after=reply.parent_id, tab=tab)
        new = _new_reply(conversation, parent=reply.parent)
        _select(new)
        _save_conversation(conversation, ["updated"])
    return new


def reply_continue(*, reply: Message) -> Message:
    """Ask the model to go on with a reply cut at the token limit (or interrupted): the text
    joins the same version of the reply."""
    with conversation_lock(reply.conversation):
        _ensure_idle(reply.conversation)
        reply.refresh_from_db()
        if not reply.stopped_early or reply.children.exists() or not _shown(reply):
            raise ReplyNotRetryable
        limits.check_reply(reply.conversation.owner)
        reply.status = Message.Status.PENDING
        reply.finish_reason = ""
        reply.error = ""
        reply.completed = None
        reply.save()
        transaction.on_commit(lambda: events.request_generation(reply.pk))
    return reply


async def reply_finish_with_tool_round(
    *,
    message_id: int,
    worker_id: str,
    fields: dict[str, Any],
    results: list[tuple[dict[str, str], str]],
) -> tuple[bool, list[Message]]:
    """Save a reply that called tools, the tools' results, and a new reply (already claimed by
    this worker) in one transaction. Returns whether the reply was saved (False if this
    worker no longer owns it) and the new messages, the new reply last.

    Should the database refuse the round (not be away), the reply is saved alone, as
    `reply_finish` saves it, with no new messages: its text is not lost."""
    from asgiref.sync import sync_to_async

    fields, results = _storable(fields), _storable(results)

    def record() -> list[Message]:
        with transaction.atomic():
            owned = _owned_reply(message_id, worker_id).update(
                **{"completed": timezone.now(), **fields, "lease_expires": None}
            )
            if not owned:
                return []
            reply = Message.objects.select_related("conversation").get(pk=message_id)
            created: list[Message] = []
            parent = reply
            for call, result in results:
                parent = _NEW_MESSAGE.create(
                    conversation=reply.conversation,
                    parent=parent,
                    role=Message.Role.TOOL,
                    content=result,
                    tool_calls=[call],
                    tool_call_id=call["id"],
                    status=Message.Status.COMPLETE,
                    completed=timezone.now(),
                )
                created.append(parent)
            created.append(
                _NEW_MESSAGE.create(
                    conversation=reply.conversation,
                    parent=parent,
                    role=Message.Role.ASSISTANT,
                    status=Message.Status.STREAMING,
                    model=reply.model,
                    system_prompt=reply.system_prompt,
                    lease_owner=worker_id,
                    lease_expires=timezone.now() + timedelta(seconds=settings.CHAT_LEASE_SECONDS),
                )
            )
            return created

    try:
        created = await sync_to_async(record)()
    except DatabaseError as refused:
        if isinstance(refused, outages.DATABASE_ERRORS):
            raise
        logger.error(
            "message %s: its tool round was refused (%s); saving the reply",
            message_id,
            _refusal(refused),
        )
        return await reply_finish(message_id=message_id, worker_id=worker_id, fields=fields), []
    return bool(created), created


async def reply_finish_went_through(
    *, message_id: int, worker_id: str, fields: dict[str, Any]
) -> bool:
    """Whether this worker's final save of the reply went through, as `reply_finish` saves
    it: asked by a retry that found the reply no longer this worker's (the save before it
    may have committed, its answer lost with the connection)."""
    from asgiref.sync import sync_to_async

    return await sync_to_async(_finished_by)(message_id, worker_id, fields) is not None


async def tool_round_went_through(
    *, message_id: int, worker_id: str, fields: dict[str, Any]
) -> tuple[bool, list[Message]]:
    """`reply_finish_went_through` for `reply_finish_with_tool_round`: whether the reply was
    saved, and the messages its round made, the new reply last (none if it made none)."""
    from asgiref.sync import sync_to_async

    def read() -> tuple[bool, list[Message]]:
        reply = _finished_by(message_id, worker_id, fields)
        if reply is None:
            return False, []
        created: list[Message] = []
        parent = reply
        while (
            child := parent.children.select_related("conversation").order_by("id").first()
        ) is not None:
            created.append(child)
            if child.role != Message.Role.TOOL:
                break
            parent = child
        follows = bool(created) and created[-1].role == Message.Role.ASSISTANT
        return True, created if follows and created[-1].lease_owner == worker_id else []

    return await sync_to_async(read)()


def _finished_by(message_id: int, worker_id: str, fields: dict[str, Any]) -> Message | None:
    """The reply, if this worker's final save of `fields` left it as it is: told by the time
    the save gives as its end (`completed`, the same in each of its tries), not by its text,
    which recovery may have saved the same (keeping the lease's owner)."""
    reply = (
        Message.objects.select_related("conversation")
        .filter(pk=message_id, lease_owner=worker_id, lease_expires=None)
        .exclude(status__in=ACTIVE_STATUSES)
        .first()
    )
    if reply is None or reply.completed != fields.get("completed"):
        return None
    return reply


# --- Recovery: replies whose worker died, and replies nobody took ----------------------------


def replies_interrupt_expired(*, dead: Callable[[str], bool] | None = None) -> list[Message]:
    """Mark `interrupted` every streaming reply whose worker stopped renewing its lease, or is
    known to have died (`dead`, asked of each worker that holds a lease: one of this machine's
    processes that has ended, `chat.streaming.liveness`). The text kept is the last
    checkpoint, and no finish reason: one saved on its own by a final save that did not get to
    the text (`reply_finish`) described the whole reply."""
    now = timezone.now()
    streaming = Message.objects.filter(status=Message.Status.STREAMING)
    given_up = Q(lease_expires__lt=now)
    if dead is not None:
        holders = set(streaming.values_list("lease_owner", flat=True).distinct())
        given_up |= Q(lease_owner__in=[worker for worker in holders if dead(worker)])
    expired = list(
        streaming.filter(given_up).only(
            "pk", "conversation_id", "lease_owner", "content", "reasoning"
        )
    )
    interrupted = []
    for message in expired:
        # Conditional on the same lease: a worker that renewed meanwhile keeps its reply
        # (unless it is known dead: it renews nothing).
        updated = streaming.filter(given_up, pk=message.pk, lease_owner=message.lease_owner).update(
            status=Message.Status.INTERRUPTED,
            error=WORKER_DIED,
            finish_reason="",
            lease_expires=None,
            completed=now,
            **rendered_fields(content=message.content, reasoning=message.reasoning),
        )
        if updated:
            interrupted.append(message)
    return interrupted


async def replies_hand_back(
    *, worker_id: str, message_ids: list[int], stopped_ids: list[int]
) -> tuple[list[int], list[Message]]:
    """Put back in the queue the replies among `message_ids` that this worker claimed and
    leaves without having streamed any of them (its server is stopping): the ids of those of
    `message_ids` pending now, for any worker to take, and the replies among them a user
    stopped meanwhile (`stopped_ids`), saved cancelled instead. The caller names only replies
    with nothing streamed: the text saved is what was there before the claim."""
    return await sync_to_async(_hand_back)(worker_id, message_ids, set(stopped_ids))


async def reply_cancel_queued(*, message_id: int) -> Message | None:
    """Cancel a reply that is still queued (pending); the reply, if it was."""
    return await sync_to_async(_cancel_queued)(message_id)


def _cancel_queued(message_id: int) -> Message | None:
    reply = Message.objects.filter(pk=message_id).only("pk", "conversation_id").first()
    return reply if reply is not None and _cancel_if_queued(message_id) else None


def _hand_back(
    worker_id: str, message_ids: list[int], stopped_ids: set[int]
) -> tuple[list[int], list[Message]]:
    with transaction.atomic():  # all or nothing: a retry after an error sees every reply again
        return _hand_back_now(worker_id, message_ids, stopped_ids)


def _hand_back_now(
    worker_id: str, message_ids: list[int], stopped_ids: set[int]
) -> tuple[list[int], list[Message]]:
    ours = Q(status=Message.Status.STREAMING, lease_owner=worker_id)
    now = timezone.now()
    cancelled = []
    for reply in Message.objects.filter(pk__in=stopped_ids.intersection(message_ids)).only(
        "pk", "conversation_id"
    ):
        if Message.objects.filter(ours | Q(status=Message.Status.PENDING), pk=reply.pk).update(
            status=Message.Status.CANCELLED, lease_owner="", lease_expires=None, completed=now
        ):
            cancelled.append(reply)
    back = [pk for pk in message_ids if pk not in stopped_ids]
    Message.objects.filter(ours, pk__in=back).update(
        status=Message.Status.PENDING, lease_owner="", lease_expires=None
    )
    pending = Message.objects.filter(pk__in=back, status=Message.Status.PENDING)
    return list(pending.values_list("pk", flat=True)), cancelled


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
