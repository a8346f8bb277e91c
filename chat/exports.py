"""Conversations as JSON Lines (one conversation per line, with all its messages) and as CSV
(one row per message), with every CSV cell safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Prefetch, QuerySet

from . import selectors
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
    "system_prompt",
    "prompt_tokens",
    "completion_tokens",
    "time_to_first_token",
    "duration",
    "error",
    "created",
    "completed",
    # The tree: which message this one follows, which version of its turn it is, and
    # whether it is the chosen version and on the path the user last had open.
    "parent_id",
    "version_number",
    "version_count",
    "selected",
    "on_active_path",
    "feedback",
    "feedback_comment",
]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def conversation_record(conversation: Conversation) -> dict[str, Any]:
    record = {name: _plain(getattr(conversation, name)) for name in CONVERSATION_FIELDS}
    record["owner"] = conversation.owner.get_username()
    record["messages"] = [
        {name: _plain(getattr(message, name)) for name in MESSAGE_FIELDS}
        for message in _messages(conversation)
    ]
    return record


def _messages(conversation: Conversation) -> list[Message]:
    """Every message, every version and branch, in the order they were made."""
    messages = list(conversation.messages.all())
    selectors.annotate_versions(messages)
    return messages


def with_messages(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    return conversations.select_related("owner").prefetch_related(
        Prefetch("messages", queryset=Message.objects.order_by("created", "id"))
    )


def jsonl_lines(conversations: Iterable[Conversation]) -> Iterator[str]:
    for conversation in conversations:
        yield json.dumps(conversation_record(conversation), ensure_ascii=False) + "\n"


CSV_COLUMNS = [
    "conversation_id",
    "conversation_title",
    "owner",
    *[f"message_{name}" if name == "id" else name for name in MESSAGE_FIELDS],
]
# A spreadsheet runs a cell starting with one of these as a formula (OWASP's list, plus the
# full-width forms some spreadsheets also accept), even after leading spaces; a tab or carriage
# return as the first character can start one too. The text comes from users and the model.
FORMULA_STARTS = ("=", "+", "-", "@", "＝", "＋", "－", "＠")


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell; text a spreadsheet would run as a formula gets a leading quote."""
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and (
        value[:1] in ("\t", "\r") or value.lstrip().startswith(FORMULA_STARTS)
    ):
        return "'" + value
    return value


class _Echo:
    """A file-like whose write hands the text back, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value


def csv_lines(conversations: Iterable[Conversation]) -> Iterator[str]:
    """A header, then one row per message; every cell, titles and usernames too, made safe."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for conversation in conversations:
        head = [conversation.pk, conversation.title, conversation.owner.get_username()]
        for message in _messages(conversation):
            values = [*head, *(getattr(message, name) for name in MESSAGE_FIELDS)]
            yield writer.writerow([csv_cell(value) for value in values])
