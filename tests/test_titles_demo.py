"""The demo model's answer to a title request: a short title from the user's first words."""

from __future__ import annotations

import pytest

from chat.streaming.demo import demo_title_for
from chat.titles import TITLE_PROMPT


def title_request(first_message: str) -> list[dict[str, str]]:
    """The messages chat.titles sends: the instruction, then the first exchange as text."""
    transcript = f"User: {first_message}\nAssistant: This is the **demo model** talking."
    return [
        {"role": "system", "content": TITLE_PROMPT},
        {"role": "user", "content": transcript},
    ]


@pytest.mark.parametrize(
    ("first_message", "title"),
    [
        ("Hello! can you write a poem about cats in space?", "Write a poem about cats"),
        ("Hello! Can you write a poem about cats in space?", "Write a poem about cats"),
        ("what should I pack for two days in Lisbon", "What should I pack"),
        ("Explain Python's GIL, with examples please", "Explain Python's GIL"),
        ("Hi, could you please summarise the French Revolution", "Summarise the French Revolution"),
        ("Compare PostgreSQL and SQLite for a small web app", "Compare PostgreSQL and SQLite"),
        ("hello there", "Hello there"),
        ("Tips for iOS and macOS", "Tips for iOS and macOS"),
        ("What is **`asyncio`** for?", "What is asyncio for"),
        ("   ", "Demo conversation"),
        ("什么是量子计算？请用简单的语言解释一下。", "什么是量子计算"),
        ("请帮我写一个Python脚本，用来批量重命名文件", "请帮我写一个Python脚本"),
    ],
)
def test_the_demo_title_is_a_short_phrase_in_the_users_own_capitals(first_message, title):
    assert demo_title_for(title_request(first_message)) == title


@pytest.mark.parametrize(
    "first_message",
    [
        "Can you tell me about the history of the printing press and its effects on Europe",
        "I would like a recipe for a vegetarian lasagne that feeds eight people tonight",
        "Please list the steps to set up a Django project with Channels and Redis",
    ],
)
def test_the_demo_title_has_at_most_six_words_and_no_dangling_end(first_message):
    title = demo_title_for(title_request(first_message))
    words = title.split()
    assert 1 <= len(words) <= 6, title
    assert words[-1].lower() not in {"a", "an", "the", "to", "of", "for", "and", "you", "can"}
    assert title[-1].isalnum(), title
    assert title[0].isupper(), title
