"""chat.links.url gives what Django's reverse gives, reversing each name once."""

from __future__ import annotations

import re
import uuid

import pytest
from django.urls import get_script_prefix, reverse, set_script_prefix

from chat import links

CONVERSATION = uuid.UUID("0a1b2c3d-1234-5678-9abc-def012345678")
NAMES = [
    ("chat:start", ()),
    ("chat:conversation_sidebar", ()),
    ("logout", ()),
    ("admin:index", ()),
    ("chat:conversation_detail", (CONVERSATION,)),
    ("chat:conversation_rename", (CONVERSATION,)),
    ("chat:message_create", (CONVERSATION,)),
    ("chat:message_edit", (CONVERSATION, 42)),
    ("chat:message_stop", (CONVERSATION, 987654321)),
]


@pytest.fixture
def prefix():
    before = get_script_prefix()
    yield set_script_prefix
    set_script_prefix(before)


@pytest.mark.parametrize(("name", "args"), NAMES)
@pytest.mark.parametrize("script_prefix", ["/", "/chat/"])
def test_the_url_is_what_reverse_gives(name, args, script_prefix, prefix):
    prefix(script_prefix)
    for _ in range(2):  # reversed, then formatted
        assert links.url(name, *args) == reverse(name, args=args)
    other = tuple(uuid.uuid4() if isinstance(a, uuid.UUID) else a + 1 for a in args)
    assert links.url(name, *other) == reverse(name, args=other)


def test_other_arguments_are_reversed_as_django_does():
    assert links.url("chat:conversation_detail", str(CONVERSATION)) == reverse(
        "chat:conversation_detail", args=[str(CONVERSATION)]
    )


@pytest.mark.parametrize("debug", [False, True])
def test_the_page_head_is_what_static_and_htmx_script_draw(settings, debug):
    """`{% asset %}` and `{% htmx_scripts %}` (found once per process) draw what Django's
    `{% static %}` and django-htmx's `{% htmx_script %}` draw, for each STATIC_URL, but
    django-htmx's debug script: with DEBUG on it drew Django's error page over the page for
    an action refused with 404 (a message sent in a conversation deleted in another tab), the
    text typed with it lost."""
    from django.template import engines

    from chat.templatetags import chat_tags

    settings.DEBUG = debug
    chat_tags._htmx_scripts.cache_clear()

    engine = engines["django"]
    ours = engine.from_string(
        "{% load chat_tags %}{% asset 'chat/chat.css' %}|{% asset 'a b&c.js' %}|"
        '{% htmx_scripts "hx-ws" %}'
    )
    django_s = engine.from_string(
        "{% load static django_htmx %}{% static 'chat/chat.css' %}|{% static 'a b&c.js' %}|"
        '{% htmx_script extensions="hx-ws" %}'
    )
    debug_script = re.compile(r'<script src="[^"]*django-htmx\.js"[^>]*></script>')

    def without_debug(html: str) -> str:
        found = debug_script.findall(html)
        assert len(found) == debug, html  # django-htmx's own draws it with DEBUG on
        return debug_script.sub("", html)

    for static_url in ("/static/", "/assets/"):
        settings.STATIC_URL = static_url
        assert ours.render({}) == without_debug(django_s.render({}))
        assert static_url in ours.render({}) and "django-htmx.js" not in ours.render({})
    nonce = {"csp_nonce": "n0nce"}
    assert ours.render(nonce).split("|")[2] == without_debug(django_s.render(nonce)).split("|")[2]
    chat_tags._htmx_scripts.cache_clear()


@pytest.mark.parametrize("script_prefix", ["/", "/chat/"])
def test_a_conversations_url_is_reverses(prefix, script_prefix):
    from chat.models import Conversation

    prefix(script_prefix)
    for conversation_id in (CONVERSATION, uuid.uuid4()):
        conversation = Conversation(id=conversation_id)
        expected = reverse("chat:conversation_detail", args=[conversation_id])
        assert conversation.get_absolute_url() == expected
        assert expected.startswith(script_prefix)
