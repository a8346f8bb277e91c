"""The site's URL patterns, walked from the URLconf, and a world to request them in: an owner
with a conversation, another user, a view-only staff member and an anonymous visitor."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from chat.models import Conversation, Message

ROLES = ("owner", "other", "staff", "anonymous")


def url_routes() -> list[str]:
    """Every URL pattern of the site, as its full route ("c/<uuid:conversation_id>/rename/")."""
    return sorted(set(_walk(get_resolver().url_patterns, "")))


def _walk(patterns: list[Any], prefix: str) -> Iterator[str]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            assert isinstance(pattern, URLPattern)
            yield prefix + str(pattern.pattern)


@dataclass
class World:
    owner: Any
    other: Any
    staff: Any
    conversation: Conversation
    user_message: Message
    reply: Message
    group: Group

    def client(self, role: str) -> Client:
        client = Client()
        if role != "anonymous":
            client.force_login(getattr(self, role))
        return client

    def path(self, route: str) -> str:
        """The route with the owner's objects in its parameters."""
        ids = {
            "conversation_id": str(self.conversation.pk),
            "app_label": "chat",
            "url": "no-such-page/",
            "uidb64": "MQ",
            "token": "set-password",
            "id": str(self.owner.pk),
            "content_type_id": str(ContentType.objects.get_for_model(Conversation).pk),
        }
        if route.startswith("admin/chat/message/"):
            ids["object_id"] = str(self.reply.pk)
        elif route.startswith("admin/auth/user/"):
            ids["object_id"] = str(self.owner.pk)
        elif route.startswith("admin/auth/group/"):
            ids["object_id"] = str(self.group.pk)
        else:
            ids["object_id"] = str(self.conversation.pk)
        ids["message_id"] = str(self.user_message.pk if route.endswith("/edit/") else self.reply.pk)

        def fill(match: re.Match[str]) -> str:
            return ids[match.group("name")]

        path = re.sub(r"<(?:\w+:)?(?P<name>\w+)>", fill, route)
        path = re.sub(r"\(\?P<(?P<name>\w+)>[^)]*\)", fill, path)
        return "/" + path.lstrip("^").rstrip("$")


def make_world(django_user_model: Any) -> World:
    owner = django_user_model.objects.create_user("owner", password="owner-password")
    other = django_user_model.objects.create_user("other", password="other-password")
    staff = django_user_model.objects.create_user("staff", password="staff-pw", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_conversation", "view_message"])
    )
    conversation = Conversation.objects.create(owner=owner, model="fake-model", title="Mine")
    now = timezone.now()
    user_message = Message.objects.create(
        conversation=conversation, role="user", content="hello", completed=now
    )
    reply = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="hi there",
        content_html="<p>hi there</p>",
        status="complete",
        finish_reason="stop",
        completed=now,
    )
    return World(
        owner, other, staff, conversation, user_message, reply, Group.objects.create(name="g")
    )


def snapshot() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every conversation and message row, to compare before and after a request."""
    return (
        list(Conversation.objects.order_by("pk").values()),
        list(Message.objects.order_by("pk").values()),
    )
