"""Reads: what a user may see, and what the model is sent."""

from __future__ import annotations

import uuid
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


def message_list(*, conversation: Conversation) -> QuerySet[Message]:
    return conversation.messages.exclude(role=Message.Role.SYSTEM).order_by("created", "id")


def active_reply(*, conversation: Conversation) -> Message | None:
    return (
        conversation.messages.filter(
            role=Message.Role.ASSISTANT,
            status__in=[Message.Status.PENDING, Message.Status.STREAMING],
        )
        .order_by("id")
        .first()
    )


async def active_reply_ids(*, conversation_id: uuid.UUID) -> list[int]:
    return [
        pk
        async for pk in Message.objects.filter(
            conversation_id=conversation_id,
            role=Message.Role.ASSISTANT,
            status__in=[Message.Status.PENDING, Message.Status.STREAMING],
        ).values_list("pk", flat=True)
    ]


async def amessage_in_conversation(
    *, conversation_id: uuid.UUID, message_id: int
) -> Message | None:
    return await Message.objects.filter(conversation_id=conversation_id, pk=message_id).afirst()


def model_messages(*, conversation: Conversation, before: Message) -> list[dict[str, Any]]:
    """The system prompt and every earlier turn, in the shape the chat completions API takes."""
    messages: list[dict[str, Any]] = []
    if conversation.system_prompt.strip():
        messages.append({"role": "system", "content": conversation.system_prompt})
    for message in conversation.messages.filter(id__lt=before.id).order_by("created", "id"):
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
