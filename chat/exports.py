"""Conversations as JSON Lines: one conversation per line, with all its messages."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Prefetch, QuerySet

from .models import Conversation, Message

CONVERSATION_FIELDS = ["id", "title", "model", "system_prompt", "created", "updated"]
MESSAGE_FIELDS = [
    "id",
    "role",
    "content",
    "reasoning",
    "tool_calls",
    "tool_call_id",
    "status",
    "finish_reason",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "time_to_first_token",
    "duration",
    "error",
    "created",
    "completed",
]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if hasattr(value, "hex") and not isinstance(value, (bytes, str)):
        return str(value)
    return value


def conversation_record(conversation: Conversation) -> dict[str, Any]:
    record = {name: _plain(getattr(conversation, name)) for name in CONVERSATION_FIELDS}
    record["owner"] = conversation.owner.get_username()
    record["messages"] = [
        {name: _plain(getattr(message, name)) for name in MESSAGE_FIELDS}
        for message in conversation.messages.all()
    ]
    return record


def with_messages(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    return conversations.select_related("owner").prefetch_related(
        Prefetch("messages", queryset=Message.objects.order_by("created", "id"))
    )


def jsonl_lines(conversations: Iterable[Conversation]) -> Iterator[str]:
    for conversation in conversations:
        yield json.dumps(conversation_record(conversation), ensure_ascii=False) + "\n"
