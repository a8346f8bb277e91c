"""The admin shows each conversation's messages with status, finish reason, errors and usage."""

import pytest
from django.test import Client
from django.urls import reverse

from chat import services
from chat.models import Message

pytestmark = pytest.mark.django_db


def test_admin_conversation_page_shows_every_message_and_how_it_ended(
    admin_client: Client, user, monkeypatch
):
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    conversation = services.conversation_create(owner=user)
    _, reply = services.message_submit(conversation=conversation, content="question one")
    Message.objects.filter(pk=reply.pk).update(
        status="error",
        content="partial answer",
        error="HTTP 503: overloaded",
        finish_reason="",
        prompt_tokens=12,
        completion_tokens=3,
    )
    page = admin_client.get(reverse("admin:chat_conversation_change", args=[conversation.pk]))
    body = page.content.decode()
    for text in ["question one", "partial answer", "HTTP 503: overloaded", "error", ">12<"]:
        assert text in body
    listing = admin_client.get(reverse("admin:chat_conversation_changelist") + "?q=partial")
    assert "question one" in listing.content.decode()
    filtered = admin_client.get(
        reverse("admin:chat_conversation_changelist") + "?message_status=error"
    )
    assert "question one" in filtered.content.decode()


def test_finish_reasons_other_than_stop_are_shown_on_the_page(client: Client, user, monkeypatch):
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    client.force_login(user)
    conversation = services.conversation_create(owner=user)
    _, reply = services.message_submit(conversation=conversation, content="q")
    Message.objects.filter(pk=reply.pk).update(
        status="complete", finish_reason="content_filter", content=""
    )
    body = client.get(conversation.get_absolute_url()).content.decode()
    assert "content filter stopped this reply" in body and "finish: content_filter" in body
