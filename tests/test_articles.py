"""chat.articles builds a finished message's article: the same markup, byte for byte, as the
template's `message-article` partial, in every state a finished message can be in."""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.template.loader import render_to_string

from chat import articles, fragments
from chat.models import WORKER_DIED, Message

CONVERSATION = uuid.UUID("12345678-1234-5678-1234-567812345678")
HOSTILE = "<script>alert(\"x\")</script> & 'quotes'"


def _message(**fields: Any) -> Message:
    versions = fields.pop("versions", (40,))
    number = fields.pop("number", 1)
    message = Message(pk=versions[number - 1], conversation_id=CONVERSATION, **fields)
    message.version_ids, message.version_number = versions, number
    return message


def _template(message: Message, *, oob: bool = False, csrf_token: str | None = None) -> str:
    context: dict[str, Any] = {"message": message, "oob": oob}
    if csrf_token is not None:
        context["csrf_token"] = csrf_token
    return render_to_string("chat/conversation.html#message-article", context)


def _replies() -> list[Message]:
    statuses = ["complete", "error", "interrupted", "cancelled"]
    finishes = ["stop", "length", "content_filter", "tool_calls", ""]
    replies = []
    for status, finish, error, content in itertools.product(
        statuses, finishes, ["", HOSTILE, WORKER_DIED], ["", "Some text"]
    ):
        replies.append(
            _message(
                role="assistant",
                status=status,
                finish_reason=finish,
                error=error,
                content=content,
                content_html=f"<p>{content}</p>" if content else "",
            )
        )
    rng = random.Random(14)
    for _ in range(300):
        replies.append(
            _message(
                role="assistant",
                status=rng.choice(statuses),
                finish_reason=rng.choice(finishes),
                error=rng.choice(["", HOSTILE]),
                content=rng.choice(["", "text"]),
                content_html="<p>text</p>",
                reasoning=rng.choice(["", "thinking"]),
                reasoning_html="<p>thinking</p>",
                tool_calls=rng.choice(
                    [
                        [],
                        [{"id": "c1", "name": "lookup", "arguments": '{"q": "<b>"}'}],
                        [{"id": "c1", "name": "", "arguments": "not json"}, {"id": "c2"}],
                        [{"id": "c1", "name": HOSTILE, "arguments": HOSTILE}],
                    ]
                ),
                feedback=rng.choice(["", "up", "down"]),
                feedback_comment=rng.choice(["", HOSTILE]),
                prompt_tokens=rng.choice([None, 0, 12, 123456]),
                completion_tokens=rng.choice([None, 0, 7, 1234567]),
                time_to_first_token=rng.choice(
                    [None, timedelta(0), timedelta(milliseconds=300), timedelta(seconds=2.54)]
                ),
                duration=rng.choice([None, timedelta(seconds=3), timedelta(seconds=12.3)]),
                versions=rng.choice([(40,), (40, 41), (39, 40, 41)]),
                number=1,
                parent_id=rng.choice([None, 5]),
            )
        )
    return replies


def _others() -> list[Message]:
    messages = []
    for content, versions, number, parent in itertools.product(
        ["Hello", HOSTILE, "line one\nline two\r\n\nthree", ""],
        [(40,), (40, 41), (39, 40)],
        [1, 2],
        [None, 7],
    ):
        if number <= len(versions):
            messages.append(
                _message(
                    role="user",
                    status="complete",
                    content=content,
                    versions=versions,
                    number=number,
                    parent_id=parent,
                )
            )
    for content, calls in itertools.product(
        ['{"temperature": 21, "city": "Zürich"}', HOSTILE, ""],
        [[], [{"tool_call_id": "c1", "name": "weather"}], [{"name": HOSTILE}], [{}]],
    ):
        messages.append(_message(role="tool", status="complete", content=content, tool_calls=calls))
    return messages


@pytest.mark.parametrize("oob", [False, True])
@pytest.mark.parametrize("csrf_token", [None, "t0ken<&>"])
def test_a_finished_message_is_built_as_the_template_draws_it(oob, csrf_token):
    for message in _replies() + _others():
        expected = _template(message, oob=oob, csrf_token=csrf_token)
        built = articles.finished_message(message, oob=oob, csrf_token=csrf_token)
        assert built == expected, message.__dict__


def test_the_message_partial_draws_a_finished_message_with_the_builder_and_a_streaming_one_with_the_template():
    finished = _message(role="assistant", status="complete", content="a", content_html="<p>a</p>")
    streaming = _message(role="assistant", status="streaming", content="a b")
    for message in (finished, streaming):
        assert render_to_string("chat/conversation.html#message", {"message": message}) == (
            _template(message)
        )
    assert fragments.message(finished) == _template(finished, oob=True)


def test_hostile_text_is_escaped_everywhere():
    reply = _message(
        role="assistant",
        status="error",
        error=HOSTILE,
        content=HOSTILE,
        content_html="<p>safe</p>",
        feedback="up",
        feedback_comment=HOSTILE,
        finish_reason=HOSTILE,
        tool_calls=[{"id": "c", "name": HOSTILE, "arguments": HOSTILE}],
    )
    user = _message(role="user", status="complete", content=HOSTILE)
    for message in (reply, user):
        assert "<script>" not in articles.finished_message(message)


def test_the_end_of_a_finished_reply_is_built_as_the_template_draws_it():
    for reply in _replies():
        expected = render_to_string("chat/conversation.html#reply-finished", {"message": reply})
        assert fragments.reply_finished(reply) == expected, reply.__dict__


def test_streaming_tool_calls_are_built_as_the_template_draws_them():
    for calls in ([], [{"id": "c", "name": "", "arguments": '{"a": 1}'}, {"name": HOSTILE}]):
        expected = render_to_string(
            "chat/conversation.html#tool-calls",
            {"message_id": 9, "tool_calls": calls, "oob": True},
        )
        assert fragments.tool_calls(9, calls) == expected


def _streaming() -> list[Message]:
    texts = [
        "",
        "Hello **world**\n\nA second paragraph",
        "Some code:\n\n```python\nx = 1\n",
        HOSTILE,
    ]
    replies = []
    for status, content, reasoning, calls, versions in itertools.product(
        ["pending", "streaming"],
        texts,
        ["", "thinking about <it>", "# Plan\n\n- one\n- two"],
        [[], None, [{"id": "c1", "name": HOSTILE, "arguments": '{"q": 1}'}]],
        [(40,), (39, 40)],
    ):
        reply = _message(
            role="assistant",
            status=status,
            content=content,
            reasoning=reasoning,
            versions=versions,
            number=len(versions),
            parent_id=5,
        )
        reply.tool_calls = calls  # type: ignore[assignment]
        replies.append(reply)
    return replies


@pytest.mark.parametrize("oob", [False, True])
def test_a_reply_still_generated_is_built_as_the_template_draws_it(oob):
    for reply in _streaming():
        expected = _template(reply, oob=oob)
        built = articles.streaming_reply(reply, view=fragments.streaming_view(reply), oob=oob)
        assert built == expected, reply.__dict__
        assert fragments.article(reply, oob=oob) == expected
        partial = render_to_string("chat/conversation.html#message", {"message": reply, "oob": oob})
        assert partial == expected


@pytest.mark.parametrize("csrf_token", [None, "t0ken<&>"])
def test_the_message_list_draws_each_message_as_its_partial_does(csrf_token):
    messages = _replies()[:40] + _others() + _streaming()[:20]
    context: dict[str, Any] = {"messages": messages}
    if csrf_token is not None:
        context["csrf_token"] = csrf_token
    each = "".join(
        render_to_string("chat/conversation.html#message", {**context, "message": message})
        for message in messages
    )
    empty = render_to_string("chat/conversation.html#message-list", {"messages": []})
    drawn = render_to_string("chat/conversation.html#message-list", context)
    assert drawn == empty[:1] + each + empty[1:]


@pytest.mark.parametrize("title", ["", "A title", HOSTILE, "  spaced  "])
@pytest.mark.parametrize(("oob", "oob_sidebar"), [(True, True), (True, False), (False, False)])
def test_the_title_is_the_templates(title: str, oob: bool, oob_sidebar: bool):
    from chat.models import Conversation

    conversation = Conversation(id=CONVERSATION, title=title)
    context = {"conversation": conversation, "oob": oob, "oob_sidebar": oob_sidebar}
    expected = render_to_string(fragments.TITLE_TEMPLATE, context)
    assert articles.conversation_title(conversation, oob=oob, oob_sidebar=oob_sidebar) == expected
    if oob and oob_sidebar:
        assert fragments.conversation_title(conversation) == expected


STOPPED = "The reply was interrupted: The server streaming this reply stopped."
SAVED = " What was saved before it stopped is kept; the reply&#x27;s last seconds may be missing."
CUT = "The reply was interrupted: The connection to the model ended."
RECEIVED = " Everything received so far is kept."


@pytest.mark.parametrize(
    ("error", "content", "reasoning", "notice"),
    [
        (WORKER_DIED, "", "", STOPPED + "</p>"),
        (WORKER_DIED, "Half an answer", "", STOPPED + SAVED + "</p>"),
        (WORKER_DIED, "", "Some thinking", STOPPED + SAVED + "</p>"),
        ("The connection to the model ended.", "", "", CUT + "</p>"),
        ("The connection to the model ended.", "Half an answer", "", CUT + RECEIVED + "</p>"),
    ],
)
def test_an_interrupted_reply_says_what_of_its_text_is_kept(error, content, reasoning, notice):
    """A worker killed before the reply's first checkpoint leaves it interrupted and empty: the
    notice said everything received was kept, and with the lease-lapse reason, said it twice.
    One killed later keeps its text as last saved, up to a checkpoint interval before: the
    notice said everything received was kept, and the tab had shown more."""
    reply = _message(
        role="assistant",
        status="interrupted",
        error=error,
        content=content,
        reasoning=reasoning,
    )
    drawn = articles.reply_end(reply, oob=False)
    assert notice in drawn and drawn.count("kept") == (1 if content or reasoning else 0), drawn


@pytest.mark.django_db
def test_replies_interrupted_before_say_the_reason_once_too(user):
    """Their stored reason still held the second sentence; the migration drops it."""
    import importlib

    from django.apps import apps

    from chat.models import Conversation
    from chat.services import WORKER_DIED

    migration = importlib.import_module("chat.migrations.0009_worker_died_said_once")
    conversation = Conversation.objects.create(owner=user)
    old = Message.objects.create(
        conversation=conversation, role="assistant", status="interrupted", error=migration.OLD
    )
    other = Message.objects.create(
        conversation=conversation, role="assistant", status="error", error="Upstream said no."
    )
    migration.forwards(apps, None)
    old.refresh_from_db()
    other.refresh_from_db()
    assert (old.error, other.error) == (WORKER_DIED, "Upstream said no.")


@pytest.mark.parametrize("content", ["", "an answer"])
def test_a_reply_without_text_has_nothing_to_copy(content):
    """Copy on a reply that only called tools, or was stopped before its first word, emptied
    the clipboard and said "Copied" (found by a walk-through)."""
    reply = _message(
        role=Message.Role.ASSISTANT,
        status=Message.Status.COMPLETE,
        content=content,
        finish_reason="tool_calls" if not content else "stop",
    )
    for html in (fragments.reply_finished(reply), _template(reply)):
        assert ("copy-button" in html) == bool(content)
