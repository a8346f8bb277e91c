"""Admin built for review: filters, token totals, a transcript page rendered like the chat, and
exports. A conversation is its owner's record: staff read, export and delete it, and change
nothing in it (a title or system prompt changed here would change the owner's next reply, and
a save would move the conversation to the top of the owner's list)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, Substr
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import dateformat, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from . import selectors, services
from .exports import csv_lines, jsonl_lines, with_messages
from .limits import FIELDS
from .models import Conversation, Message, UsageLimit
from .templatetags.chat_tags import seconds


def _per_conversation(aggregate: Count | Sum) -> Coalesce:
    """An aggregate over a conversation's messages as a subquery: unlike an aggregate over a
    join, it is not multiplied when a search or a filter joins the messages again."""
    rows = (
        Message.objects.filter(conversation=OuterRef("pk"))
        .order_by()
        .values("conversation")
        .annotate(value=aggregate)
        .values("value")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)


LIST_TITLE_CHARS = 60
# How much of each message's text the messages list reads (its tooltip shows that much).
LIST_TEXT_START = 2 * LIST_TITLE_CHARS


def _shortened(text: str, *, more: bool = False) -> SafeString:
    """A list column's text cut at a word to LIST_TITLE_CHARS, the whole in a tooltip (`more`:
    `text` is only the start of it)."""
    short = text
    if len(text) > LIST_TITLE_CHARS:
        short = text[: LIST_TITLE_CHARS - 1].rsplit(" ", 1)[0].rstrip(" ,.;:-") + "…"
    return format_html('<span title="{}">{}</span>', text + "…" if more else text, short)


class ValuesNamedFilter(admin.AllValuesFieldListFilter):
    """A text field's values to filter by, its empty value named (as a link with no text, it
    was a link a screen reader could not name: axe, link-name)."""

    def choices(self, changelist: Any) -> Any:
        for choice in super().choices(changelist):
            yield {**choice, "display": choice["display"] or "none"}


def _compact_time(value: datetime) -> SafeString:
    """A list-column date: the time if today, the day if this year, else the date; the full
    timestamp in a tooltip."""
    local = timezone.localtime(value)
    now = timezone.localtime()
    if local.date() == now.date():
        short = dateformat.format(local, "H:i")
    elif local.year == now.year:
        short = dateformat.format(local, "M j")
    else:
        short = dateformat.format(local, "Y-m-d")
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        local.isoformat(),
        dateformat.format(local, "Y-m-d H:i:s"),
        short,
    )


class MessageStatusFilter(admin.SimpleListFilter):
    title = "message status"
    parameter_name = "message_status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return list(Message.Status.choices)

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> QuerySet[Conversation]:
        if self.value():
            return queryset.filter(messages__status=self.value()).distinct()
        return queryset


class FeedbackFilter(admin.SimpleListFilter):
    title = "feedback"
    parameter_name = "feedback"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("up", "has thumbs up"), ("down", "has thumbs down"), ("any", "has any feedback")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> QuerySet[Conversation]:
        if self.value() in {"up", "down"}:
            return queryset.filter(messages__feedback=self.value()).distinct()
        if self.value() == "any":
            return queryset.filter(
                messages__feedback__in=[Message.Feedback.UP, Message.Feedback.DOWN]
            ).distinct()
        return queryset


class ReplyTimes:
    """A reply's times as the transcript gives them ("97 ms", "2.4 s"), not as
    `0:00:00.096618`; none as the admin shows any empty value ("-"), not blank."""

    @admin.display(description="time to first token")
    def first_token(self, message: Message) -> str:
        return seconds(message.time_to_first_token) or admin.site.empty_value_display

    @admin.display(description="duration")
    def took(self, message: Message) -> str:
        return seconds(message.duration) or admin.site.empty_value_display


class MessageInline(ReplyTimes, admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    ordering = ["created", "id"]
    fields = (
        "created",
        "role",
        "status",
        "version",
        "content",
        "work",
        "finish_reason",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "first_token",
        "took",
        "error",
        "feedback",
        "feedback_comment",
    )
    readonly_fields = fields

    # Where a message stands among its turn's versions, and whether the page shows it: by
    # time alone, a turn regenerated read as a question answered twice (found by a
    # walk-through). Read once a page, for all its messages.
    @admin.display(description="version")
    def version(self, message: Message) -> str:
        places = getattr(self, "_places", None)
        if places is None:
            places = self._places = selectors.version_places(
                conversation_id=message.conversation_id
            )
        place = places.get(message.pk)
        if place is None:  # (the system prompt, which has no versions)
            return self.get_empty_value_display()
        shown = "shown" if place.shown else "not shown"
        return f"{place.number} of {place.versions}, {shown}" if place.versions > 1 else shown

    # What a reply did besides its text, which the transcript shows whole: a reply that only
    # called tools showed as an empty one here, and its thinking not at all.
    @admin.display(description="thinking / tool calls")
    def work(self, message: Message) -> str:
        parts = []
        if message.reasoning:
            parts.append(f"thought {len(message.reasoning):,} characters")
        calls = message.tool_calls or []
        if isinstance(calls, dict):  # a tool's message: the call it answers
            parts.append(f"the result of {calls.get('name') or 'a tool'}")
        elif names := [call.get("name") or "?" for call in calls if isinstance(call, dict)]:
            parts.append("called " + ", ".join(names))
        return "; ".join(parts) or self.get_empty_value_display()

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.action(description="Export selected as JSON Lines", permissions=["view"])
def export_jsonl(
    modeladmin: ConversationAdmin, request: HttpRequest, queryset: QuerySet[Conversation]
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        jsonl_lines(with_messages(queryset.order_by("created"))),
        content_type="application/x-ndjson; charset=utf-8",
    )
    response["Content-Disposition"] = 'attachment; filename="conversations.jsonl"'
    return response


@admin.action(description="Export selected as CSV (one row per message)", permissions=["view"])
def export_csv(
    modeladmin: ConversationAdmin, request: HttpRequest, queryset: QuerySet[Conversation]
) -> HttpResponse:
    body = "".join(csv_lines(with_messages(queryset.order_by("created"))))
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="messages.csv"'
    return response


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    # Sized to fit a laptop window beside the admin's sidebars (see changelist.css); the
    # created date is in the date hierarchy, the filters and the change page.
    list_display = [
        "title_or_id",
        "owner",
        "model",
        "total_tokens",
        "updated_short",
        "transcript_short",
    ]
    list_filter = [
        "owner",
        ("model", ValuesNamedFilter),
        MessageStatusFilter,
        FeedbackFilter,
        "created",
        "updated",
    ]
    search_fields = ["title", "messages__content", "owner__username"]
    date_hierarchy = "created"
    readonly_fields = ["id", "owner", "created", "updated", "transcript_link"]
    fields = [
        "id",
        "owner",
        "title",
        "title_source",
        "model",
        "system_prompt",
        "created",
        "updated",
        "transcript_link",
    ]
    inlines = [MessageInline]
    list_select_related = ["owner"]
    actions = [export_jsonl, export_csv]
    # The chat page is its owner's alone: "View on site" would lead staff to a 404.
    view_on_site = False

    class Media:
        css = {"all": ["admin/chat/changelist.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                message_count=_per_conversation(Count("id")),
                prompt_token_total=_per_conversation(Sum("prompt_tokens")),
                completion_token_total=_per_conversation(Sum("completion_tokens")),
            )
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a conversation is made by its owner's first message

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_deleted_objects(self, objs, request):  # type: ignore[no-untyped-def]
        # Its messages go with it, though staff may not delete a message alone (`MessageAdmin`).
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, perms_needed - {Message._meta.verbose_name}, protected

    def delete_model(self, request: HttpRequest, obj: Conversation) -> None:
        services.conversation_delete(conversation=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        for conversation in queryset:
            services.conversation_delete(conversation=conversation)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Conversation], search_term: str
    ) -> tuple[QuerySet[Conversation], bool]:
        results, _ = super().get_search_results(request, queryset, search_term)
        return results.distinct(), False

    def get_urls(self) -> list:  # type: ignore[type-arg]
        transcript = self.admin_site.admin_view(self.transcript_view)
        return [
            path(
                "<uuid:conversation_id>/transcript/",
                transcript,
                name="chat_conversation_transcript",
            ),
            *super().get_urls(),
        ]

    def transcript_view(self, request: HttpRequest, conversation_id: uuid.UUID) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        conversation = get_object_or_404(self.get_queryset(request), pk=conversation_id)
        # Not "messages": that name belongs to the messages framework, whose banners the admin
        # base template renders from it.
        transcript = selectors.reading_order(conversation=conversation)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Transcript: {conversation}",
            "conversation": conversation,
            "transcript": transcript,
            "totals": conversation.messages.aggregate(
                prompt=Sum("prompt_tokens"),
                completion=Sum("completion_tokens"),
                replies=Count("id", filter=Q(role=Message.Role.ASSISTANT)),
            ),
        }
        return TemplateResponse(request, "admin/chat/conversation/transcript.html", context)

    @admin.display(description="title", ordering="title")
    def title_or_id(self, obj: Conversation) -> SafeString:
        title = str(obj)
        return _shortened(title)

    @admin.display(description="updated", ordering="updated")
    def updated_short(self, obj: Conversation) -> SafeString:
        return _compact_time(obj.updated)

    @admin.display(description="tokens in / out", ordering="completion_token_total")
    def total_tokens(self, obj: Conversation) -> str:
        prompt = getattr(obj, "prompt_token_total", None) or 0
        completion = getattr(obj, "completion_token_total", None) or 0
        return f"{prompt} / {completion}"

    @admin.display(description="transcript")
    def transcript_link(self, obj: Conversation) -> SafeString:
        url = reverse("admin:chat_conversation_transcript", args=[obj.pk])
        return format_html('<a href="{}">Read the transcript</a>', url)

    @admin.display(description="transcript", ordering="message_count")
    def transcript_short(self, obj: Conversation) -> SafeString:
        """The transcript link, counting the messages it holds (one narrow column for both)."""
        url = reverse("admin:chat_conversation_transcript", args=[obj.pk])
        count = obj.message_count  # type: ignore[attr-defined]
        return format_html('<a href="{}">{} message{}</a>', url, count, "" if count == 1 else "s")


@admin.register(UsageLimit)
class UsageLimitAdmin(admin.ModelAdmin):
    """Other limits for a user or a group than the defaults in settings (`chat.limits`)."""

    list_display = ["__str__", *FIELDS]
    list_select_related = ["user", "group"]
    autocomplete_fields = ["user", "group"]
    search_fields = ["user__username", "group__name"]


@admin.register(Message)
class MessageAdmin(ReplyTimes, admin.ModelAdmin):
    # Newest first, as a reviewer looks for what just happened; each row says what the
    # message says and in which conversation, both cut short (whole in a tooltip). The model
    # and finish reason are filters and on each message's page: with them the list ran past
    # a laptop's window beside the admin's two sidebars.
    list_display = [
        "id",
        "text_short",
        "conversation_short",
        "role",
        "status",
        "feedback",
        "created_short",
    ]
    ordering = ["-id"]
    list_filter = [
        "role",
        "status",
        ("finish_reason", ValuesNamedFilter),
        "feedback",
        ("model", ValuesNamedFilter),
        "created",
    ]
    search_fields = ["content", "feedback_comment"]
    list_select_related = ["conversation"]
    # What a reply streaming holds of its lease and its request's key is the stream engine's,
    # not a reviewer's; the times read as the transcript gives them.
    exclude = ["idempotency_key", "lease_owner", "lease_expires", "time_to_first_token", "duration"]
    readonly_fields = ["created", "first_token", "took"]

    class Media:  # (its breadcrumbs' links told apart from their text, as the conversations')
        css = {"all": ["admin/chat/changelist.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        # The list reads the start of each message's text, not the whole of it and its HTML
        # (a reply may hold a hundred thousand characters, a list shows a hundred rows).
        messages = (
            super()
            .get_queryset(request)
            .annotate(text_start=Substr("content", 1, LIST_TEXT_START + 1))
        )
        match = request.resolver_match
        if match is not None and match.url_name == "chat_message_changelist":
            messages = messages.defer(
                "content", "reasoning", "content_html", "reasoning_html", "system_prompt"
            )
        return messages

    @admin.display(description="text")
    def text_short(self, obj: Message) -> SafeString:
        start: str = getattr(obj, "text_start", "")  # (annotated by `get_queryset`)
        if not start:
            return format_html("{}", "—")
        more = len(start) > LIST_TEXT_START  # (one more character read tells)
        return _shortened(" ".join(start[:LIST_TEXT_START].split()), more=more)

    @admin.display(description="conversation", ordering="conversation__title")
    def conversation_short(self, obj: Message) -> SafeString:
        return _shortened(str(obj.conversation))

    @admin.display(description="created", ordering="created")
    def created_short(self, obj: Message) -> SafeString:
        return _compact_time(obj.created)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    # A message is part of its conversation's tree and of the owner's spent tokens: staff
    # delete the whole conversation (`ConversationAdmin.delete_model`), not a part of it. (The
    # permission stays, for a conversation's or a user's delete, which takes its messages.)
    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: object = None
    ) -> HttpResponse:
        raise PermissionDenied

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        return super().change_view(
            request, object_id, form_url, {**(extra_context or {}), "show_delete": False}
        )
