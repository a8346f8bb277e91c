"""Reads: what a user may see, and what the model is sent."""

from __future__ import annotations

import functools
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple
from urllib.parse import urlencode

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import connection
from django.db.models import Exists, Func, OuterRef, Q, QuerySet, TextField
from django.utils import timezone

from .compiled import CompiledQuery
from .models import ACTIVE_STATUSES, Conversation, Message

SIDEBAR_PAGE_SIZE = 50
# A list drawn again keeps the conversations the tab had loaded ("Show more"), up to this many
# of each kind (pinned, the others): a redraw of the first page alone shrank a list scrolled
# down, and it jumped.
SIDEBAR_MOST_SHOWN = 10 * SIDEBAR_PAGE_SIZE
# A search's words are read up to here (a contains query costs the text times the pattern).
MAX_SEARCH_CHARS = 200
# The account `manage.py ensure_demo_user` makes for a local demo (`scripts/run`).
DEMO_USERNAME = DEMO_PASSWORD = "demo"
_demo_password_checked: dict[str, bool] = {}


def conversation_list_for_user(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner_id=user.pk).order_by("-updated")


class ConversationLink(NamedTuple):
    """What the sidebar shows of a conversation (read without making a model instance, which
    costs more than the row)."""

    pk: uuid.UUID
    title: str
    updated: datetime
    archived: bool = False  # marked so in search results, which find archived ones too


@dataclass
class SidebarPage:
    """A page of the sidebar's conversation list: each conversation with the heading of the
    group it starts ("" when it continues the group above it), and where the next page starts.
    """

    entries: list[tuple[str, ConversationLink]] = field(default_factory=list)
    query: str = ""
    archived: bool = False
    current: uuid.UUID | None = None
    first: bool = True
    next_cursor: str = ""
    last_group: str = ""

    @property
    def next_params(self) -> str:
        """The query string of the next page."""
        params = {"cursor": self.next_cursor, "group": self.last_group, "q": self.query}
        if self.archived:
            params["archived"] = "1"
        if self.current:
            params["current"] = str(self.current)
        return urlencode({k: v for k, v in params.items() if v})


def group_starts(today: date) -> list[tuple[datetime, str]]:
    """When each of the sidebar's day groups starts, latest first: a conversation last active
    at a time not before one start is in that group (Today, also for a day after `today`;
    Yesterday; Previous 7 days), else in Older. (Comparing times costs less than finding each
    one's local day.)"""
    zone = timezone.get_current_timezone()
    return [
        (datetime.combine(day, time.min, tzinfo=zone), group)
        for day, group in (
            (today, "Today"),
            (today - timedelta(days=1), "Yesterday"),
            (today - timedelta(days=7), "Previous 7 days"),
        )
    ]


class Casefold(Func):
    """A text casefolded (`str.casefold`: "Straße" and "STRASSE" alike), on SQLite."""

    function = "chat_casefold"
    output_field = TextField()


def sqlite_functions(sender: Any, connection: Any = None, **kwargs: Any) -> None:
    """`connection_created` receiver: SQLite's connections learn `Casefold`."""
    if connection is not None and connection.vendor == "sqlite":
        connection.connection.create_function(Casefold.function, 1, _casefold, deterministic=True)


def _casefold(text: str | None) -> str | None:
    return None if text is None else text.casefold()


def conversation_search(
    conversations: QuerySet[Conversation], *, query: str
) -> QuerySet[Conversation]:
    """The conversations whose title or messages match `query`: on PostgreSQL a full-text
    search (every word, as a prefix of a word, so it finds as you type), elsewhere a
    contains ignoring case."""
    said = Message.objects.filter(
        conversation=OuterRef("pk"), role__in=[Message.Role.USER, Message.Role.ASSISTANT]
    )
    if connection.vendor != "postgresql":
        # SQLite's LIKE ignores the case of ASCII letters only: both sides casefolded.
        folded = query.casefold()
        return conversations.alias(folded_title=Casefold("title")).filter(
            Q(folded_title__contains=folded)
            | Exists(said.alias(folded=Casefold("content")).filter(folded__contains=folded))
        )
    from django.contrib.postgres.search import SearchQuery, SearchVector

    words = re.findall(r"\w+", query)
    if not words:
        return conversations.none()
    # Each word is only letters and digits, so this tsquery cannot be malformed.
    search = SearchQuery(
        " & ".join(f"{word}:*" for word in words), search_type="raw", config="simple"
    )
    return conversations.annotate(title_document=SearchVector("title", config="simple")).filter(
        Q(title_document=search)
        | Exists(
            said.annotate(document=SearchVector("content", config="simple")).filter(document=search)
        )
    )


def conversation_sidebar_page(
    *,
    user: AbstractBaseUser | AnonymousUser,
    query: str = "",
    archived: bool = False,
    cursor: str = "",
    last_group: str = "",
    current: uuid.UUID | None = None,
    shown: int = 0,
    today: date | None = None,
) -> SidebarPage:
    """A page of the user's conversations for the sidebar, newest first: pinned ones first
    (paged like the rest: the others start on the page where they end), then by the day they
    were last active (Today, Yesterday, Previous 7 days, Older). Archived conversations are
    listed only when `archived`; a search finds every conversation, archived or not. A page
    holds SIDEBAR_PAGE_SIZE of each kind (pinned, the others), or, for a tab that draws its
    list again, as many as it `shown` (the pinned ones, then the rest), up to
    SIDEBAR_MOST_SHOWN of each."""
    today = today or timezone.localdate()
    page = SidebarPage(
        query=query[:MAX_SEARCH_CHARS].strip(), archived=archived, current=current, first=not cursor
    )
    pinned: list[ConversationLink] = []
    pinned_after = cursor.removeprefix(PINNED_CURSOR) if cursor.startswith(PINNED_CURSOR) else ""
    if not page.query and not archived and (page.first or pinned_after):
        # Pinned ones come first, paged like the rest; the others start on the page where the
        # pinned ones end.
        size = _page_size(shown)
        if pinned_after:
            pinned = _links(_after_cursor(_pinned(user.pk), pinned_after)[: size + 1])
        else:
            pinned = _link_rows(_SIDEBAR_PINNED, owner=user.pk)
            if len(pinned) > SIDEBAR_PAGE_SIZE and size > SIDEBAR_PAGE_SIZE:
                pinned = _links(_pinned(user.pk)[: size + 1])
        if len(pinned) > size:
            pinned = pinned[:size]
            page.entries = _pinned_entries(pinned, first=page.first)
            page.last_group = "Pinned"
            page.next_cursor = PINNED_CURSOR + _cursor_of(pinned[-1])
            return page
        cursor = ""
    size = _page_size(shown - len(pinned))  # (the pinned ones shown, the rest of it)
    usual = size == SIDEBAR_PAGE_SIZE  # (the page every page load asks for: compiled)
    if page.query or cursor or not usual:
        conversations = conversation_list_for_user(user=user)
        if page.query:
            conversations = conversation_search(conversations, query=page.query)
        else:
            conversations = conversations.filter(archived=archived)
            if not archived:
                conversations = conversations.filter(pinned=False)
        conversations = conversations.order_by("-updated", "-pk")
        if cursor:
            conversations = _after_cursor(conversations, cursor)
        found = _links(conversations[: size + 1])
    else:  # the first page, as every page load asks for it: the same query, compiled once
        found = _link_rows(_SIDEBAR_FIRST[archived], owner=user.pk)
    page.entries = _pinned_entries(pinned, first=page.first)
    group = last_group
    starts = group_starts(today)
    for conversation in found[:size]:
        this = "Older"
        for start, name in starts:  # (a loop, not a generator per entry: fifty a page)
            if conversation.updated >= start:
                this = name
                break
        page.entries.append((this if this != group else "", conversation))
        group = this
    page.last_group = group
    if len(found) > size:
        page.next_cursor = _cursor_of(found[size - 1])
    return page


# A cursor inside the pinned conversations (a page's cursor is the last one it lists).
PINNED_CURSOR = "pinned:"


def _page_size(shown: int) -> int:
    """How many of a kind a page lists, for a tab that showed `shown` of them."""
    return min(max(shown, SIDEBAR_PAGE_SIZE), SIDEBAR_MOST_SHOWN)


def _cursor_of(conversation: ConversationLink) -> str:
    return f"{conversation.updated.isoformat()}~{conversation.pk}"


def _after_cursor(conversations: QuerySet[Conversation], cursor: str) -> QuerySet[Conversation]:
    """The conversations listed after `cursor` (ordered newest first); none for a cursor that
    is not one."""
    updated, _, pk = cursor.partition("~")
    try:
        when, after = datetime.fromisoformat(updated), uuid.UUID(pk)
        if timezone.is_naive(when):
            raise ValueError(updated)
        when = when.astimezone(UTC)  # out of range here, not in the query
    except (ValueError, OverflowError):
        return conversations.none()
    return conversations.filter(Q(updated__lt=when) | Q(updated=when, pk__lt=after))


def _pinned(owner: int | None) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner_id=owner, archived=False, pinned=True).order_by(
        "-updated", "-pk"
    )


def _pinned_entries(
    pinned: list[ConversationLink], *, first: bool
) -> list[tuple[str, ConversationLink]]:
    return [("Pinned" if i == 0 and first else "", c) for i, c in enumerate(pinned)]


def _links(conversations: QuerySet[Conversation]) -> list[ConversationLink]:
    return [ConversationLink(*row) for row in conversations.values_list(*ConversationLink._fields)]


def _link_rows(query: CompiledQuery[Conversation], *, owner: int | None) -> list[ConversationLink]:
    if owner is None:
        return []
    return [ConversationLink(*row) for row in query.rows(owner=owner)]


def _sidebar_first(*, archived: bool) -> CompiledQuery[Conversation]:
    """The first page of the list without a search (pinned ones aside, unless archived): what
    `conversation_sidebar_page` builds for a page after a cursor, without one."""

    def build(owner: int) -> QuerySet[Conversation]:
        conversations = Conversation.objects.filter(owner_id=owner, archived=archived)
        if not archived:
            conversations = conversations.filter(pinned=False)
        return conversations.order_by("-updated", "-pk").values_list(*ConversationLink._fields)[
            : SIDEBAR_PAGE_SIZE + 1
        ]

    return CompiledQuery(build, owner=int)


_SIDEBAR_FIRST = {archived: _sidebar_first(archived=archived) for archived in (False, True)}
_SIDEBAR_PINNED = CompiledQuery(
    lambda owner: _pinned(owner).values_list(*ConversationLink._fields)[: SIDEBAR_PAGE_SIZE + 1],
    owner=int,
)
_CONVERSATION_FOR_USER = CompiledQuery(
    lambda owner, pk: Conversation.objects.filter(owner_id=owner, pk=pk).order_by()[:1],
    owner=int,
    pk=uuid.UUID,
)


def conversation_for_user(
    *, user: AbstractBaseUser | AnonymousUser, conversation_id: uuid.UUID
) -> Conversation | None:
    if user.pk is None:
        return None
    found = _CONVERSATION_FOR_USER.instances(owner=user.pk, pk=conversation_id)
    conversation = found[0] if found else None
    if conversation is not None and isinstance(user, User):
        conversation.owner = user  # the owner, as the query says: not read again for limits
    return conversation


async def aconversation_for_user(
    *, user: AbstractBaseUser | AnonymousUser, conversation_id: uuid.UUID
) -> Conversation | None:
    """Read in a trip to a thread that also closes stale database connections, before and
    after, as Channels does before each socket event: a socket's opening needs no trip of its
    own for that (chat.consumers)."""
    if not user.is_authenticated or user.pk is None:
        return None
    found = await database_sync_to_async(_CONVERSATION_FOR_USER.instances)(
        owner=user.pk, pk=conversation_id
    )
    return found[0] if found else None


class MessageNode:
    """What the tree query reads of a message (`message_tree`): its place in the tree, and
    what tells whether its article changed (chat.article_cache). Read without making a model
    instance, which costs more than the row."""

    FIELDS = (
        "pk",
        "parent_id",
        "selected",
        "created",
        "role",
        "status",
        "completed",
        "feedback",
        "feedback_comment",
    )
    __slots__ = (*FIELDS, "on_active_path", "version_ids", "version_number")
    pk: int
    parent_id: int | None
    selected: bool
    created: datetime
    role: str
    status: str
    completed: datetime | None
    feedback: str
    feedback_comment: str
    on_active_path: bool
    version_ids: tuple[int, ...]
    version_number: int

    def __init__(self, *values: Any) -> None:
        for name, value in zip(self.FIELDS, values, strict=True):
            setattr(self, name, value)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def version_count(self) -> int:
        return max(len(self.version_ids), 1)


def message_tree(*, conversation: Conversation) -> list[MessageNode]:
    """Every message of the conversation but the system's, without the texts."""
    return [MessageNode(*row) for row in _MESSAGE_TREE.rows(conversation=conversation.pk)]


_MESSAGE_TREE = CompiledQuery(
    lambda conversation: (
        Message.objects.filter(conversation_id=conversation)
        .exclude(role=Message.Role.SYSTEM)
        .order_by("created", "id")
        .values_list(*MessageNode.FIELDS)
    ),
    conversation=uuid.UUID,
)
_TURN_TREE = CompiledQuery(
    lambda conversation: (
        Message.objects.filter(conversation_id=conversation)
        .order_by("created", "id")
        .values_list(*MessageNode.FIELDS, "idempotency_key")
    ),
    conversation=uuid.UUID,
)


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


class VersionPlace(NamedTuple):
    number: int  # of its turn's versions, in the order they were made
    versions: int  # how many its turn has
    shown: bool  # on the active path: the page shows it


def version_places(*, conversation_id: uuid.UUID) -> dict[int, VersionPlace]:
    """Each message's place among the versions of its turn (a Regenerate, an edit) and whether
    the page shows it, read in one query: for review, where messages are listed by time."""
    messages = list(
        Message.objects.filter(conversation_id=conversation_id)
        .exclude(role=Message.Role.SYSTEM)
        .only("pk", "parent_id", "created", "selected")
    )
    annotate_versions(messages)
    return {
        m.pk: VersionPlace(m.version_number, len(m.version_ids), m.on_active_path) for m in messages
    }


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


class TurnState(NamedTuple):
    """What a new turn must know of its conversation, found in one read of the message tree."""

    busy: bool  # a reply is still being generated
    leaf_id: int | None  # the last message shown: where the turn goes
    submitted: bool  # a message was sent with this idempotency key already


def turn_state(*, conversation: Conversation, idempotency_key: uuid.UUID | None) -> TurnState:
    rows = _TURN_TREE.rows(conversation=conversation.pk)
    shown: list[Any] = []
    busy = submitted = False
    for *fields, key in rows:
        node = MessageNode(*fields)
        busy = busy or node.is_active
        submitted = submitted or (key is not None and key == idempotency_key)
        if node.role != Message.Role.SYSTEM:
            shown.append(node)
    path = annotate_versions(shown)
    return TurnState(busy, path[-1].pk if path else None, submitted)


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


def path_to(*, message: Message, fields: tuple[str, ...] = ()) -> list[Message]:
    """The messages before `message` on its branch, the first turn first. (The tree is read
    without the texts; only the path's messages are read, whole or with `fields` only.)"""
    parents = dict(_MESSAGE_PARENTS.rows(conversation=message.conversation_id))
    ids: list[int] = []
    parent_id = message.parent_id
    while parent_id is not None and parent_id in parents:
        ids.append(parent_id)
        parent_id = parents[parent_id]
    if not ids:
        return []
    if len(ids) <= _COMPILED_PATH_LENGTH:
        found = _path_messages(len(ids), fields).instances(
            **{f"id{i}": pk for i, pk in enumerate(ids)}
        )
        by_id = {message.pk: message for message in found}
    else:
        messages = Message.objects.only(*fields) if fields else Message.objects.all()
        by_id = messages.in_bulk(ids)
    return [by_id[pk] for pk in reversed(ids) if pk in by_id]


# A branch up to this long is read by a query compiled once per length (and fields): a reply's
# model messages are read for every reply.
_COMPILED_PATH_LENGTH = 40


@functools.lru_cache(maxsize=4 * _COMPILED_PATH_LENGTH)
def _path_messages(count: int, fields: tuple[str, ...]) -> CompiledQuery[Message]:
    def build(**ids: int) -> QuerySet[Message]:
        messages = Message.objects.only(*fields) if fields else Message.objects.all()
        return messages.filter(pk__in=list(ids.values())).order_by()

    return CompiledQuery(build, **{f"id{i}": int for i in range(count)})


_MESSAGE_PARENTS = CompiledQuery[Message](
    lambda conversation: (
        Message.objects.filter(conversation_id=conversation)
        .order_by()
        .values_list("pk", "parent_id")
    ),
    conversation=uuid.UUID,
)


# What `model_messages` reads of each earlier message: not its rendered HTML, the largest field.
MODEL_MESSAGE_FIELDS = ("role", "content", "tool_calls", "tool_call_id")


async def active_reply_ids(*, conversation_id: uuid.UUID) -> list[int]:
    return [pk for (pk,) in await _ACTIVE_REPLY_IDS.arows(conversation=conversation_id)]


_ACTIVE_REPLY_IDS = CompiledQuery[Message](
    lambda conversation: (
        Message.objects.filter(conversation_id=conversation).replies().active().values_list("pk")
    ),
    conversation=uuid.UUID,
)


async def amessage_in_conversation(
    *, conversation_id: uuid.UUID, message_id: int
) -> Message | None:
    return await Message.objects.filter(conversation_id=conversation_id, pk=message_id).afirst()


def model_messages(
    *, conversation: Conversation, before: Message, then: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The system prompt and the turns on the branch that leads to `before` (never another
    branch's), in the shape the chat completions API takes, then `then` (a Continue's reply so
    far and its request, part of the last turn). A reply is generated with the system prompt
    it was made with. The oldest turns are left out past CHAT_MAX_PROMPT_CHARS."""
    messages: list[dict[str, Any]] = []
    system_prompt = (
        before.system_prompt
        if before.role == Message.Role.ASSISTANT
        else conversation.system_prompt
    )
    if system_prompt.strip():
        messages.append({"role": "system", "content": system_prompt})
    path = path_to(message=before, fields=MODEL_MESSAGE_FIELDS)
    for index, message in enumerate(path):
        if message.role == Message.Role.USER:
            messages.append({"role": "user", "content": message.content})
        elif message.role == Message.Role.ASSISTANT:
            entry: dict[str, Any] = {"role": "assistant", "content": message.content or None}
            # A call is sent only with its result, which follows the reply: a reply whose tool
            # round was never saved (refused, or its worker lost between the final save's
            # fields) keeps calls that nothing answered, and the servers refuse an assistant
            # message whose calls are not each answered.
            calls = message.tool_calls or []
            if calls:
                answered = {m.tool_call_id for m in _tool_results(path, index + 1)}
                calls = [call for call in calls if call["id"] in answered]
            if calls:
                entry["tool_calls"] = [
                    {
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["name"], "arguments": call["arguments"]},
                    }
                    for call in calls
                ]
            elif not message.content:
                continue  # an empty failed reply tells the model nothing
            messages.append(entry)
        elif message.role == Message.Role.TOOL:
            messages.append(
                {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
            )
    last_turn = len(messages)
    messages += then or []
    return _within_budget(messages, settings.CHAT_MAX_PROMPT_CHARS, last_turn=last_turn)


def _within_budget(
    messages: list[dict[str, Any]], budget: int, *, last_turn: int | None = None
) -> list[dict[str, Any]]:
    """`messages` without their oldest turns (a question and all that answers it, tool
    rounds included) while their text is over `budget` characters: the system prompt and the
    last turn always stay (it starts at the last question before `last_turn`, if given)."""
    sizes = [_characters(message) for message in messages]
    total = sum(sizes)
    if not budget or total <= budget:
        return messages
    start = 1 if messages[0]["role"] == "system" else 0
    end = len(messages) if last_turn is None else last_turn
    turns = [i for i in range(start, end) if messages[i]["role"] == "user"]
    first = start
    for turn in turns[1:]:
        if total <= budget:
            break
        total -= sum(sizes[first:turn])
        first = turn
    return messages[:start] + messages[first:]


def prompt_characters(messages: list[dict[str, Any]]) -> int:
    """The characters of text a request's messages carry (about four a token)."""
    return sum(_characters(message) for message in messages)


def _characters(message: dict[str, Any]) -> int:
    calls = message.get("tool_calls") or ()
    return len(message.get("content") or "") + sum(
        len(call["function"]["arguments"]) + len(call["function"]["name"]) for call in calls
    )


def tool_rounds_in_turn(messages: list[dict[str, Any]]) -> int:
    """How many tool rounds the turn that `model_messages` ends in has had: its replies whose
    calls were answered, since the user's last message."""
    rounds = 0
    for message in reversed(messages):
        if message["role"] == "user":
            break
        if message["role"] == "assistant" and message.get("tool_calls"):
            rounds += 1
    return rounds


def _tool_results(path: list[Message], start: int) -> list[Message]:
    """The tool messages in `path` from `start` on, up to the first message of another role."""
    results = []
    for message in path[start:]:
        if message.role != Message.Role.TOOL:
            break
        results.append(message)
    return results


def demo_account_open() -> bool:
    """Whether the demo setup's account still logs in with its well-known password, so the
    login page may say so. Only with DEBUG on (a laptop): a production server never says it.
    The password hash is checked once per stored hash, not on every page view."""
    if not settings.DEBUG:
        return False
    user = User.objects.filter(username=DEMO_USERNAME, is_active=True).only("password").first()
    if user is None:
        return False
    if user.password not in _demo_password_checked:
        _demo_password_checked[user.password] = check_password(DEMO_PASSWORD, user.password)
    return _demo_password_checked[user.password]
