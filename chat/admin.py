"""Admin built for review: conversations with their messages, read-only where it matters."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from .models import Conversation, Message


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


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    ordering = ["created", "id"]
    fields = (
        "created",
        "role",
        "status",
        "content",
        "finish_reason",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "time_to_first_token",
        "duration",
        "error",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["title_or_id", "owner", "model", "message_count", "created", "updated"]
    list_filter = ["model", MessageStatusFilter, "created", "updated"]
    search_fields = ["title", "messages__content", "owner__username"]
    date_hierarchy = "created"
    readonly_fields = ["id", "owner", "created", "updated"]
    fields = ["id", "owner", "title", "model", "system_prompt", "created", "updated"]
    inlines = [MessageInline]
    list_select_related = ["owner"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return (
            super().get_queryset(request).annotate(message_count=Count("messages", distinct=True))
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Conversation], search_term: str
    ) -> tuple[QuerySet[Conversation], bool]:
        results, _ = super().get_search_results(request, queryset, search_term)
        return results.distinct(), False

    @admin.display(description="title", ordering="title")
    def title_or_id(self, obj: Conversation) -> str:
        return str(obj)

    @admin.display(description="messages", ordering="message_count")
    def message_count(self, obj: Conversation) -> int:
        return obj.message_count  # type: ignore[attr-defined]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "conversation", "role", "status", "finish_reason", "model", "created"]
    list_filter = ["role", "status", "model", "created"]
    search_fields = ["content"]
    list_select_related = ["conversation"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
