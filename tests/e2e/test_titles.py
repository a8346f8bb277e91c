"""Titles: the first words at once, then a short title the model writes in the background."""

from __future__ import annotations

import asyncio

import pytest

from chat.models import Conversation, Message
from chat.titles import TITLE_PROMPT
from tests.fake_upstream import FakeRequest, reply_events
from tests.live import ChatClient, PageModel, read_until_finished, reply_id_from, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


def asks_for_title(request: FakeRequest) -> bool:
    return request.body["messages"][0] == {"role": "system", "content": TITLE_PROMPT}


async def test_the_model_titles_the_conversation_and_every_tab_is_told(
    start_server, fake_upstream, alice_session
):
    server = start_server(CHAT_GENERATE_TITLES="true")

    async def plan(request: FakeRequest):
        if asks_for_title(request):
            return await request.stream(reply_events(['"Weekend in ', 'Lisbon"']))
        # Slow enough that the first-words title can be read before the model's replaces it.
        return await request.stream(reply_events(["Pack ", "light."]), delay=0.3)

    fake_upstream.plan = plan
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    async with client.socket(conversation_id) as ws:
        response = await client.send(conversation_id, "what should I pack for two days in lisbon")
        reply_id = reply_id_from(response)
        conversation = await Conversation.objects.aget(pk=conversation_id)
        assert conversation.title == "what should I pack for two days in…"
        page = await read_until_finished(ws, PageModel(), reply_id)
        async with asyncio.timeout(10):
            while not any('id="conversation-title"' in f for f in page.frames):
                page.apply(await ws.recv())
    await client.aclose()
    title_frame = next(f for f in page.frames if 'id="conversation-title"' in f)
    assert "Weekend in Lisbon" in title_frame and f'id="conv-link-{conversation_id}"' in title_frame
    conversation = await Conversation.objects.aget(pk=conversation_id)
    assert (conversation.title, conversation.title_source) == ("Weekend in Lisbon", "model")
    title_request = next(r for r in fake_upstream.requests if asks_for_title(r))
    assert "what should I pack" in title_request.body["messages"][1]["content"]
    assert "Pack light." in title_request.body["messages"][1]["content"]


async def test_the_first_words_stay_when_the_title_request_fails(
    start_server, fake_upstream, alice_session
):
    server = start_server(CHAT_GENERATE_TITLES="true", CHAT_MAX_RETRIES="0")

    async def plan(request: FakeRequest):
        if asks_for_title(request):
            return await request.error(500, "title service down")
        return await request.stream(reply_events(["Sure."]))

    fake_upstream.plan = plan
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    await client.send(conversation_id, "hello there")

    async def title_attempted() -> bool:
        return any(asks_for_title(r) for r in fake_upstream.requests)

    await wait_for(title_attempted)
    await asyncio.sleep(0.3)
    await client.aclose()
    conversation = await Conversation.objects.aget(pk=conversation_id)
    assert (conversation.title, conversation.title_source) == ("hello there", "words")


async def test_a_title_the_user_set_is_never_overwritten(
    start_server, fake_upstream, alice_session
):
    server = start_server(CHAT_GENERATE_TITLES="true")
    fake_upstream.plan = fake_upstream.default_plan
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    await Conversation.objects.filter(pk=conversation_id).aupdate(title="Mine", title_source="user")
    reply_id = reply_id_from(await client.send(conversation_id, "hi"))

    async def replied() -> bool:
        from chat.models import Message

        return (await Message.objects.aget(pk=reply_id)).status == "complete"

    await wait_for(replied)
    await asyncio.sleep(0.3)
    await client.aclose()
    assert (await Conversation.objects.aget(pk=conversation_id)).title == "Mine"
    assert len(fake_upstream.requests) == 1


async def test_the_title_is_asked_from_the_first_turn_the_conversation_shows(
    start_server, fake_upstream, alice_session
):
    """The first question was edited after its reply failed: the model was asked to title
    the abandoned question and its empty reply, by the order the messages were made."""
    server = start_server(CHAT_GENERATE_TITLES="true", CHAT_MAX_RETRIES="0")

    async def plan(request: FakeRequest):
        if asks_for_title(request):
            return await request.stream(reply_events(["Sourdough at home"]))
        if request.index == 0:
            return await request.error(500, "The upstream fell over")
        return await request.stream(reply_events(["Mix flour ", "and water."]))

    fake_upstream.plan = plan
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    async with client.socket(conversation_id) as ws:
        first_reply = reply_id_from(await client.send(conversation_id, "hello wrold typo"))
        page = await read_until_finished(ws, PageModel(), first_reply)
        question = (await Message.objects.aget(pk=first_reply)).parent_id
        edited = await client.http.post(
            f"/c/{conversation_id}/messages/{question}/edit/",
            data={"content": "How do I bake sourdough bread"},
            headers={"X-CSRFToken": await client.csrf(), "HX-Request": "true"},
        )
        assert edited.status_code == 200, edited.text
        await read_until_finished(ws, page, reply_id_from(edited))

    async def titled() -> bool:
        return (await Conversation.objects.aget(pk=conversation_id)).title_source == "model"

    await wait_for(titled)
    await client.aclose()
    transcript = next(r for r in fake_upstream.requests if asks_for_title(r)).body["messages"][1]
    assert "sourdough" in transcript["content"] and "Mix flour and water." in transcript["content"]
    assert "wrold" not in transcript["content"]
