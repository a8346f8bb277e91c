"""Durability scenarios shared by the single-process and the Redis + PostgreSQL topologies."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from chat.models import Message
from tests.fake_upstream import FakeRequest, FakeUpstream, chunk, reply_events, sse
from tests.live import (
    ChatClient,
    PageModel,
    ServerProcess,
    read_until_finished,
    reply_id_from,
    shown,
    wait_for,
)

SLOW_TOKENS = [f"word{i} " for i in range(80)]


def slow_plan(fake_upstream: FakeUpstream, tokens: list[str] = SLOW_TOKENS, delay: float = 0.03):
    async def plan(request: FakeRequest):
        return await request.stream(reply_events(tokens), delay=delay)

    fake_upstream.plan = plan
    return "".join(tokens)


async def long_reply_under_way(
    sender: ChatClient, conversation_id: Any, ws: Any, page: PageModel, chars: int = 40
) -> int:
    """Send a message (its reply streams slowly: `slow_plan`) and read `ws` until `page`
    shows `chars` characters of the reply; the reply's id."""
    reply_id = reply_id_from(await sender.send(conversation_id, "long one"))
    while len(page.content(reply_id)) < chars:
        page.apply(await asyncio.wait_for(ws.recv(), 10))
    return reply_id


def first_answer_held(fake_upstream: FakeUpstream) -> None:
    """The first request gets its response's headers and then nothing (a model that has not
    produced its first token), until its client goes away; every later one answers at once."""

    async def plan(request: FakeRequest):
        if request.index == 0:
            never = asyncio.Event()

            async def wait_forever(index: int) -> None:
                await never.wait()

            return await request.stream(
                reply_events(fake_upstream.tokens), before_piece=wait_forever
            )
        return await request.stream(reply_events(fake_upstream.tokens))

    fake_upstream.plan = plan


def slow_tool_plan(
    fake_upstream: FakeUpstream, calls: int, answer: list[str] | None = None, delay: float = 0.0
) -> None:
    """The first request answers "Looking it up." and calls the slow tool (tests/slow_tool.py)
    `calls` times; every later one answers "Found it." (or `answer`, a token each `delay`)."""

    async def plan(request: FakeRequest):
        if request.index == 0:
            tool_calls = [
                {
                    "index": n,
                    "id": f"call_{n}",
                    "type": "function",
                    "function": {"name": "slow_lookup", "arguments": "{}"},
                }
                for n in range(calls)
            ]
            pieces = [
                sse(chunk("Looking it up.", role="assistant")),
                sse(chunk(tool_calls=tool_calls)),
                sse(chunk(finish_reason="tool_calls")),
                b"data: [DONE]\n\n",
            ]
            return await request.stream(pieces)
        return await request.stream(reply_events(answer or ["Found ", "it."]), delay=delay)

    fake_upstream.plan = plan


async def reconnect_mid_stream(
    web: list[ServerProcess], session: str, fake_upstream: FakeUpstream, *, pause: float, seed: int
) -> None:
    """Close the socket at a random delta, reconnect after `pause` (to the other web process if
    there are two), and check the tab ends with exactly the saved text, which is exactly what
    the upstream sent."""
    expected = slow_plan(fake_upstream, delay=0.06)  # ~5 s: still streaming after the pause
    first = ChatClient(web[0], session)
    conversation_id = await first.create_conversation()
    page = PageModel()
    async with first.socket(conversation_id) as ws:
        reply_id = reply_id_from(await first.send(conversation_id, "tell me a long story"))
        stop_after = random.Random(seed).randint(2, 12)
        frames = 0
        while frames < stop_after:
            page.apply(await asyncio.wait_for(ws.recv(), 10))
            frames += 1
    seen_before = page.content(reply_id)
    await asyncio.sleep(pause)
    second = ChatClient(web[-1], session)
    async with second.socket(conversation_id) as ws:
        # What chat.js does on every (re)connect: ask for each reply still shown as streaming.
        await ws.send(f'{{"resync": {reply_id}}}')
        await read_until_finished(ws, page, reply_id)
    await first.aclose()
    await second.aclose()
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.error) == ("complete", "")
    assert reply.content == expected
    assert expected.startswith(seen_before)
    # Snapshot plus live deltas: every character exactly once, in order.
    assert page.content(reply_id) == shown(expected)
    assert expected.replace(" ", "") in _text_of(page.finished[reply_id]).replace(" ", "")


def _text_of(article_html: str) -> str:
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", article_html)).replace("\n", "")


async def watched_from_two_tabs(
    web: list[ServerProcess], session: str, fake_upstream: FakeUpstream
) -> None:
    expected = slow_plan(fake_upstream, delay=0.01)
    tabs = [ChatClient(server, session) for server in (web[0], web[-1])]
    conversation_id = await tabs[0].create_conversation()
    pages = [PageModel(), PageModel()]
    async with tabs[0].socket(conversation_id) as ws0, tabs[1].socket(conversation_id) as ws1:
        reply_id = reply_id_from(await tabs[0].send(conversation_id, "hello both"))
        await asyncio.gather(
            read_until_finished(ws0, pages[0], reply_id),
            read_until_finished(ws1, pages[1], reply_id),
        )
    for tab in tabs:
        await tab.aclose()
    assert pages[0].content(reply_id) == pages[1].content(reply_id) == shown(expected)
    assert (await Message.objects.aget(pk=reply_id)).content == expected


async def closing_the_tab_keeps_generating(
    web: list[ServerProcess], session: str, fake_upstream: FakeUpstream
) -> None:
    expected = slow_plan(fake_upstream, delay=0.01)
    client = ChatClient(web[0], session)
    conversation_id = await client.create_conversation()
    async with client.socket(conversation_id) as ws:
        reply_id = reply_id_from(await client.send(conversation_id, "go on without me"))
        await asyncio.wait_for(ws.recv(), 10)
    await client.aclose()

    async def complete() -> bool:
        reply = await Message.objects.aget(pk=reply_id)
        return reply.status == "complete"

    await wait_for(complete, timeout=30)
    assert (await Message.objects.aget(pk=reply_id)).content == expected
