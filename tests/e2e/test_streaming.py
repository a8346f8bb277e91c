"""End to end: a real daphne process, real WebSockets, a fake upstream on loopback."""

from __future__ import annotations

import asyncio
import html
import re

import pytest
from asgiref.sync import sync_to_async

from chat.markdown import render_markdown
from chat.models import Message
from tests.db_writes import install_write_counter, writes_to
from tests.fake_upstream import FakeRequest, reply_events
from tests.live import (
    TEST_API_KEY,
    ChatClient,
    PageModel,
    read_until_finished,
    reply_id_from,
    shown,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

TOKENS = [
    "Hello",
    " <b>world</b>",
    " & friends",
    ", here",
    " is",
    " a",
    " list:\n\n",
    "- one\n",
    "- two 🎉\n",
    "\n```python\n",
    "print('hi')\n",
    "```\n",
] + [f" w{i}" for i in range(48)]


async def test_reply_streams_to_the_socket_in_order_and_is_saved_once(
    start_server, fake_upstream, alice_session
):
    server = start_server()
    await sync_to_async(install_write_counter)()

    async def plan(request: FakeRequest):
        return await request.stream(reply_events(TOKENS, usage=(17, len(TOKENS))), delay=0.005)

    fake_upstream.plan = plan
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    async with client.socket(conversation_id) as ws:
        response = await client.send(conversation_id, "Say hello")
        assert response.status_code == 200
        assert "Say hello" in response.text
        reply_id = reply_id_from(response)
        page = await read_until_finished(ws, PageModel(), reply_id)
    await client.aclose()

    expected = "".join(TOKENS)
    # Every character arrived, in order, and the frames were coalesced (fewer than deltas).
    assert page.content(reply_id) == shown(expected)
    delta_frames = [f for f in page.frames if f'id="c{reply_id}" hx-swap-oob="beforeend"' in f]
    assert 1 <= len(delta_frames) < len(TOKENS)
    # The saved reply is exactly what was streamed, with its metadata.
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.content == expected
    assert reply.status == Message.Status.COMPLETE
    assert reply.finish_reason == "stop"
    assert (reply.prompt_tokens, reply.completion_tokens) == (17, len(TOKENS))
    assert reply.model == "fake-model"
    assert reply.time_to_first_token is not None and reply.duration is not None
    assert reply.duration >= reply.time_to_first_token
    # Created once, claimed once, saved once: no write per delta.
    assert await sync_to_async(writes_to)(reply_id) <= 3
    # The finished reply was swapped for rendered markdown, escaped and highlighted.
    final = page.finished[reply_id]
    assert "&lt;b&gt;world&lt;/b&gt;" in final and "<b>world</b>" not in final
    assert "<li>two 🎉</li>" in final
    assert '<code class="language-python">' in final and 'class="nb">print</span>' in final
    # The upstream got the conversation, streaming with usage, and the key.
    sent = fake_upstream.requests[0]
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["model"] == "fake-model"
    assert sent.body["messages"] == [{"role": "user", "content": "Say hello"}]
    assert sent.headers["Authorization"] == f"Bearer {TEST_API_KEY}"


async def test_a_reply_whose_last_delta_ends_in_a_lone_cr_ends_with_its_last_block_only(
    start_server, fake_upstream, alice_session
):
    """The CR held back (it may be half a CRLF) became a line end at the end, which moved the
    reply's cursor past where every tab stood: the tabs were sent the whole reply again (an
    opened thinking section closed), not its last block."""
    server = start_server()

    async def plan(request: FakeRequest):
        return await request.stream(reply_events(["# Title\n", "\nDone.\r"]), delay=0.05)

    fake_upstream.plan = plan
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    async with client.socket(conversation_id) as ws:
        reply_id = reply_id_from(await client.send(conversation_id, "Say done"))
        page = await read_until_finished(ws, PageModel(), reply_id)
    await client.aclose()
    ending = page.frames[-1]
    assert f'<article id="m{reply_id}"' not in ending and "<h1>" not in ending
    assert f'<div id="c{reply_id}" hx-swap-oob="beforeend"><p>Done.</p>' in ending
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.content, reply.content_html) == (
        "# Title\n\nDone.\r",
        "<h1>Title</h1>\n<p>Done.</p>\n",
    )


LIST_REPLY = (
    "Steps:\n\n1. Install **chatsite**\n2. Run it:\n   ```python\n   print(1)\n   ```\n"
    "3. Log in\n\nA list turned loose:\n\n- a\n- b\n\n- c\n- d\n\nDone."
)


async def test_a_list_streams_item_by_item_and_ends_as_the_one_shot_render(
    start_server, fake_upstream, alice_session
):
    """Each finished item goes into the list already on the page; a list a blank line turns
    loose is drawn again once; the reply ends with its last blocks, not drawn whole.

    The upstream waits for the page before the tokens the test is about, so a slow machine
    that coalesces more tokens into one frame still shows the list before it changes (CI
    once drew the second list loose from the start: nothing to draw again)."""
    server = start_server()
    tokens = re.findall(r"\s*\S+|\s+", LIST_REPLY)
    # piece i + 1 carries token i: send item 3 once item 1 is drawn, the blank line before
    # "- c" once item "a" is
    shown_before = {
        tokens.index("\n3.") + 1: "<li>Install",
        tokens.index("\n\n-", tokens.index(" b")) + 1: "<li>a</li>",
    }
    shown = {i: asyncio.Event() for i in shown_before}

    async def plan(request: FakeRequest):
        async def wait_for_the_page(i: int) -> None:
            if i in shown:
                await asyncio.wait_for(shown[i].wait(), 10)

        return await request.stream(
            reply_events(tokens), delay=0.01, before_piece=wait_for_the_page
        )

    fake_upstream.plan = plan
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    async with client.socket(conversation_id) as ws:
        reply_id = reply_id_from(await client.send(conversation_id, "How do I start?"))
        page = PageModel()
        async with asyncio.timeout(30):
            while reply_id not in page.finished:
                page.apply(await ws.recv())
                for i, text in shown_before.items():
                    if text in page.elements.get(f"c{reply_id}", ""):
                        fake_upstream.loop.call_soon_threadsafe(shown[i].set)
    await client.aclose()
    items = f'<div hx-swap-oob="beforeend:#c{reply_id} > :last-child">'
    assert any(items + "<li>Run it:" in f for f in page.frames), page.frames
    redrawn = f'<ul hx-swap-oob="outerHTML:#c{reply_id} > :last-child">'
    assert sum(f.count(redrawn) for f in page.frames) == 1
    assert f'<article id="m{reply_id}"' not in page.frames[-1]
    assert page.elements[f"c{reply_id}"] == render_markdown(LIST_REPLY)
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.content_html == render_markdown(LIST_REPLY)


TABLE_REPLY = (
    "Options:\n\n| option | default |\n|---|--:|\n| `--port` | 8000 |\n| **host** | 127.0.0.1 |\n"
    "| workers | 2 |\n\nDone."
)


async def test_a_table_streams_row_by_row_and_ends_as_the_one_shot_render(
    start_server, fake_upstream, alice_session
):
    """A table showed as text ("| option | default |") until a blank line ended it. From its
    head on it is a table: each row is added rendered once its line ends, and the row being
    written shows its cells' text as it comes; the reply ends as the one-shot render."""
    server = start_server()
    tokens = re.findall(r"\s*\S+|\s+", TABLE_REPLY)

    async def plan(request: FakeRequest):
        return await request.stream(reply_events(tokens), delay=0.01)

    fake_upstream.plan = plan
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    async with client.socket(conversation_id) as ws:
        reply_id = reply_id_from(await client.send(conversation_id, "Which options?"))
        page = PageModel()
        tables: list[str] = []
        async with asyncio.timeout(30):
            while reply_id not in page.finished:
                page.apply(await ws.recv())
                if f'<table id="x{reply_id}"' in page.elements.get(f"t{reply_id}", ""):
                    tables.append(page.elements[f"t{reply_id}"])
    await client.aclose()
    rows = f'<table hx-swap-oob="beforebegin:#z{reply_id}"><tbody>\n<tr>\n<td><code>--port</code>'
    assert any(rows in f for f in page.frames), page.frames
    assert any(f"#z{reply_id} > tr > :nth-child(" in f for f in page.frames), page.frames
    assert "<th>option</th>" in tables[0]
    assert "<td><strong>host</strong></td>" in tables[-1]  # the rows drawn, rendered
    assert page.elements[f"c{reply_id}"] == render_markdown(TABLE_REPLY)
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.content_html == render_markdown(TABLE_REPLY)


async def test_each_turn_sends_the_system_prompt_and_the_whole_conversation(
    start_server, fake_upstream, alice_session
):
    server = start_server()
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    from chat.models import Conversation

    await Conversation.objects.filter(pk=conversation_id).aupdate(system_prompt="Be brief.")
    async with client.socket(conversation_id) as ws:
        page = PageModel()
        first = reply_id_from(await client.send(conversation_id, "First question"))
        await read_until_finished(ws, page, first)
        second = reply_id_from(await client.send(conversation_id, "Second question"))
        await read_until_finished(ws, page, second)
    await client.aclose()
    assert fake_upstream.requests[1].body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "Hello, world!"},
        {"role": "user", "content": "Second question"},
    ]


async def test_a_long_conversation_sends_its_latest_turns_within_the_prompt_budget(
    start_server, fake_upstream, alice_session
):
    """Every turn went upstream, each up to 100,000 characters: a long conversation ended in
    the model server's "too long" error, and each request was larger than the last."""
    server = start_server(CHAT_MAX_PROMPT_CHARS="200")
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    from chat.models import Conversation

    await Conversation.objects.filter(pk=conversation_id).aupdate(system_prompt="Be brief.")
    questions = [f"Question {i}: " + "x" * 60 for i in range(4)]
    async with client.socket(conversation_id) as ws:
        page = PageModel()
        for question in questions:
            reply_id = reply_id_from(await client.send(conversation_id, question))
            await read_until_finished(ws, page, reply_id)
    await client.aclose()
    # 72 + 13 characters a turn: the last two fit in 200 with the system prompt (9).
    assert fake_upstream.requests[-1].body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": questions[2]},
        {"role": "assistant", "content": "Hello, world!"},
        {"role": "user", "content": questions[3]},
    ]
    # The conversation itself keeps every turn.
    assert await Message.objects.filter(conversation_id=conversation_id).acount() == 8


async def test_twenty_conversations_stream_at_the_same_time(
    start_server, fake_upstream, alice_session
):
    server = start_server()
    expected_streams = 20
    all_arrived: dict[str, asyncio.Event] = {}

    async def plan(request: FakeRequest):
        # Hold every stream open until all 20 requests have arrived: a consumer that streams
        # one generation at a time never gets past the first.
        arrived = all_arrived.setdefault("event", asyncio.Event())
        if len(fake_upstream.requests) >= expected_streams:
            arrived.set()
        pieces = reply_events([f"reply {request.index}", " done"])

        async def hold(i: int) -> None:
            if i == 1:
                await asyncio.wait_for(arrived.wait(), 60)

        return await request.stream(pieces, before_piece=hold)

    fake_upstream.plan = plan
    client = ChatClient(server, alice_session)
    conversations = [await client.create_conversation() for _ in range(expected_streams)]
    replies = await asyncio.gather(
        *(client.send(c, f"question {i}") for i, c in enumerate(conversations))
    )
    reply_ids = [reply_id_from(r) for r in replies]

    async def all_complete() -> bool:
        count = await Message.objects.filter(
            pk__in=reply_ids, status=Message.Status.COMPLETE
        ).acount()
        return count == expected_streams

    await wait_for(all_complete, timeout=60)
    await client.aclose()
    assert len(fake_upstream.requests) == expected_streams
    contents = [m.content async for m in Message.objects.filter(pk__in=reply_ids)]
    assert all(c.startswith("reply ") and c.endswith(" done") for c in contents)


async def test_the_api_key_never_reaches_the_page_or_the_logs(
    start_server, fake_upstream, alice_session
):
    server = start_server(CHAT_LOG_LEVEL="DEBUG")

    async def plan(request: FakeRequest):
        # A hostile or careless upstream that echoes the key in its error message.
        return await request.error(401, f"Incorrect API key provided: {TEST_API_KEY}")

    fake_upstream.plan = plan
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    async with client.socket(conversation_id) as ws:
        reply_id = reply_id_from(await client.send(conversation_id, "hi"))
        page = await read_until_finished(ws, PageModel(), reply_id)
    page_source = (await client.http.get(f"/c/{conversation_id}/")).text
    await client.aclose()
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.status == Message.Status.ERROR
    assert "Incorrect API key provided" in reply.error
    for text in (page_source, "".join(page.frames), reply.error, server.log_text()):
        assert TEST_API_KEY not in html.unescape(text)
    assert len(fake_upstream.requests) == 1  # a 401 is not retried


async def test_demo_model_streams_without_any_configuration(start_server, alice_session):
    server = start_server(
        OPENAI_BASE_URL="",
        OPENAI_API_KEY="",
        CHAT_MODEL="",
        CHAT_DEMO_MIN_TPS="400",
        CHAT_DEMO_MAX_TPS="800",
    )
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    page_source = (await client.http.get(f"/c/{conversation_id}/")).text
    assert "demo model" in page_source and "OPENAI_BASE_URL" in page_source
    async with client.socket(conversation_id) as ws:
        reply_id = reply_id_from(await client.send(conversation_id, "What is this?"))
        page = await read_until_finished(ws, PageModel(), reply_id)
    await client.aclose()
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.status == Message.Status.COMPLETE
    assert page.content(reply_id) == shown(reply.content)
    assert "demo model" in reply.content and "```python" in reply.content
    assert '<code class="language-python">' in page.finished[reply_id]
