"""Rename, settings, delete, edit-and-resend and feedback: owner-only, and what they change."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from chat import services
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_worker(sent_to_worker) -> list[int]:
    return sent_to_worker


@pytest.fixture
def alice(alice_client) -> Client:
    return alice_client


@pytest.fixture
def conversation(user) -> Conversation:
    return services.conversation_create(owner=user)


def finished_exchange(conversation: Conversation, question: str = "q", answer: str = "a"):
    user_message, reply = services.message_submit(conversation=conversation, content=question)
    Message.objects.filter(pk=reply.pk).update(
        status="complete", content=answer, **services.rendered_fields(content=answer, reasoning="")
    )
    reply.refresh_from_db()
    return user_message, reply


def test_rename_sets_the_title_and_marks_it_as_the_users(alice, conversation):
    url = reverse("chat:conversation_rename", args=[conversation.pk])
    response = alice.post(url, {"title": "  Trip to Lisbon "}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    conversation.refresh_from_db()
    assert (conversation.title, conversation.title_source) == ("Trip to Lisbon", "user")
    body = response.content.decode()
    assert 'id="conversation-title"' in body and f'id="conv-link-{conversation.pk}"' in body


def test_settings_take_a_listed_model_and_a_system_prompt(alice, conversation, settings):
    settings.CHAT_MODELS = ["small-model", "big-model"]
    settings.CHAT_MODEL = "small-model"
    page = alice.get(conversation.get_absolute_url()).content.decode()
    assert '<option value="big-model"' in page
    url = reverse("chat:conversation_configure", args=[conversation.pk])
    response = alice.post(
        url, {"model": "big-model", "system_prompt": "Answer in French."}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200 and "Saved" in response.content.decode()
    conversation.refresh_from_db()
    assert (conversation.model, conversation.system_prompt) == ("big-model", "Answer in French.")
    assert alice.post(url, {"model": "not-offered"}).status_code == 400


def test_models_come_from_the_upstreams_list_when_not_configured(alice, conversation, settings):
    from django.core.cache import cache

    cache.clear()
    settings.CHAT_MODELS = []
    settings.CHAT_DEMO_MODE = True
    settings.CHAT_MODEL = "demo"
    page = alice.get(conversation.get_absolute_url()).content.decode()
    assert '<option value="demo" selected>' in page


def test_delete_removes_the_conversation_and_its_messages(alice, conversation):
    finished_exchange(conversation)
    url = reverse("chat:conversation_delete", args=[conversation.pk])
    response = alice.post(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 204 and response["HX-Redirect"] == "/"
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.exists()


def test_edit_replaces_the_latest_message_and_its_reply(
    alice, conversation, no_worker, django_capture_on_commit_callbacks
):
    finished_exchange(conversation, "first", "first answer")
    user_message, reply = finished_exchange(conversation, "secnod", "answer to a typo")
    url = reverse("chat:message_edit", args=[conversation.pk, user_message.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(url, {"content": "second"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    messages = list(conversation.messages.order_by("id"))
    assert [(m.role, m.content, m.status) for m in messages] == [
        ("user", "first", "complete"),
        ("assistant", "first answer", "complete"),
        ("user", "second", "complete"),
        ("assistant", "", "pending"),
    ]
    assert no_worker[-1] == messages[-1].pk
    assert not Message.objects.filter(pk=reply.pk).exists()


def test_only_the_latest_message_can_be_edited(alice, conversation):
    first, _ = finished_exchange(conversation, "first")
    finished_exchange(conversation, "second")
    url = reverse("chat:message_edit", args=[conversation.pk, first.pk])
    assert alice.post(url, {"content": "changed"}).status_code == 409
    first.refresh_from_db()
    assert first.content == "first"


def test_feedback_is_saved_with_the_reply(alice, conversation):
    _, reply = finished_exchange(conversation)
    url = reverse("chat:message_feedback", args=[conversation.pk, reply.pk])
    response = alice.post(url, {"rating": "down", "comment": "Wrong year"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    reply.refresh_from_db()
    assert (reply.feedback, reply.feedback_comment) == ("down", "Wrong year")
    assert 'aria-pressed="true"' in response.content.decode()


def test_another_user_can_change_nothing(conversation, other_user):
    _, reply = finished_exchange(conversation)
    mallory = Client()
    mallory.force_login(other_user)
    for name, args, data in [
        ("chat:conversation_rename", [conversation.pk], {"title": "x"}),
        ("chat:conversation_configure", [conversation.pk], {"model": "x"}),
        ("chat:conversation_delete", [conversation.pk], {}),
        ("chat:message_edit", [conversation.pk, reply.pk - 1], {"content": "x"}),
        ("chat:message_feedback", [conversation.pk, reply.pk], {"rating": "up"}),
        ("chat:message_retry", [conversation.pk, reply.pk], {}),
    ]:
        assert mallory.post(reverse(name, args=args), data).status_code == 404, name
    assert Conversation.objects.filter(pk=conversation.pk, title="q").exists()


def test_feedback_can_change_its_mind_and_be_withdrawn(alice, conversation):
    _, reply = finished_exchange(conversation)
    url = reverse("chat:message_feedback", args=[conversation.pk, reply.pk])
    alice.post(url, {"rating": "down", "comment": "meh"})
    alice.post(url, {"rating": "up", "comment": "meh"})
    reply.refresh_from_db()
    assert (reply.feedback, reply.feedback_comment) == ("up", "meh")
    alice.post(url, {"rating": ""})
    reply.refresh_from_db()
    assert reply.feedback == ""


def test_models_are_listed_from_the_upstream_and_cached(
    alice, conversation, settings, fake_upstream
):
    from django.core.cache import cache

    cache.clear()
    settings.CHAT_MODELS = []
    settings.CHAT_DEMO_MODE = False
    settings.OPENAI_BASE_URL = fake_upstream.base_url
    settings.CHAT_MODEL = "default-model"
    page = alice.get(conversation.get_absolute_url()).content.decode()
    assert '<option value="fake-model"' in page and '<option value="default-model"' in page
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # unreachable: the cached list is used
    assert (
        '<option value="fake-model"' in alice.get(conversation.get_absolute_url()).content.decode()
    )


def test_regenerate_clears_the_old_answers_feedback(alice, conversation):
    _, reply = finished_exchange(conversation)
    services.reply_feedback(reply=reply, rating="down", comment="wrong")
    assert (
        alice.post(reverse("chat:message_retry", args=[conversation.pk, reply.pk])).status_code
        == 302
    )
    reply.refresh_from_db()
    assert (reply.status, reply.feedback, reply.feedback_comment) == ("pending", "", "")
