"""The conversation page draws each finished message once and takes it from the cache after
that: never an article that changed since, never another user's, never a reply still
streaming."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import redis.exceptions
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.middleware.csrf import _unmask_cipher_token
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat import article_cache, outages, selectors, services
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db

WORKER = "worker-1"


@pytest.fixture(autouse=True)
def no_worker(sent_to_worker) -> list[int]:
    return sent_to_worker


@pytest.fixture
def conversation(user) -> Conversation:
    return services.conversation_create(owner=user)


def finish(reply: Message, text: str, **fields: Any) -> None:
    """The reply streamed and saved as the worker saves it."""
    async_to_sync(services.reply_claim)(message_id=reply.pk, worker_id=WORKER)
    saved = async_to_sync(services.reply_finish)(
        message_id=reply.pk,
        worker_id=WORKER,
        fields={
            "status": Message.Status.COMPLETE,
            "content": text,
            "finish_reason": "stop",
            **services.rendered_fields(content=text, reasoning=""),
            **fields,
        },
    )
    assert saved


def exchange(conversation: Conversation, question: str, answer: str) -> tuple[Message, Message]:
    user_message, reply = services.message_submit(conversation=conversation, content=question)
    finish(reply, answer)
    reply.refresh_from_db()
    return user_message, reply


def page(client: Client, conversation: Conversation) -> str:
    response = client.get(reverse("chat:conversation_detail", args=[conversation.pk]))
    assert response.status_code == 200
    return response.content.decode()


def article(body: str, message: Message) -> str:
    match = re.search(rf'<article id="m{message.pk}".*?</article>', body, re.DOTALL)
    assert match, f"no article m{message.pk}"
    return match.group(0)


def test_a_rating_and_a_comment_show_at_once(alice_client, conversation):
    _, reply = exchange(conversation, "q", "an answer")
    assert 'aria-pressed="true"' not in article(page(alice_client, conversation), reply)
    services.reply_feedback(reply=reply, rating="up", comment="first")
    drawn = article(page(alice_client, conversation), reply)
    assert 'class="icon-button icon-up"\n          aria-pressed="true"' in drawn
    assert 'value="first"' in drawn
    services.reply_feedback(reply=reply, rating="up", comment="second")
    assert 'value="second"' in article(page(alice_client, conversation), reply)
    services.reply_feedback(reply=reply, rating="", comment="")
    assert 'aria-pressed="true"' not in article(page(alice_client, conversation), reply)


def test_a_reply_continued_shows_its_new_text_once_it_finishes(alice_client, conversation):
    _, reply = services.message_submit(conversation=conversation, content="q")
    finish(reply, "cut short", finish_reason="length")
    assert "cut short" in article(page(alice_client, conversation), reply)
    services.reply_continue(reply=reply)
    streaming = article(page(alice_client, conversation), reply)
    assert 'data-status="pending"' in streaming  # drawn whole, as it streams
    finish(reply, "cut short, and the rest")
    drawn = article(page(alice_client, conversation), reply)
    assert "cut short, and the rest" in drawn and 'data-status="complete"' in drawn


def test_a_streaming_reply_is_drawn_from_its_checkpoint_every_time(alice_client, conversation):
    _, reply = services.message_submit(conversation=conversation, content="q")
    async_to_sync(services.reply_claim)(message_id=reply.pk, worker_id=WORKER)
    for text in ("first words", "first words and more"):
        assert async_to_sync(services.replies_checkpoint)(
            [services.Checkpoint(reply.pk, WORKER, {"content": text})]
        ) == [True]
        drawn = article(page(alice_client, conversation), reply)
        assert text in drawn and 'data-status="streaming"' in drawn


def test_a_stopped_or_interrupted_reply_shows_what_happened(alice_client, conversation):
    _, reply = services.message_submit(conversation=conversation, content="q")
    assert 'data-status="pending"' in article(page(alice_client, conversation), reply)
    services.reply_stop(reply=reply)
    assert "Stopped." in article(page(alice_client, conversation), reply)

    _, other = services.message_submit(conversation=conversation, content="again")
    async_to_sync(services.reply_claim)(message_id=other.pk, worker_id=WORKER)
    Message.objects.filter(pk=other.pk).update(lease_expires=timezone.now() - timedelta(1))
    page(alice_client, conversation)
    services.replies_interrupt_expired()
    assert "The reply was interrupted" in article(page(alice_client, conversation), other)


def test_versions_switch_and_their_counts_follow(alice_client, conversation):
    _, first = exchange(conversation, "q", "version one")
    body = page(alice_client, conversation)
    assert 'class="versions"' not in article(body, first)
    second = services.reply_regenerate(reply=first)
    finish(second, "version two")
    body = page(alice_client, conversation)
    assert "version two" in body and "version one" not in body
    assert "2 / 2" in article(body, second)
    services.message_select(message=first)
    body = page(alice_client, conversation)
    assert "version one" in body and "version two" not in body
    assert "1 / 2" in article(body, first)


def test_an_edit_shows_the_new_branch(alice_client, conversation):
    question, _ = exchange(conversation, "the first question", "an answer")
    page(alice_client, conversation)
    edited, reply = services.message_edit(message=question, content="the question, edited")
    finish(reply, "another answer")
    body = page(alice_client, conversation)
    assert "the question, edited" in body and "another answer" in body
    messages = body.split('id="messages"')[1]
    assert "the first question" not in messages and "2 / 2" in article(body, edited)


def test_each_page_carries_its_own_csrf_token_in_the_edit_forms(user, conversation):
    exchange(conversation, "q1", "a1")
    exchange(conversation, "q2", "a2")
    for _ in range(2):
        client = Client()
        client.force_login(user)
        body = page(client, conversation)
        secret = client.cookies["csrftoken"].value
        tokens = re.findall(r'name="csrfmiddlewaretoken" value="(\w+)"', body)
        assert len(tokens) >= 2
        assert {_unmask_cipher_token(token) for token in tokens} == {secret}


def test_articles_are_kept_per_owner(user, conversation):
    _, reply = exchange(conversation, "q", "a")
    node = next(n for n in selectors.message_tree(conversation=conversation) if n.pk == reply.pk)
    node.version_ids, node.version_number = (reply.pk,), 1
    mallory = User.objects.create_user("mallory", password="mallory-password")
    mine = article_cache._key(user.pk, conversation.pk, node)
    assert mine != article_cache._key(mallory.pk, conversation.pk, node)
    assert f":{user.pk}:{conversation.pk.hex}:{reply.pk}:" in mine


def test_another_users_page_is_refused_even_with_its_articles_cached(
    alice_client, user, conversation
):
    exchange(conversation, "a secret question", "a secret answer")
    assert "a secret answer" in page(alice_client, conversation)
    mallory = Client()
    mallory.force_login(User.objects.create_user("mallory", password="mallory-password"))
    response = mallory.get(reverse("chat:conversation_detail", args=[conversation.pk]))
    assert response.status_code == 404 and b"secret" not in response.content


def test_with_the_cache_away_the_page_is_drawn_without_it(alice_client, conversation, monkeypatch):
    exchange(conversation, "q", "an answer")
    expected = page(alice_client, conversation).count('<article id="m')

    def away(*args: Any, **kwargs: Any) -> None:
        raise redis.exceptions.ConnectionError("Connection refused")

    monkeypatch.setattr(article_cache.cache, "get_many", away)
    monkeypatch.setattr(article_cache.cache, "set_many", away)
    try:
        assert page(alice_client, conversation).count('<article id="m') == expected
        assert outages.redis.away
    finally:
        outages.redis.came_back()
