"""The page across a server restart (a deploy) that comes before the model's first word."""

from __future__ import annotations

import asyncio
import re
import signal

from playwright.async_api import expect

from chat.models import Message
from tests.browser.support import BROWSER_MARKS, ChatPage, eventually
from tests.e2e import scenarios

pytestmark = BROWSER_MARKS


async def test_a_restart_before_the_first_word_still_brings_the_reply(
    page, watch, server_factory, fake_upstream
):
    """The server is stopped while the model has not answered: the page says it is
    reconnecting, and once the server is back the reply it was waiting for streams in, with
    no reload and no Retry: the stopping server handed it back rather than failing it."""
    scenarios.first_answer_held(fake_upstream)
    server = server_factory()
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("Hello?")
    await eventually(lambda: len(fake_upstream.requests) == 1, message="the model was not asked")

    reply_box = await chat.reply(reply_id).bounding_box()
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.process.wait, 10) == 0
    status = page.locator("#connection-status")
    await expect(status).to_have_text("Reconnecting…", timeout=3000)
    await expect(status).to_be_visible()
    assert await chat.reply(reply_id).bounding_box() == reply_box  # nothing moved
    assert (await Message.objects.aget(pk=reply_id)).status == "pending"

    # Each attempt to reach the stopped server is logged, by the browser and by htmx's
    # WebSocket extension (its htmx:wsError, an Event). The server comes back only once the
    # page has tried it at least once (its first retry's jitter can outlast a quick restart).
    refused = re.compile(
        rf"WebSocket connection to 'ws://127\.0\.0\.1:{server.port}/ws/.*failed"
        r"|^error: \[object Event\] \(http://127\.0\.0\.1:\d+/static/django_htmx/htmx-2\.min\.js\)$"
    )
    await eventually(
        lambda: any(refused.search(e) for e in watch.console_errors),
        message="the page did not try the stopped server",
    )

    fake_upstream.plan = fake_upstream.default_plan
    server_factory(port=server.port)  # the same address: the page reconnects to it
    # The page's retries back off (full jitter, up to 8 s between attempts by now).
    await expect(status).to_have_text("", timeout=20_000)
    await chat.wait_finished(reply_id)
    await expect(chat.reply(reply_id).locator(".content.markdown")).to_have_text("Hello, world!")
    assert (await Message.objects.aget(pk=reply_id)).content == "Hello, world!"
    # Nothing else went wrong.
    watch.console_errors[:] = [e for e in watch.console_errors if not refused.search(e)]
