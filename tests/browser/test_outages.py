"""The page while Redis is away: it says so, reconnects, and catches up."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import expect

from chat.models import Message
from tests.browser.support import BROWSER_MARKS, ChatPage, normalize, streamed

pytestmark = [*BROWSER_MARKS, pytest.mark.services]

TOKENS = [f"t{i:03d} " for i in range(120)]


async def test_the_page_says_reconnecting_while_redis_is_away_and_then_catches_up(
    page, redis_server, server_factory, start_server, fake_upstream
):
    start_server(worker=True, REDIS_URL=redis_server.url)
    server = server_factory(REDIS_URL=redis_server.url)
    fake_upstream.plan = streamed(TOKENS, delay=0.05)  # 6 s
    chat = ChatPage(page, server)
    await chat.new_conversation()
    status = page.locator("#connection-status")
    await expect(status).to_have_attribute("role", "status")  # a polite live region
    await expect(status).to_have_text("")
    reply_id = await chat.send("Count for me")
    await chat.wait_for_text(reply_id, len("t000 ") * 5)

    redis_server.kill()
    await expect(status).to_have_text("Reconnecting…", timeout=3000)
    await expect(status).to_be_visible()
    await asyncio.sleep(2)
    redis_server.start()
    await expect(status).to_have_text("", timeout=15_000)

    await chat.wait_finished(reply_id)
    full = "".join(TOKENS)
    shown = await chat.reply(reply_id).locator(".content.markdown").inner_text()
    assert normalize(shown) == normalize(full)
    saved = await Message.objects.aget(pk=reply_id)
    assert (saved.status, saved.content) == ("complete", full)
