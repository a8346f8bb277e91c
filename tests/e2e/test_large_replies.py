"""End to end: a reply too large for one WebSocket frame reaches the page over HTTP, whole; and
a reply stops at CHAT_MAX_REPLY_CHARS."""

from __future__ import annotations

import asyncio
import html
import re

import pytest

from chat.consumers import MAX_FRAME_BYTES
from chat.markdown import render_markdown
from chat.models import Message
from tests.fake_upstream import FakeRequest, chunk, reply_events, sse
from tests.live import ChatClient, PageModel, read_until_finished, reply_id_from, text_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(150)]

FETCH = re.compile(r'hx-get="([^"]+)" hx-trigger="load" hx-target="#m(\d+)" hx-swap="outerHTML"')


def paragraphs(first: int, count: int) -> str:
    return "".join(
        f"Paragraph {i}: the quick brown fox jumps over the lazy dog, **again** and again.\n\n"
        for i in range(first, first + count)
    )


async def fetched_article(client: ChatClient, frame: str, reply_id: int) -> str:
    """Do what the fetch fragment makes the page do: GET the message; returns its article."""
    (url, target), *_ = FETCH.findall(frame)
    assert int(target) == reply_id
    response = await client.http.get(url, headers={"HX-Request": "true"})
    assert response.status_code == 200, response.text
    assert response.text.strip().startswith(f'<article id="m{reply_id}"')
    return response.text


def status_of(article: str) -> str:
    return re.search(r'data-status="(\w+)"', article).group(1)


async def test_a_reply_too_large_for_a_frame_reaches_the_page_over_http(
    start_server, fake_upstream, alice_session
):
    # Two pieces of ~650 KB: each delta alone is over the frame limit, and the finished reply
    # (~1.3 MB of markdown) is over daphne's 1 MiB, which used to close the socket with 1011.
    pieces = [paragraphs(0, 8000), paragraphs(8000, 8000)]
    expected = "".join(pieces)
    assert len(expected.encode()) > 1.2 * 2**20
    server = start_server(CHAT_MAX_REPLY_CHARS=str(2 * len(expected)))

    async def plan(request: FakeRequest):
        return await request.stream(reply_events(pieces), delay=0.5)

    fake_upstream.plan = plan
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    async with client.socket(conversation_id) as ws:
        reply_id = reply_id_from(await client.send(conversation_id, "write a lot"))
        article = ""
        async with asyncio.timeout(90):
            while status_of(article or 'data-status="streaming"') != "complete":
                frame = await ws.recv()
                assert len(frame.encode()) <= MAX_FRAME_BYTES
                if FETCH.search(frame):
                    article = await fetched_article(client, frame, reply_id)
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.content) == ("complete", expected)
    shown = text_of(article)
    assert "Paragraph 0: the quick" in shown and "Paragraph 15999: the quick" in shown
    assert shown.count("Paragraph ") == 16000

    # A tab opened now (a reload) asks for the finished reply: it gets a fetch fragment, not a
    # 1011, and the fetch brings the whole reply.
    async with client.socket(conversation_id) as ws:
        await ws.send(f'{{"resync": {reply_id}}}')
        frame = await asyncio.wait_for(ws.recv(), 20)
        assert len(frame) < 1000 and FETCH.search(frame)
        assert (await fetched_article(client, frame, reply_id)) == article
    await client.aclose()


async def test_a_reply_stops_at_the_size_limit_with_a_notice(
    start_server, fake_upstream, alice_session
):
    server = start_server(CHAT_MAX_REPLY_CHARS="1000")
    tokens = [f"word{i:04d} " for i in range(2000)]  # 18,000 characters, ~10 s

    async def plan(request: FakeRequest):
        return await request.stream(reply_events(tokens), delay=0.005)

    fake_upstream.plan = plan
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    async with client.socket(conversation_id) as ws:
        reply_id = reply_id_from(await client.send(conversation_id, "go on forever"))
        page = await read_until_finished(ws, PageModel(), reply_id, timeout=60)
    await client.aclose()
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.status == Message.Status.COMPLETE
    assert reply.finish_reason == "size_limit"
    assert reply.content == "".join(tokens)[:1000]
    assert reply.error == "The reply reached the size limit (1,000 characters)."
    assert "The reply reached the size limit (1,000 characters)." in html.unescape(
        page.finished[reply_id]
    )
    # The upstream was not read to the end: the connection was closed early.
    request = fake_upstream.requests[0]
    for _ in range(50):
        if request.disconnected:
            break
        await asyncio.sleep(0.1)
    assert request.disconnected and not request.finished
    assert len(request.sent_at) < len(tokens)


async def test_a_tool_calls_arguments_count_toward_the_size_limit_and_stream_cut_short(
    start_server, fake_upstream, alice_session
):
    """The size limit counted text only: a model streaming a call's arguments (offered tools
    or not) went on to the total timeout, all of it saved, and each frame sent every tab the
    arguments so far again (bytes growing with their square)."""
    server = start_server(CHAT_MAX_REPLY_CHARS="10000", CHAT_GENERATE_TITLES="false")
    argument = "1+" * 500

    async def plan(request: FakeRequest):
        call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "calculate"}}
        pieces = [sse(chunk(role="assistant", tool_calls=[call]))]
        pieces += [
            sse(chunk(tool_calls=[{"index": 0, "function": {"arguments": argument}}]))
            for _ in range(300)  # 300,000 characters
        ]
        pieces += [sse(chunk(finish_reason="tool_calls")), b"data: [DONE]\n\n"]
        return await request.stream(pieces, delay=0.01)

    fake_upstream.plan = plan
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    async with client.socket(conversation_id) as ws:
        reply_id = reply_id_from(await client.send(conversation_id, "add up"))
        page = await read_until_finished(ws, PageModel(), reply_id, timeout=60)
    await client.aclose()
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.finish_reason) == ("complete", "size_limit")
    assert reply.tool_calls == []  # calls cut mid-stream are not run, nor kept
    streamed = [frame for frame in page.frames if "Tool call:" in frame]
    assert streamed, "the call was shown while it streamed"
    assert max(len(frame) for frame in streamed) < 4_000
    assert len(streamed) <= 4  # once its first 2,000 characters are shown, the card stays
    assert sum(len(frame) for frame in page.frames) < 200_000
    assert len(fake_upstream.requests[0].sent_at) < 100  # read no further than the limit


async def test_a_continuation_that_reaches_the_size_limit_keeps_the_text_from_before(
    start_server, fake_upstream, alice_session
):
    """A reply cut at the token limit is continued, and the continuation's thinking reaches
    the size limit: the cut takes the new thinking, never the text saved and shown before.
    It kept the new thinking and cut the answer from before to make room."""
    server = start_server(CHAT_MAX_REPLY_CHARS="100")
    before, thinking_before = "A" * 50, "t" * 10

    async def plan(request: FakeRequest):
        role, *_ = reply_events([])
        if request.index == 0:
            cut = reply_events([before], finish_reason="length")
            return await request.stream(
                [role, sse(chunk(reasoning_content=thinking_before)), *cut[1:]]
            )
        thinking = [sse(chunk(reasoning_content="r" * 15)) for _ in range(3)]
        return await request.stream([role, *thinking, *reply_events(["more"])[1:]])

    fake_upstream.plan = plan
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    async with client.socket(conversation_id) as ws:
        reply_id = reply_id_from(await client.send(conversation_id, "a long answer, please"))
        page = await read_until_finished(ws, PageModel(), reply_id)
        page.finished.clear()
        response = await client.continue_reply(conversation_id, reply_id)
        assert response.status_code == 200, response.text
        await read_until_finished(ws, page, reply_id)
    await client.aclose()
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.finish_reason, reply.content) == ("size_limit", before)
    # Room for 100 characters: the 60 from before, the joint, then 38 of the new thinking.
    assert reply.reasoning == thinking_before + "\n\n" + "r" * 38
    # Stored and shown as saved, not as streamed (45 characters of the new thinking came).
    assert reply.reasoning_html == render_markdown(reply.reasoning)
    assert before in text_of(page.finished[reply_id])
    assert "r" * 38 in page.finished[reply_id] and "r" * 39 not in page.finished[reply_id]
