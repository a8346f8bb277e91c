"""Conversation titles written by the model after the first exchange, in the background."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import DatabaseError, transaction
from django.db.models import Q

from . import events, fragments, limits
from .compiled import CompiledQuery, CompiledUpdate
from .models import Conversation, Message
from .streaming.completion import Completion
from .streaming.upstream import chat_completions_client

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


QUOTES = "\"'“”‘’«»„"
_HEADING_OR_BULLET = re.compile(r"^(?:#+\s+|[-•>]\s+)")
_TITLE_LABEL = re.compile(r"^title\s*:\s*", re.IGNORECASE)


def without_marks(text: str) -> str:
    """Text as a title shows it: without markdown's marks (bold's and italics' stars, code's
    backticks, a heading's, a bullet's or a quote's marker at its start), which a title shows
    as they are ("Explain **markdown** tables")."""
    return _HEADING_OR_BULLET.sub("", text.replace("*", "").replace("`", "").lstrip())


# Chinese and Japanese text puts no blanks between its words: there a character counts as
# half a word, and a title of its first words ends at a clause's end where one is near
_UNSPACED = "\u2e80-\u303e\u3041-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_TITLE_WORD = re.compile(f"([{_UNSPACED}])|[^\\s{_UNSPACED}]+")
_CLAUSE_END = re.compile("[\u3001\u3002\uff0c\uff1a\uff1b\uff01\uff1f]")


def first_words(text: str, words: int, most: int) -> str:
    """A title of the first `words` words of `text` (its blanks collapsed), at most `most`
    characters, and "…" if there is more."""
    text = " ".join(text.split())
    end, halves = 0, 2 * words
    for word in _TITLE_WORD.finditer(text):
        halves -= 1 if word.group(1) else 2
        if halves < 0:
            break
        end = word.end()
    title = text[:end][:most]
    if len(title) < len(text):
        clauses = [clause.start() for clause in _CLAUSE_END.finditer(title)]
        if clauses and clauses[-1] >= len(title) // 3:
            title = title[: clauses[-1]]  # (at a clause's end: "请帮我写一个脚本，用来…")
        title += "\u2026"
    return title


def clean_title(text: str) -> str:
    """The title in a model's answer: its first line without quotes, markdown markers, a
    "Title:" label, a final period or NUL characters (PostgreSQL refuses those), whitespace
    collapsed, at most MAX_TITLE_LENGTH chars."""
    text = text.replace("\0", "")
    line = next((line for line in text.splitlines() if line.strip()), "")
    line = _TITLE_LABEL.sub("", without_marks(" ".join(line.split())))
    while True:  # quotes and periods can wrap each other: "Title." or "Title".
        stripped = line.strip(QUOTES + " ").rstrip(".…").strip()
        if stripped == line:
            break
        line = stripped
    if len(line) > MAX_TITLE_LENGTH:
        cut = line[: MAX_TITLE_LENGTH + 1]
        line = (cut.rsplit(" ", 1)[0] if " " in cut else cut[:MAX_TITLE_LENGTH]).rstrip(" ,;:-.")
    return line


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def title_improves(*, generated: str, current: str) -> bool:
    """Whether a generated title is worth replacing the current one (the first words of the
    conversation): not if it is those words again, or their start, in other capitals."""
    new = _words(generated)
    if not new:
        return False
    return _words(current)[: len(new)] != new


@database_sync_to_async
def _title_request(conversation_id: uuid.UUID) -> tuple[Conversation, str] | None:
    """The conversation and the transcript its title is asked for, read in one trip to the
    database; None if its title is not the first words any more."""
    found = _CONVERSATION.instances(pk=conversation_id)
    if not found:
        raise Conversation.DoesNotExist(conversation_id)
    conversation = found[0]
    if conversation.title_source != Conversation.TitleSource.WORDS:
        return None
    transcript = "\n".join(
        f"{role.capitalize()}: {content[:2000]}"
        for role, content in _FIRST_TURNS.rows(conversation=conversation_id)
    )
    return conversation, transcript


def _tokens_spent(transcript: str, completion: Completion) -> int:
    """What the title's request spent: its usage, or an estimate if the server sent none."""
    usage = completion.usage
    if usage is not None:
        return (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)
    return limits.estimated_tokens(len(TITLE_PROMPT) + len(transcript) + completion.size)


@sync_to_async
def _title_saved(conversation: Conversation, *, title: str, source: str, tokens: int) -> bool:
    """What the title's request spent counted toward the owner's tokens a day, and `title`
    saved if the conversation's is still the first words it was asked for (whether it was):
    one trip to the database, in one transaction."""
    with transaction.atomic():
        limits.count_tokens_today_outside_replies(owner_id=conversation.owner_id, tokens=tokens)
        try:
            with transaction.atomic():  # a title that fails to save keeps the count
                return bool(
                    _RETITLE.execute(
                        pk=conversation.pk, old=conversation.title, new=title, source=source
                    )
                )
        except DatabaseError as exc:
            logger.info("no title for conversation %s: %s", conversation.pk, exc)
            return False


# Read and written for every new conversation's title: compiled once (chat.compiled). The title
# is replaced only if it is still the first words it was asked for.
_RETITLE = CompiledUpdate[Conversation](
    lambda pk, old, new, source: (
        Conversation.objects.filter(pk=pk, title_source=Conversation.TitleSource.WORDS, title=old),
        {"title": new, "title_source": source},
    ),
    pk=uuid.UUID,
    old=str,
    new=str,
    source=str,
)
_CONVERSATION = CompiledQuery(
    lambda pk: Conversation.objects.filter(pk=pk).order_by()[:1], pk=uuid.UUID
)
# The first question and its answer as the conversation shows them: the chosen version of the
# first message (edits of it are its siblings) and the chosen reply under it, not a branch the
# user left (older conversations begin with a system message).
_FIRST_TURNS = CompiledQuery[Message](
    lambda conversation: (
        Message.objects.filter(
            conversation_id=conversation,
            role__in=[Message.Role.USER, Message.Role.ASSISTANT],
            selected=True,
        )
        .filter(
            Q(parent__isnull=True)
            | Q(parent__role=Message.Role.SYSTEM)
            | Q(parent__selected=True, parent__parent__isnull=True)
            | Q(parent__selected=True, parent__parent__role=Message.Role.SYSTEM)
        )
        .order_by("id")
        .values_list("role", "content")[:2]
    ),
    conversation=uuid.UUID,
)


async def title_generate(conversation_id: uuid.UUID) -> None:
    """Ask the model for a title, once a conversation: keep the first words if its title is
    no better, or if the user renamed the conversation meanwhile. (If it fails, the next reply
    asks again.) What the request spends counts toward the owner's tokens a day."""
    try:
        asked = await _title_request(conversation_id)
        if asked is None:
            return
        conversation, transcript = asked
        stream = chat_completions_client().stream(
            {
                "model": conversation.model,
                "messages": [
                    {"role": "system", "content": TITLE_PROMPT},
                    {"role": "user", "content": transcript},
                ],
                "max_tokens": 24,
                "stream_options": {"include_usage": True},
            }
        )
        try:
            async with asyncio.timeout(TITLE_TIMEOUT_SECONDS):
                async for _ in stream:
                    pass
        except BaseException:
            if stream.accepted:  # spent, whether it ended or not
                await sync_to_async(limits.count_tokens_today_outside_replies)(
                    owner_id=conversation.owner_id,
                    tokens=_tokens_spent(transcript, stream.completion),
                )
            raise
        title = clean_title(stream.completion.content)
        if title_improves(generated=title, current=conversation.title):
            source = Conversation.TitleSource.MODEL
        else:  # the first words stay; asked once, not again after every reply
            title, source = conversation.title, Conversation.TitleSource.ASKED
        spent = _tokens_spent(transcript, stream.completion) if stream.accepted else 0
        updated = await _title_saved(conversation, title=title, source=source, tokens=spent)
        if updated and source == Conversation.TitleSource.MODEL:
            conversation.title = title
            # Drawn once here for every tab (they would each read the conversation again).
            await events.conversation_updated(
                conversation_id, html=fragments.conversation_title(conversation)
            )
    except Exception as exc:  # a title is a nicety: never let it break anything
        logger.info("no title for conversation %s: %s", conversation_id, exc)
