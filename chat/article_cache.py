"""The conversation page's messages: each finished message's article drawn once (chat.articles)
and kept in the cache, keyed by everything it shows; only replies still streaming, and
articles not in the cache, are read whole.

What a finished message shows changes only with a new `completed` (every save of a reply's
outcome sets it: finish, stop, interruption, a continued reply finishing again) or with its
feedback; its place among its versions comes from the tree, read every time. So a key made of
those, the owner and the message never names an article that has changed since it was drawn.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import redis.exceptions
from django.core.cache import cache

from . import articles, outages, selectors
from .models import Conversation, Message

CACHE_SECONDS = 3600
# Cache errors while a shared (Redis) cache is away: the page is drawn without it.
CACHE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
# Drawn with this token in place of the request's, which goes in as the article is served.
_TOKEN = "\x00csrf\x00"
_TOKEN_INPUT = articles.csrf_input(_TOKEN)
# The markup's version: an article drawn by another chat.articles, or with other links (the
# URLconf, chat.links), or by another markdown renderer (whose data migrations render stored
# replies anew: chat.migrations._stored_html), is never served, though the cache (Redis)
# outlives a deploy.
_HERE = Path(__file__).resolve().parent
_DRAWN_BY = ("articles.py", "links.py", "urls.py", "markdown.py", "flanking.py")
_DRAWN_BY_SOURCE = b"".join((_HERE / name).read_bytes() for name in _DRAWN_BY)
_MARKUP = hashlib.sha256(_DRAWN_BY_SOURCE).hexdigest()[:12]


class DrawnArticle:
    """A finished message's article, drawn; `html` puts the request's CSRF token in."""

    is_active = False

    def __init__(self, node: selectors.MessageNode, parts: list[str]) -> None:
        self.pk = node.pk
        self.version_number = node.version_number
        self.version_count = node.version_count
        self.parts = parts

    def html(self, csrf_token: Any) -> str:
        if len(self.parts) == 1:
            return self.parts[0]
        return articles.csrf_input(csrf_token).join(self.parts)


def _stamp(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _key(owner_id: int, conversation_id: uuid.UUID, node: selectors.MessageNode | Message) -> str:
    """The key of the article of `node` as it stands (a node from the tree, or the message
    read whole, which is what is drawn and may have changed since the tree was read)."""
    shown = repr(
        (
            node.role,
            node.status,
            _stamp(node.created),
            _stamp(node.completed),
            node.feedback,
            node.feedback_comment,
            node.parent_id,
            node.version_ids,
            node.version_number,
        )
    )
    digest = hashlib.sha256(shown.encode()).hexdigest()[:32]
    return f"chat:article:{_MARKUP}:{owner_id}:{conversation_id.hex}:{node.pk}:{digest}"


def _split(message: Message) -> list[str] | None:
    """The article cut where the CSRF token goes (a user's message has one edit form), or
    None if it cannot be cut so (never cached then)."""
    parts = articles.finished_message(message, csrf_token=_TOKEN).split(_TOKEN_INPUT)
    expected = 2 if message.role == Message.Role.USER else 1
    return parts if len(parts) == expected else None


def _cached(keys: list[str]) -> dict[str, Any]:
    try:
        return cache.get_many(keys)
    except CACHE_ERRORS as error:
        outages.redis.went_away(error)
        return {}


def _store(drawn: dict[str, list[str]]) -> None:
    try:
        cache.set_many(drawn, CACHE_SECONDS)
    except CACHE_ERRORS as error:
        outages.redis.went_away(error)


def page_messages(*, conversation: Conversation) -> list[Message | DrawnArticle]:
    """The messages the conversation shows (`selectors.active_path`): a finished one drawn
    (from the cache when unchanged), one still streaming whole, for the template."""
    # The nodes have what annotate_versions reads and sets of a message.
    path = cast(
        list[selectors.MessageNode],
        selectors.annotate_versions(cast(Any, selectors.message_tree(conversation=conversation))),
    )
    keys = {
        node.pk: _key(conversation.owner_id, conversation.pk, node)
        for node in path
        if not node.is_active
    }
    found = _cached(list(keys.values())) if keys else {}
    wanted = [node.pk for node in path if keys.get(node.pk) not in found]
    whole = _read(conversation, wanted, path)
    shown: list[Message | DrawnArticle] = []
    drawn: dict[str, list[str]] = {}
    for node in path:
        key = keys.get(node.pk)
        if key is not None and key in found:
            shown.append(DrawnArticle(node, found[key]))
            continue
        message = whole.get(node.pk)
        if message is None:  # deleted since the tree was read
            continue
        if not message.is_active and (parts := _split(message)):
            drawn[_key(conversation.owner_id, conversation.pk, message)] = parts
            shown.append(DrawnArticle(node, parts))
        else:
            shown.append(message)
    if drawn:
        _store(drawn)
    return shown


def _read(
    conversation: Conversation, ids: list[int], path: Iterable[selectors.MessageNode]
) -> dict[int, Message]:
    """The messages `ids` whole, with their places among their versions from the tree."""
    if not ids:
        return {}
    nodes = {node.pk: node for node in path}
    messages = conversation.messages.in_bulk(ids)
    for pk, message in messages.items():
        node = nodes[pk]
        message.version_ids, message.version_number = node.version_ids, node.version_number
        message.on_active_path = True
    return messages
