"""Fair limits per user: what one user may start, so that no user can hold up the others or
spend without bound. Checked by the services that start a reply or a conversation.

- concurrent replies: replies of the user's that are pending or streaming;
- messages a minute and conversations a minute: counters in the cache (shared through Redis
  when REDIS_URL is set, so they hold across processes);
- tokens a day: prompt and completion tokens of the user's replies since midnight, with those
  no reply of the day holds (`SpentTokens`): of conversations deleted since, of Continue on
  older replies, of titles, and the estimate for a pass whose usage never came.

Defaults come from settings (`CHAT_LIMIT_*`); a `UsageLimit` row for the user, or else for one
of their groups (the most generous), replaces any of them. 0 means no limit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import transaction
from django.db.models import (
    BigIntegerField,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.expressions import BaseExpression
from django.db.models.functions import Coalesce
from django.utils import timezone

from .compiled import CompiledQuery, CompiledUpdate
from .models import Conversation, Message, SpentTokens, UsageLimit


class LimitReached(Exception):
    """The user reached one of their limits; the message says which and until when."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Limits:
    concurrent_replies: int
    messages_per_minute: int
    tokens_per_day: int
    conversations_per_minute: int


FIELDS = ("concurrent_replies", "messages_per_minute", "tokens_per_day", "conversations_per_minute")


# The user's own row and their groups' (read for every reply and conversation started).
_USAGE_LIMITS = CompiledQuery(
    lambda user: UsageLimit.objects.filter(Q(user_id=user) | Q(group__user=user)),
    user=int,
)


def limits_for(user: AbstractBaseUser) -> Limits:
    values = {
        "concurrent_replies": settings.CHAT_LIMIT_CONCURRENT_REPLIES,
        "messages_per_minute": settings.CHAT_LIMIT_MESSAGES_PER_MINUTE,
        "tokens_per_day": settings.CHAT_LIMIT_TOKENS_PER_DAY,
        "conversations_per_minute": settings.CHAT_LIMIT_CONVERSATIONS_PER_MINUTE,
    }
    rows = _USAGE_LIMITS.instances(user=user.pk)
    own = [row for row in rows if row.user_id == user.pk]
    for name in FIELDS:
        mine = [getattr(row, name) for row in own if getattr(row, name) is not None]
        groups = [getattr(row, name) for row in rows if getattr(row, name) is not None]
        if mine:
            values[name] = mine[0]
        elif groups:  # the most generous of the user's groups (0 is no limit)
            values[name] = 0 if 0 in groups else max(groups)
    return Limits(**values)


def check_reply(user: AbstractBaseUser) -> None:
    """Before a new reply (a message, an edit, a regeneration, a continuation) is started.
    Call inside the transaction that starts it, with the user's row locked."""
    limits = limits_for(user)
    if limits.concurrent_replies:
        running = len(_RUNNING_REPLIES.rows(user=user.pk))
        if running >= limits.concurrent_replies:
            raise LimitReached(
                f"You have {_counted(running, 'reply', 'replies')} being written at once, "
                "the most you can. Wait for one to finish, or stop one."
            )
    if limits.tokens_per_day:
        spent = _tokens_spent_today(user.pk)
        if spent >= limits.tokens_per_day:
            raise LimitReached(
                f"You have used your {limits.tokens_per_day:,} tokens for today. "
                f"The limit starts again at midnight ({timezone.get_current_timezone_name()})."
            )
    _count(user, "messages", limits.messages_per_minute, ("message", "messages"))


def keep_tokens_of(conversation: Conversation) -> None:
    """Before `conversation` is deleted: what its replies spent today keeps counting toward
    its owner's tokens a day. Call inside the transaction that deletes it."""
    day, midnight = _today()
    used = (
        conversation.messages.replies()
        .filter(created__gte=midnight)
        .aggregate(spent=_tokens(Sum("prompt_tokens"), Sum("completion_tokens")))
    )
    if used["spent"]:
        _spend(conversation.owner_id, day, used["spent"])


def count_tokens_of_earlier_reply(*, owner_id: int, created: datetime, tokens: int) -> None:
    """A Continue on a reply made before today spent `tokens`: they count toward today's
    tokens, which count the replies made today (this one's row counts for its own day)."""
    day, midnight = _today()
    if tokens > 0 and created < midnight:
        with transaction.atomic():
            _spend(owner_id, day, tokens)


def count_tokens_today_outside_replies(*, owner_id: int, tokens: int) -> None:
    """Tokens spent today that no reply's row holds: a title's request, and the estimate for
    a pass whose usage the model server did not send (stopped, cut at the size limit, its
    stream cut): they count toward today's tokens. Inside a transaction, as part of it."""
    if tokens > 0:
        with transaction.atomic(savepoint=False):
            _spend(owner_id, _today()[0], tokens)


def estimated_tokens(characters: int) -> int:
    """Tokens for a text's length when the model server does not say: about four characters
    a token (English prose; code and other scripts take more tokens, so this errs low)."""
    return -(-characters // 4)


# Run for every new conversation's title (chat.titles): compiled once (chat.compiled).
_ADD_SPENT = CompiledUpdate[SpentTokens](
    lambda user, day, tokens: (
        SpentTokens.objects.filter(user_id=user, day=day),
        {"tokens": F("tokens") + tokens},
    ),
    user=int,
    day=date,
    tokens=int,
)


def _spend(user_id: int, day: date, tokens: int) -> None:
    """Add `tokens` to the user's `SpentTokens` of `day`. Call inside a transaction."""
    if _ADD_SPENT.execute(user=user_id, day=day, tokens=tokens):
        return  # one statement, once the day's row is there
    spent, _ = SpentTokens.objects.select_for_update().get_or_create(user_id=user_id, day=day)
    spent.tokens += tokens
    spent.save(update_fields=["tokens"])


def _tokens_spent_today(user_id: int) -> int:
    """The prompt and completion tokens of the user's replies made since midnight, and those
    spent today outside them (`SpentTokens`), in one statement."""
    day, midnight = _today()
    rows = _TOKENS_SPENT_TODAY.rows(user=user_id, midnight=midnight, day=day)
    return int(rows[0][0]) if rows else 0  # (no row: the user is gone)


# Both run for every reply started (`check_reply`): compiled once (chat.compiled), as building
# them cost Django several times what the database takes to answer. The running replies are
# read, not counted (a compiled query answers rows): a user has few, as their limit keeps it.
_RUNNING_REPLIES = CompiledQuery[Message](
    lambda user: (
        Message.objects.active()
        .replies()
        .filter(conversation__owner=user)
        .order_by()
        .values_list("pk")
    ),
    user=int,
)


def _spent_since(user: Any, midnight: Any, day: Any) -> QuerySet[Any, Any]:
    """One row: what `_tokens_spent_today` adds up. Its sums are taken in subqueries of the
    user's row, so that the row is there when nothing was spent today."""
    replies = (
        Message.objects.replies()
        .filter(conversation__owner=OuterRef("pk"), created__gte=midnight)
        .order_by()
        .values("conversation__owner")
        .annotate(spent=_tokens(Sum("prompt_tokens"), Sum("completion_tokens")))
        .values("spent")
    )
    outside = SpentTokens.objects.filter(user=OuterRef("pk"), day=day).values("tokens")[:1]
    return (
        get_user_model()
        ._base_manager.filter(pk=user)
        .annotate(spent=_tokens(Subquery(replies), Subquery(outside)))
        .values_list("spent")
    )


_TOKENS_SPENT_TODAY = CompiledQuery(_spent_since, user=int, midnight=datetime, day=date)


def _tokens(*counts: BaseExpression) -> ExpressionWrapper:
    """The sum of token counts (aggregates, or one row's count), none counting as 0."""
    terms = [Coalesce(count, 0) for count in counts]
    return ExpressionWrapper(sum(terms[1:], terms[0]), output_field=BigIntegerField())


def _today() -> tuple[date, datetime]:
    """Today's date and the midnight it began at, in the site's time zone, read at once."""
    now = timezone.localtime()
    return now.date(), now.replace(hour=0, minute=0, second=0, microsecond=0)


def check_conversation(user: AbstractBaseUser) -> None:
    """Before a new conversation is created."""
    _count(
        user,
        "conversations",
        limits_for(user).conversations_per_minute,
        ("new conversation", "new conversations"),
    )


def _count(user: AbstractBaseUser, kind: str, limit: int, what: tuple[str, str]) -> None:
    """Count one more `kind` in this minute; refuse it past `limit`."""
    if not limit:
        return
    minute = int(time.time() // 60)
    key = f"limits:{kind}:{user.pk}:{minute}"
    cache.add(key, 0, timeout=120)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=120)
        count = 1
    if count > limit:
        wait = 60 - int(time.time() % 60)
        raise LimitReached(
            f"You can send {_counted(limit, *what)} a minute. "
            f"Try again in {_counted(wait, 'second', 'seconds')}."
        )


def _counted(n: int, one: str, many: str) -> str:
    """A count and its noun: "1 reply", "3 replies"."""
    return f"{n:,} {one if n == 1 else many}"
