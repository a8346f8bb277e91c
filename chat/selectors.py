"""Reads: what a user may see, and what the model is sent."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from .models import Conversation, Message


def conversation_list_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner_id=user.pk).order_by("-updated")


def conversation_for_user(
    *, user: AbstractBaseUser | AnonymousUser, conversation_id: uuid.UUID
) -> Conversation | None:
    return conversation_list_for_user(user=user).filter(pk=conversation_id).first()


async def aconversation_for_user(
    *, user: AbstractBaseUser | AnonymousUser, conversation_id: uuid.UUID
) -> Conversation | None:
    if not user.is_authenticated:
        return None
    return await conversation_list_for_user(user=user).filter(pk=conversation_id).afirst()


def annotate_versions(messages: Iterable[Message]) -> list[Message]:
    """Set on every message its place among the versions of its turn (`version_number`,
    `version_ids`) and whether it is on the active path; return the active path: from the
    first turn on, the version the user chose of each (the last made, if none is chosen)."""
    children: dict[int | None, list[Message]] = defaultdict(list)
    for message in sorted(messages, key=lambda m: (m.created, m.pk)):
        message.on_active_path = False
        children[message.parent_id].append(message)
    for versions in children.values():
        ids = tuple(m.pk for m in versions)
        for number, message in enumerate(versions, 1):
            message.version_ids, message.version_number = ids, number
    path: list[Message] = []
    parent: int | None = None
    while choices := children.get(parent):
        chosen = next((m for m in reversed(choices) if m.selected), choices[-1])
        chosen.on_active_path = True
        path.append(chosen)
        parent = chosen.pk
    return path


def reading_order(*, conversation: Conversation) -> list[Message]:
    """Every message, every version and branch, for review: each version of a turn followed
    by what came after it, the versions of a turn in the order they were made."""
    messages = list(conversation.messages.exclude(role=Message.Role.SYSTEM))
    annotate_versions(messages)
    children: dict[int | None, list[Message]] = defaultdict(list)
    for message in sorted(messages, key=lambda m: (m.created, m.pk)):
        children[message.parent_id].append(message)
    ordered: list[Message] = []
    pending = list(reversed(children.get(None, [])))
    while pending:  # depth first, without recursion (a conversation can be long)
        message = pending.pop()
        ordered.append(message)
        pending.extend(reversed(children.get(message.pk, [])))
    return ordered


def with_versions(*, message: Message) -> Message:
    """One message with its place among the versions of its turn, for its switcher."""
    ids = tuple(
        Message.objects.filter(conversation_id=message.conversation_id, parent_id=message.parent_id)
        .order_by("created", "id")
        .values_list("pk", flat=True)
    )
    message.version_ids = ids
    message.version_number = ids.index(message.pk) + 1 if message.pk in ids else 1
    return message


def active_path(*, conversation: Conversation) -> list[Message]:
    """The messages the conversation shows, with their places among their versions."""
    return annotate_versions(conversation.messages.exclude(role=Message.Role.SYSTEM))


def path_to(*, message: Message) -> list[Message]:
    """The messages before `message` on its branch, the first turn first."""
    by_id = {m.pk: m for m in message.conversation.messages.all()}
    path: list[Message] = []
    parent_id = message.parent_id
    while parent_id is not None and parent_id in by_id:
        path.append(by_id[parent_id])
        parent_id = by_id[parent_id].parent_id
    path.reverse()
    return path


def active_reply(*, conversation: Conversation) -> Message | None:
    return conversation.messages.replies().active().order_by("id").first()


async def active_reply_ids(*, conversation_id: uuid.UUID) -> list[int]:
    return [
        pk
        async for pk in Message.objects.filter(conversation_id=conversation_id)
        .replies()
        .active()
        .values_list("pk", flat=True)
    ]


async def amessage_in_conversation(
    *, conversation_id: uuid.UUID, message_id: int
) -> Message | None:
    return await Message.objects.filter(conversation_id=conversation_id, pk=message_id).afirst()


def model_messages(*, conversation: Conversation, before: Message) -> list[dict[str, Any]]:
    """The system prompt and the turns on the branch that leads to `before` (never another
    branch's), in the shape the chat completions API takes. A reply is generated with the
    system prompt it was made with."""
    messages: list[dict[str, Any]] = []
    system_prompt = (
        before.system_prompt
        if before.role == Message.Role.ASSISTANT
        else conversation.system_prompt
    )
    if system_prompt.strip():
        messages.append({"role": "system", "content": system_prompt})
    for message in path_to(message=before):
        if message.role == Message.Role.USER:
            messages.append({"role": "user", "content": message.content})
        elif message.role == Message.Role.ASSISTANT:
            entry: dict[str, Any] = {"role": "assistant", "content": message.content or None}
            if message.tool_calls:
                entry["tool_calls"] = [
                    {
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["name"], "arguments": call["arguments"]},
                    }
                    for call in message.tool_calls
                ]
            elif not message.content:
                continue  # an empty failed reply tells the model nothing
            messages.append(entry)
        elif message.role == Message.Role.TOOL:
            messages.append(
                {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
            )
    return messages
