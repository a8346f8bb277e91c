"""chat.pages builds the conversation page and the start page: the same HTML, byte for byte, as
their templates draw with the context their views gave them, in every state of the page."""

from __future__ import annotations

import itertools
import re
import uuid
from typing import Any

import pytest
from django.middleware import csrf
from django.template.loader import render_to_string
from django.test import RequestFactory

from chat import article_cache, pages, selectors, services
from chat.context_processors import DEMO_NOTICE_COOKIE
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db

HOSTILE = "<script>alert(\"x\")</script> & 'quotes' {braces}"
KEY = uuid.UUID("0f0e0d0c-0b0a-0908-0706-050403020100")


@pytest.fixture(autouse=True)
def fixed_csrf_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same token for the template and the builder (each call of get_token masks anew)."""
    token = "t0ken-<&>'\""
    monkeypatch.setattr("django.template.context_processors.get_token", lambda request: token)
    monkeypatch.setattr("chat.pages.get_token", lambda request: token)


def _request(user: Any, path: str = "/") -> Any:
    request = RequestFactory().get(path)
    request.user = user
    return request


def _conversation_page(request: Any, conversation: Conversation, **changes: Any) -> None:
    context: dict[str, Any] = {
        "conversation": conversation,
        "sidebar": selectors.conversation_sidebar_page(user=request.user, current=conversation.pk),
        "messages": article_cache.page_messages(conversation=conversation),
        "idempotency_key": KEY,
        "models": ["demo", "gpt-4o-mini"],
    }
    context.update(changes)
    expected = render_to_string("chat/conversation.html", context, request=request)
    assert pages.conversation_page(request, **context) == expected


@pytest.mark.parametrize(
    ("title", "system_prompt", "pinned", "archived"),
    [
        *itertools.product(["", "A title"], ["", "Be brief."], [False, True], [False, True]),
        (HOSTILE, HOSTILE, False, False),
    ],
)
def test_the_conversation_page_is_the_templates(
    user: Any, title: str, system_prompt: str, pinned: bool, archived: bool
) -> None:
    conversation = Conversation.objects.create(
        owner=user,
        title=title,
        model="gpt-4o-mini",
        system_prompt=system_prompt,
        pinned=pinned,
        archived=archived,
    )
    Conversation.objects.create(owner=user, title=HOSTILE, model="demo")
    _conversation_page(_request(user), conversation)


@pytest.mark.parametrize("demo_mode", [False, True])
@pytest.mark.parametrize("staff", [False, True])
def test_the_conversation_page_with_messages_is_the_templates(
    user: Any, settings: Any, demo_mode: bool, staff: bool
) -> None:
    settings.CHAT_DEMO_MODE = demo_mode
    user.is_staff = staff
    user.username = HOSTILE
    user.save()
    conversation = services.conversation_create(owner=user, model=HOSTILE)
    question = Message.objects.create(
        conversation=conversation, role="user", content=HOSTILE, status="complete"
    )
    Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        status="complete",
        content="An answer",
        content_html="<p>An answer</p>",
    )
    for models in ([], [HOSTILE, "demo"], ["demo"]):
        _conversation_page(_request(user), conversation, models=models)
    # A reply still being generated is drawn by the template's own tags too.
    Message.objects.create(
        conversation=conversation, parent=question, role="assistant", status="pending"
    )
    _conversation_page(_request(user), conversation)


def _start_page(request: Any, **changes: Any) -> None:
    context: dict[str, Any] = {
        "sidebar": selectors.conversation_sidebar_page(
            user=request.user, query=request.GET.get("q", "")
        ),
        "idempotency_key": KEY,
        "models": ["demo", "gpt-4o-mini"],
        "default_model": "gpt-4o-mini",
    }
    context.update(changes)
    expected = render_to_string("chat/start.html", context, request=request)
    assert pages.start_page(request, **context) == expected


@pytest.mark.parametrize("demo_mode", [False, True])
@pytest.mark.parametrize("staff", [False, True])
@pytest.mark.parametrize("query", ["", "title", HOSTILE])
def test_the_start_page_is_the_templates(
    user: Any, settings: Any, demo_mode: bool, staff: bool, query: str
) -> None:
    settings.CHAT_DEMO_MODE = demo_mode
    user.is_staff = staff
    user.save()
    for i in range(3):
        Conversation.objects.create(owner=user, title=f"A title {i}", model="demo")
    request = _request(user, "/?" + "&".join([f"q={query}"] if query else []))
    _start_page(request)
    _start_page(request, models=[], default_model="")
    _start_page(request, models=[HOSTILE, "demo"], default_model=HOSTILE)


@pytest.mark.parametrize("cookie", ["hidden", "something else"])
def test_the_demo_notice_the_person_hid_is_left_out_as_the_templates(
    user: Any, settings: Any, cookie: str
) -> None:
    settings.CHAT_DEMO_MODE = True
    request = _request(user)
    request.COOKIES[DEMO_NOTICE_COOKIE] = cookie
    _start_page(request)
    conversation = Conversation.objects.create(owner=user, title="A title", model="demo")
    _conversation_page(request, conversation)
    page = pages.conversation_page(
        request,
        conversation=conversation,
        sidebar=selectors.conversation_sidebar_page(user=user, current=conversation.pk),
        messages=[],
        idempotency_key=KEY,
        models=["demo"],
    )
    assert ('class="demo-notice"' in page) == (cookie != "hidden")


def test_the_pages_carry_the_requests_csrf_token(user: Any, monkeypatch: pytest.MonkeyPatch):
    """The token the page draws (body headers and every form) is the request's own."""
    request = _request(user)
    monkeypatch.setattr("chat.pages.get_token", csrf.get_token)
    page = pages.start_page(
        request,
        sidebar=selectors.conversation_sidebar_page(user=user),
        idempotency_key=KEY,
        models=["demo"],
        default_model="demo",
    )
    secret = request.META["CSRF_COOKIE"]  # the token is set as the response's cookie
    tokens = re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert len(tokens) == 2
    assert {csrf._unmask_cipher_token(token) for token in tokens} == {secret}
    assert f'"X-CSRFToken": "{tokens[0]}"' in page


def test_the_pages_static_urls_are_escaped_as_the_templates(user: Any, settings: Any) -> None:
    settings.STATIC_URL = "https://cdn.example.com/a&b'c/"
    request = _request(user)
    _start_page(request)
    conversation = Conversation.objects.create(owner=user, title="A title", model="demo")
    _conversation_page(request, conversation)


@pytest.mark.parametrize("title", ["", "A title", HOSTILE])
def test_a_turns_answer_is_the_templates_new_messages(user: Any, title: str) -> None:
    conversation = Conversation.objects.create(owner=user, title=title, model="demo")
    for content in ("A question", HOSTILE):
        request = _request(user)
        question, reply = services.message_submit(conversation=conversation, content=content)
        context = {
            "conversation": conversation,
            "new_messages": [question, reply],
            "idempotency_key": KEY,
        }
        expected = render_to_string("chat/conversation.html#new-messages", context, request=request)
        built = pages.new_messages(
            request, conversation=conversation, messages=[question, reply], idempotency_key=KEY
        )
        assert built == expected
        Message.objects.filter(pk=reply.pk).update(status="complete")
