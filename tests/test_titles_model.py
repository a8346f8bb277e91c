"""Titles the model writes: cleaned of quotes and markup, and kept only when they improve on
the first words of the conversation."""

from __future__ import annotations

import httpx
import pytest

from chat import titles
from chat.models import Conversation
from chat.streaming.client import ChatCompletionsClient
from chat.streaming.demo import DemoStream, DemoTransport


@pytest.mark.parametrize(
    ("answer", "title"),
    [
        ('"Weekend in Lisbon"', "Weekend in Lisbon"),
        ("“Weekend in Lisbon.”", "Weekend in Lisbon"),
        ("'Packing list'", "Packing list"),
        ("**Weekend in Lisbon**", "Weekend in Lisbon"),
        ("# Weekend in Lisbon", "Weekend in Lisbon"),
        ("Title: `asyncio` basics.", "asyncio basics"),
        ('Title: "Cat *poems* in space"', "Cat poems in space"),
        ("  Trip   planning\tfor\u00a0two  \nA second line", "Trip planning for two"),
        ("\n\nLisbon on a budget...", "Lisbon on a budget"),
        ("Why is the sky blue?", "Why is the sky blue?"),
        ("C# tips for beginners", "C# tips for beginners"),
        ("Lis\0bon\0 trip", "Lisbon trip"),  # PostgreSQL refuses NUL: no title was saved
    ],
)
def test_a_model_title_is_cleaned_of_quotes_markup_and_the_final_period(answer, title):
    assert titles.clean_title(answer) == title


def test_a_long_model_title_is_cut_to_80_characters_at_a_word():
    title = titles.clean_title("Lisbon " * 30)
    assert len(title) <= titles.MAX_TITLE_LENGTH
    assert title.endswith("Lisbon") and "  " not in title


@pytest.mark.parametrize(
    ("generated", "current", "improves"),
    [
        ("Hello! can you write a", "Hello! Can you write a poem about cats in…", False),
        ("hello there", "hello there", False),
        ("Hello there", "hello there", False),
        ("what should I pack", "what should I pack for two days in…", False),
        ("", "hello there", False),
        ("Weekend in Lisbon", "what should I pack for two days in…", True),
        ("Write a poem about cats", "Hello! Can you write a poem about cats in…", True),
        ("Anything", "", True),
    ],
)
def test_a_generated_title_improves_only_if_it_is_not_the_first_words_again(
    generated, current, improves
):
    assert titles.title_improves(generated=generated, current=current) is improves


def _answering(text: str) -> ChatCompletionsClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            stream=DemoStream(text, "m", (5000.0, 10000.0)),
        )

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://up/v1/")
    return ChatCompletionsClient(http)


def _demo() -> ChatCompletionsClient:
    http = httpx.AsyncClient(transport=DemoTransport((5000.0, 10000.0)), base_url="http://up/v1/")
    return ChatCompletionsClient(http)


async def _conversation_titled(user, first_message: str) -> Conversation:
    conversation = await Conversation.objects.acreate(
        owner=user, model="demo", title=first_message, title_source="words"
    )
    await conversation.messages.acreate(role="user", content=first_message)
    await conversation.messages.acreate(role="assistant", content="Sure.", status="complete")
    return conversation


@pytest.mark.django_db(transaction=True)
async def test_the_first_words_stay_when_the_model_answers_with_them_again(user, monkeypatch):
    """And the model is not asked again after every reply (it was, each request with up to
    4,000 characters of transcript, none of it counted toward the owner's tokens)."""
    from asgiref.sync import sync_to_async

    from chat import limits

    asked = []

    def answering():
        asked.append(1)
        return _answering("hello there.")

    monkeypatch.setattr(titles, "chat_completions_client", answering)
    monkeypatch.setattr(titles.events, "conversation_updated", _no_event)
    conversation = await _conversation_titled(user, "Hello there")
    await titles.title_generate(conversation.pk)
    await conversation.arefresh_from_db()
    assert (conversation.title, conversation.title_source) == ("Hello there", "asked")
    await titles.title_generate(conversation.pk)  # the next reply's
    assert len(asked) == 1
    # The request's tokens count (the demo stream reports none: an estimate, >= 10 tokens).
    assert await sync_to_async(limits._tokens_spent_today)(user.pk) >= 10


@pytest.mark.django_db(transaction=True)
async def test_a_better_model_title_replaces_the_first_words_cleaned(user, monkeypatch):
    monkeypatch.setattr(
        titles, "chat_completions_client", lambda: _answering('**"Weekend in Lisbon."**')
    )
    monkeypatch.setattr(titles.events, "conversation_updated", _no_event)
    conversation = await _conversation_titled(user, "what should I pack for two days in…")
    await titles.title_generate(conversation.pk)
    await conversation.arefresh_from_db()
    assert (conversation.title, conversation.title_source) == ("Weekend in Lisbon", "model")


@pytest.mark.django_db(transaction=True)
async def test_a_title_that_fails_to_save_keeps_the_count_of_its_tokens(user, monkeypatch):
    """Found by a second read: the count and the title are saved in one transaction, and a
    database error on the title (a deadlock, say) took the count with it."""
    from asgiref.sync import sync_to_async
    from django.db import OperationalError

    from chat import limits

    monkeypatch.setattr(
        titles, "chat_completions_client", lambda: _answering('**"Weekend in Lisbon."**')
    )
    monkeypatch.setattr(titles.events, "conversation_updated", _no_event)

    class Failing:
        def execute(self, **params: object) -> int:
            raise OperationalError("deadlock detected")

    monkeypatch.setattr(titles, "_RETITLE", Failing())
    conversation = await _conversation_titled(user, "what should I pack for two days in…")
    await titles.title_generate(conversation.pk)
    await conversation.arefresh_from_db()
    assert conversation.title_source == "words"
    assert await sync_to_async(limits._tokens_spent_today)(user.pk) >= 10


@pytest.mark.django_db(transaction=True)
async def test_in_demo_mode_a_greeting_keeps_its_first_words_title(user, monkeypatch):
    monkeypatch.setattr(titles, "chat_completions_client", _demo)
    monkeypatch.setattr(titles.events, "conversation_updated", _no_event)
    conversation = await _conversation_titled(user, "hello there, how are you")
    await titles.title_generate(conversation.pk)  # the demo answers "Hello there"
    await conversation.arefresh_from_db()
    assert (conversation.title, conversation.title_source) == ("hello there, how are you", "asked")


@pytest.mark.django_db(transaction=True)
async def test_a_title_request_cut_at_its_timeout_still_counts_its_tokens(user, monkeypatch):
    """Counted only when the title came: one that timed out was asked again at the next reply,
    uncounted each time."""
    from asgiref.sync import sync_to_async

    from chat import limits

    def slow() -> ChatCompletionsClient:
        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(
                200,
                headers={"content-type": "text/event-stream"},
                stream=DemoStream("a very slow title indeed", "m", (2.0, 2.0)),
            )

        http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://up/v1/")
        return ChatCompletionsClient(http)

    monkeypatch.setattr(titles, "chat_completions_client", slow)
    monkeypatch.setattr(titles, "TITLE_TIMEOUT_SECONDS", 0.3)
    conversation = await _conversation_titled(user, "tell me about lisbon")
    await conversation.messages.filter(role="user").aupdate(content="lisbon " * 100)
    await titles.title_generate(conversation.pk)
    await conversation.arefresh_from_db()
    assert conversation.title_source == "words"  # asked again at the next reply
    assert await sync_to_async(limits._tokens_spent_today)(user.pk) >= 150  # the transcript


async def _no_event(conversation_id: object) -> None:
    return None


@pytest.mark.parametrize(
    ("message", "title"),
    [
        ("Explain **markdown** tables please", "Explain markdown tables please"),
        ("# Deploying on Fly\nwith Postgres", "Deploying on Fly with Postgres"),
        ("- `pip install` fails", "pip install fails"),
        ("> quoted text first", "quoted text first"),
        ("what is 2 + 2?", "what is 2 + 2?"),
        (
            "one two three four five six seven eight nine",
            "one two three four five six seven eight…",
        ),
        # Chinese and Japanese: no blanks between words, a character is half a word, and the
        # title ends at a clause's end near its end (it was the whole message, up to 80)
        ("什么是量子计算？请用简单的语言解释一下。", "什么是量子计算…"),
        ("请帮我写一个Python脚本，用来批量重命名文件夹中的所有图片文件", "请帮我写一个Python脚本…"),
        (
            "Pythonでファイル名を一括変更するスクリプトを書いて",
            "Pythonでファイル名を一括変更するス…",
        ),
        ("怎么安装？", "怎么安装？"),
        ("파이썬으로 파일 이름을 일괄 변경하는 방법", "파이썬으로 파일 이름을 일괄 변경하는 방법"),
    ],
)
def test_the_first_title_is_the_first_words_without_markdowns_marks(message, title):
    """The first title, made of the first message's first words, showed its marks
    ("Explain **markdown** tables") in the header, the sidebar and the tab; a Chinese or
    Japanese message was its title whole."""
    from chat import services

    assert services.title_from(message) == title
