"""Conversation titles written by the model after the first exchange, in the background."""

from __future__ import annotations

import asyncio
import logging
import uuid

from . import events
from .models import Conversation, Message
from .upstream import chat_completions_client

logger = logging.getLogger(__name__)

TITLE_PROMPT = (
    "Write a short title (at most six words) for the conversation below. "
    "Answer with the title only: no quotes, no punctuation at the end."
)
TITLE_TIMEOUT_SECONDS = 30
MAX_TITLE_LENGTH = 80

_background: set[asyncio.Task[None]] = set()


def title_generate_soon(conversation_id: uuid.UUID) -> None:
    """Start title generation without waiting for it (it must never delay a reply)."""
    task = asyncio.create_task(title_generate(conversation_id))
    _background.add(task)
    task.add_done_callback(_background.discard)


def clean_title(text: str) -> str:
    line = next((line for line in text.strip().splitlines() if line.strip()), "")
    line = line.strip().strip("\"'`*#").strip().rstrip(".")
    if line.lower().startswith("title:"):
        line = line[6:].strip()
    return line[:MAX_TITLE_LENGTH]


async def title_generate(conversation_id: uuid.UUID) -> None:
    """Ask the model for a title; keep the first words if it fails or the user renamed."""
    try:
        conversation = await Conversation.objects.aget(pk=conversation_id)
        if conversation.title_source != Conversation.TitleSource.WORDS:
            return
        turns = [
            m
            async for m in conversation.messages.filter(
                role__in=[Message.Role.USER, Message.Role.ASSISTANT]
            ).order_by("id")[:2]
        ]
        transcript = "\n".join(f"{m.role.capitalize()}: {m.content[:2000]}" for m in turns)
        stream = chat_completions_client().stream(
            {
                "model": conversation.model,
                "messages": [
                    {"role": "system", "content": TITLE_PROMPT},
                    {"role": "user", "content": transcript},
                ],
                "max_tokens": 24,
            }
        )
        async with asyncio.timeout(TITLE_TIMEOUT_SECONDS):
            async for _ in stream:
                pass
        title = clean_title(stream.completion.content)
        if not title:
            return
        updated = await Conversation.objects.filter(
            pk=conversation_id, title_source=Conversation.TitleSource.WORDS
        ).aupdate(title=title, title_source=Conversation.TitleSource.MODEL)
        if updated:
            await events.conversation_updated(conversation_id)
    except Exception as exc:  # a title is a nicety: never let it break anything
        logger.info("no title for conversation %s: %s", conversation_id, exc)
