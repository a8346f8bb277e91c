"""The demo model's answer to Continue: the rest of its reply, after the text so far."""

from __future__ import annotations

import pytest

from chat.streaming.completion import CONTINUE_PROMPT
from chat.streaming.demo import NOTHING_TO_CONTINUE, demo_reply_for

QUESTION = [{"role": "user", "content": "How does the streaming work?"}]


def continued(so_far: str) -> list[dict[str, str]]:
    """What a generation sends for Continue (chat.streaming.generation)."""
    return [
        *QUESTION,
        {"role": "assistant", "content": so_far},
        {"role": "user", "content": CONTINUE_PROMPT},
    ]


@pytest.mark.parametrize("cut", [1, 37, 400, -1])
def test_continue_goes_on_from_the_text_so_far(cut):
    """Found by a walk-through: the demo answered Continue with its whole reply again, about
    the Continue instruction ("You asked about: Continue exactly where..."), glued after the
    text kept."""
    whole = demo_reply_for(QUESTION)
    so_far = whole[:cut]
    rest = demo_reply_for(continued(so_far))
    assert so_far + rest == whole and "Continue exactly" not in rest


def test_continue_on_a_text_not_its_own_says_so():
    assert demo_reply_for(continued("Another model's words")) == NOTHING_TO_CONTINUE


def test_the_demo_echoes_the_question_as_it_was_typed() -> None:
    """The demo's reply shows the question in italics: its own marks ("*.py", "`pytest`",
    "**verbose**") were taken for markdown, the stars dropped and the backticks made code."""
    from chat.markdown import render_markdown

    question = "Use *.py files, `pytest` and **verbose** <b>_x_</b> [a](b) \\ ok"
    html = render_markdown(demo_reply_for([{"role": "user", "content": question}]))
    assert (
        "You asked about: <em>Use *.py files, `pytest` and **verbose** "
        "&lt;b&gt;_x_&lt;/b&gt; [a](b) \\ ok</em>" in html
    )
