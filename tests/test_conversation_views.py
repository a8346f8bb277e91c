"""Rename, settings, delete, edit-and-resend and feedback: owner-only, and what they change."""

from __future__ import annotations

import re

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from chat import selectors, services
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
    assert alice.post(url, {"model": "not-offered"}).status_code == 422


def test_the_picker_shows_the_conversations_model_when_it_is_no_longer_offered(
    alice, conversation, settings
):
    """It showed the first model offered as chosen, while replies went to the conversation's."""
    settings.CHAT_MODELS = ["small-model", "big-model"]
    settings.CHAT_MODEL = "small-model"
    Conversation.objects.filter(pk=conversation.pk).update(model="retired-model")
    page = alice.get(conversation.get_absolute_url()).content.decode()
    assert '<option value="retired-model" selected>' in page
    assert '<option value="small-model">' in page


def test_a_system_prompt_of_blanks_alone_is_none(alice, conversation):
    """The page said a system prompt was set, and the model was sent none."""
    url = reverse("chat:conversation_configure", args=[conversation.pk])
    assert alice.post(url, {"system_prompt": "   \n\t "}, HTTP_HX_REQUEST="true").status_code == 200
    conversation.refresh_from_db()
    assert conversation.system_prompt == ""
    assert (
        "A system prompt is set" not in alice.get(conversation.get_absolute_url()).content.decode()
    )
    alice.post(url, {"system_prompt": "  Indented.\n"}, HTTP_HX_REQUEST="true")
    conversation.refresh_from_db()
    assert conversation.system_prompt == "  Indented.\n"


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


def shown(conversation: Conversation) -> list[tuple[str, str, str]]:
    return [(m.role, m.content, m.status) for m in selectors.active_path(conversation=conversation)]


def test_editing_an_earlier_message_starts_a_branch_and_keeps_the_old_one(
    alice, conversation, no_worker, django_capture_on_commit_callbacks
):
    first, first_answer = finished_exchange(conversation, "frist", "answer to a typo")
    finished_exchange(conversation, "second", "second answer")
    url = reverse("chat:message_edit", args=[conversation.pk, first.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(url, {"content": "first"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and response["HX-Retarget"] == "#messages"
    assert shown(conversation) == [("user", "first", "complete"), ("assistant", "", "pending")]
    new_reply = selectors.active_path(conversation=conversation)[-1]
    assert no_worker[-1] == new_reply.pk
    body = response.content.decode()
    assert "version 2 of 2" in body and "answer to a typo" not in body
    # The old branch is all there, one switch away.
    Message.objects.filter(pk=new_reply.pk).update(status="complete")
    select = reverse("chat:message_select", args=[conversation.pk, first.pk])
    response = alice.post(select, HTTP_HX_REQUEST="true")
    assert "Version 1 of 2." in response.content.decode()
    assert shown(conversation) == [
        ("user", "frist", "complete"),
        ("assistant", "answer to a typo", "complete"),
        ("user", "second", "complete"),
        ("assistant", "second answer", "complete"),
    ]
    first_answer.refresh_from_db()
    assert first_answer.content == "answer to a typo"


def test_regenerate_adds_a_version_and_keeps_the_old_one_with_its_feedback(alice, conversation):
    _, reply = finished_exchange(conversation)
    services.reply_feedback(reply=reply, rating="down", comment="wrong")
    url = reverse("chat:message_retry", args=[conversation.pk, reply.pk])
    assert alice.post(url).status_code == 302
    reply.refresh_from_db()
    assert (reply.status, reply.content, reply.feedback, reply.feedback_comment) == (
        "complete",
        "a",
        "down",
        "wrong",
    )
    path = selectors.active_path(conversation=conversation)
    new = path[-1]
    assert (new.status, new.parent_id, new.version_number, new.version_count) == (
        "pending",
        reply.parent_id,
        2,
        2,
    )
    assert not reply.selected


def test_nothing_can_be_edited_or_regenerated_while_a_reply_streams(alice, conversation):
    first, reply = finished_exchange(conversation, "first")
    services.message_submit(conversation=conversation, content="second")
    edit = reverse("chat:message_edit", args=[conversation.pk, first.pk])
    retry = reverse("chat:message_retry", args=[conversation.pk, reply.pk])
    assert alice.post(edit, {"content": "changed"}).status_code == 409
    assert alice.post(retry).status_code == 409
    assert conversation.messages.count() == 4


def test_feedback_is_saved_with_the_reply(alice, conversation):
    _, reply = finished_exchange(conversation)
    url = reverse("chat:message_feedback", args=[conversation.pk, reply.pk])
    response = alice.post(url, {"rating": "down", "comment": "Wrong year"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    reply.refresh_from_db()
    assert (reply.feedback, reply.feedback_comment) == ("down", "Wrong year")
    assert 'aria-pressed="true"' in response.content.decode()


def test_the_feedback_note_says_what_changed(alice, conversation):
    """A thumb pressed with a comment in the box said "Comment saved." for the new rating."""
    _, reply = finished_exchange(conversation)
    url = reverse("chat:message_feedback", args=[conversation.pk, reply.pk])

    def note(data):
        return alice.post(url, data, HTTP_HX_REQUEST="true").content.decode()

    assert "Thanks for the feedback." in note({"rating": "up"})
    assert "Comment saved." in note({"rating": "up", "comment": "Clear"})  # Save comment
    changed = note({"rating": "down", "comment": "Clear"})  # thumbs down, the comment kept
    assert "Thanks for the feedback." in changed and "Comment saved." not in changed
    reply.refresh_from_db()
    assert (reply.feedback, reply.feedback_comment) == ("down", "Clear")
    # The thumb pressed again takes the rating back: it said thanks (a walk-through found it)
    removed = note({"rating": ""})
    assert "Rating removed." in removed and "Thanks" not in removed


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
        ("chat:message_continue", [conversation.pk, reply.pk], {}),
        ("chat:message_select", [conversation.pk, reply.pk], {}),
        ("chat:message_select", [conversation.pk, reply.pk - 1], {}),
    ]:
        assert mallory.post(reverse(name, args=args), data).status_code == 404, name
    assert Conversation.objects.filter(pk=conversation.pk, title="q").exists()
    assert conversation.messages.count() == 2


def test_feedback_can_change_its_mind_and_be_withdrawn(alice, conversation):
    _, reply = finished_exchange(conversation)
    url = reverse("chat:message_feedback", args=[conversation.pk, reply.pk])
    alice.post(url, {"rating": "down", "comment": "meh"})
    alice.post(url, {"rating": "up", "comment": "meh"})
    reply.refresh_from_db()
    assert (reply.feedback, reply.feedback_comment) == ("up", "meh")
    # Withdrawn as the page does it: its comment box goes with the form. The comment goes too
    # (it stayed, hidden on the page and in the admin's export as a comment on no rating).
    alice.post(url, {"rating": "", "comment": "meh"})
    reply.refresh_from_db()
    assert (reply.feedback, reply.feedback_comment) == ("", "")


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


def test_the_header_marks_a_conversation_with_a_system_prompt(alice, conversation):
    assert 'class="prompt-mark"' not in alice.get(conversation.get_absolute_url()).content.decode()
    services.conversation_configure(
        conversation=conversation, model=conversation.model, system_prompt="Be brief."
    )
    header = alice.get(conversation.get_absolute_url()).content.decode().split("</header>")[0]
    assert 'class="prompt-mark"' in header


def test_the_page_takes_as_many_queries_for_twenty_messages_and_versions_as_for_two(
    alice, conversation, django_assert_num_queries
):
    """An N+1 (a query per message, per version switcher, per sidebar link) fails here."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    finished_exchange(conversation, "first question", "# Answer\n\n```python\nx = 1\n```")
    url = reverse("chat:conversation_detail", args=[conversation.pk])
    with CaptureQueriesContext(connection) as few:
        assert alice.get(url).status_code == 200
    for i in range(9):
        _, reply = finished_exchange(conversation, f"question {i}", f"**answer** {i}\n\n- a\n- b")
    services.reply_regenerate(reply=reply)  # a second version: the page shows a switcher
    for _ in range(3):
        services.conversation_create(owner=conversation.owner)
    with django_assert_num_queries(len(few)):
        body = alice.get(url).content.decode()
    assert body.count('<article id="m') == 20
    assert 'class="versions"' in body
    # User, the conversation, the sidebar's pinned ones and list, the message tree, the
    # messages whose articles are not in the cache (the session comes from the cache).
    assert len(few) <= 6 + (not django_settings.SESSION_ENGINE.endswith(".cached_db"))


def test_finished_messages_drawn_once_are_not_read_again(alice, conversation):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for i in range(3):
        finished_exchange(
            conversation, f"question {i}", f"**answer** {i}\n\n```python\nx = {i}\n```"
        )
    url = reverse("chat:conversation_detail", args=[conversation.pk])
    first = alice.get(url).content.decode()
    with CaptureQueriesContext(connection) as again:
        second = alice.get(url).content.decode()
    assert _without_tokens(second) == _without_tokens(first)
    assert first.count('<article id="m') == 6
    assert not [q for q in again.captured_queries if "content_html" in q["sql"]]


def _without_tokens(page: str) -> str:
    """A page without what differs on every load: the CSRF token's mask, the composer's key."""
    page = re.sub(r'csrfmiddlewaretoken" value="\w+"', "csrf", page)
    page = re.sub(r'"X-CSRFToken": "\w+"', "csrf", page)
    return re.sub(r'name="idempotency_key" value="[\w-]+"', "key", page)
