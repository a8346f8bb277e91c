"""chat.links.url gives what Django's reverse gives, reversing each name once."""

from __future__ import annotations

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
