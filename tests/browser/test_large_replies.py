"""A reply too large for one WebSocket frame: the page fetches it over HTTP and shows it whole."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.support import BROWSER_MARKS, ChatPage, streamed

pytestmark = [*BROWSER_MARKS, pytest.mark.timeout(150)]

# Two pieces of ~650 KB: each delta is over the frame limit, the reply over daphne's 1 MiB.
PIECES = [
    "".join(
        f"Paragraph {i}: the quick brown fox jumps over the lazy dog, again and again.\n\n"
        for i in range(first, first + 8000)
    )
    for first in (0, 8000)
]


async def test_a_reply_over_a_mebibyte_is_fetched_and_shown_whole(
    page, server_factory, fake_upstream, watch
):
    server = server_factory(CHAT_MAX_REPLY_CHARS="4000000")
    fake_upstream.plan = streamed(PIECES, delay=1.0)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("Write a lot")
    await expect(chat.reply(reply_id)).to_have_attribute("data-status", "complete", timeout=60_000)
    content = chat.reply(reply_id).locator(".content.markdown p")
    await expect(content).to_have_count(16000, timeout=30_000)
    await expect(content.last).to_contain_text("Paragraph 15999: the quick")
    # It came over HTTP, as the fetch fragment asked, and the socket stayed open (a 1011
    # would have made the page reconnect).
    assert any(url.endswith(f"/messages/{reply_id}/") for url in watch.requests)
    assert await page.evaluate("() => window.__chatsiteWsOpen") == 1
    await expect(chat.reply(reply_id).get_by_role("button", name="Regenerate")).to_be_visible()
