"""Stopping a reply, and reloading the page while it streams."""

from __future__ import annotations

import os
import time

import pytest
from playwright.async_api import expect

from chat.models import Message
from tests.browser.pages import SCHEMES, SIZES, axe_problems, sideways_scrolls
from tests.browser.support import BROWSER_MARKS, ChatPage, eventually, normalize, streamed
from tests.e2e import scenarios
from tests.slow_tool import HeldTool

pytestmark = BROWSER_MARKS

# Distinct numbered tokens: a repeated or missing piece of text is visible in the result.
LONG_TOKENS = [f"t{i:03d} " for i in range(200)]
LONG_TEXT = "".join(LONG_TOKENS)
# Where the tool test saves its pictures, to be looked at (unset: none).
SCREENSHOTS = os.environ.get("CHATSITE_TOOL_SCREENSHOTS", "")


@pytest.mark.parametrize("how", ["button", "escape"])
async def test_stop_ends_the_reply_within_a_second_and_keeps_the_text(
    page, server, fake_upstream, how
):
    fake_upstream.plan = streamed(LONG_TOKENS, delay=0.04)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("Count for me")
    shown = await chat.wait_for_text(reply_id, len("t000 ") * 8)

    started = time.monotonic()
    if how == "button":
        await page.locator("#composer").get_by_role("button", name="Stop").click()
    else:
        await expect(chat.composer).to_be_focused()
        await page.keyboard.press("Escape")
    stopped_note = chat.reply(reply_id).locator(".reply-note")
    await expect(stopped_note).to_have_text("Stopped.", timeout=3000)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"Stop took {elapsed:.2f} s"

    await expect(chat.reply(reply_id)).to_have_attribute("data-status", "cancelled")
    saved = await Message.objects.aget(pk=reply_id)
    assert saved.status == "cancelled"
    # The text so far is kept: what was on screen at the click, perhaps a few words more.
    assert saved.content.startswith(shown), (shown, saved.content)
    assert LONG_TEXT.startswith(saved.content) and len(saved.content) < len(LONG_TEXT)
    shown_after = await chat.reply(reply_id).locator(".content.markdown").inner_text()
    assert normalize(shown_after) == normalize(saved.content)
    await expect(page.locator("#composer").get_by_role("button", name="Stop")).to_have_count(0)
    await expect(chat.reply(reply_id).get_by_role("button", name="Retry")).to_be_visible()
    # The worker let go of the upstream stream.
    await eventually(lambda: fake_upstream.disconnects == 1, message="upstream not closed")


async def test_reload_during_a_reply_shows_the_text_so_far_and_continues_without_repeats(
    page, server, fake_upstream
):
    tokens = LONG_TOKENS[:100]
    full = "".join(tokens)
    fake_upstream.plan = streamed(tokens, delay=0.04)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("Count for me")
    before = await chat.wait_for_text(reply_id, len("t000 ") * 15)

    await page.reload()
    reloaded = time.monotonic()
    # At once: the page (or the snapshot its socket asks for) shows everything seen before.
    at_once = await chat.wait_for_text(reply_id, len(before), timeout=2)
    assert time.monotonic() - reloaded < 1.0
    assert full.startswith(at_once)

    samples = await chat.sample_until_finished(reply_id)
    bad = [s for s in samples if not full.startswith(s)]
    assert not bad, f"text repeated or missing while streaming: {bad[0]!r}"
    lengths = [len(s) for s in samples]
    assert lengths == sorted(lengths), "the text shrank"
    partial = {n for n in lengths if n < len(full)}
    assert len(partial) >= 3, "the reply did not continue live after the reload"

    await chat.wait_finished(reply_id)
    final = await chat.reply(reply_id).locator(".content.markdown").inner_text()
    assert final.strip() == full.strip()
    saved = await Message.objects.aget(pk=reply_id)
    assert (saved.status, saved.content) == ("complete", full)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_running_tool_shows_on_the_status_line_and_stop_ends_the_turn_there(
    page, watch, server_factory, fake_upstream, viewport, scheme, tmp_path
):
    """While the reply's tool runs, its status line says which; the page is clean, accessible
    and fits. Stop then ends the turn at once: the reply says Stopped, keeps its text and the
    call's card, and no follow-up appears."""
    tool = HeldTool(tmp_path)
    server = server_factory(**tool.env())
    scenarios.slow_tool_plan(fake_upstream, calls=1)
    await page.emulate_media(color_scheme=scheme)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("Look it up")
    reply = chat.reply(reply_id)
    status_line = reply.locator(".status-line")
    await expect(status_line).to_have_text("Running slow_lookup…")
    await expect(status_line).to_have_attribute("role", "status")
    await expect(reply.locator(".tool-call")).to_contain_text("slow_lookup")
    await page.locator("#composer-text").blur()
    await picture(page, f"tool-running-{viewport['width']}-{scheme}")
    assert await axe_problems(page) == []
    assert await sideways_scrolls(page) == []

    await page.locator("#composer").get_by_role("button", name="Stop").click()
    await expect(reply.locator(".reply-note")).to_have_text("Stopped.", timeout=5000)
    await expect(reply).to_have_attribute("data-status", "cancelled")
    await expect(reply).not_to_contain_text("Running slow_lookup")
    await expect(reply.locator(".content.markdown")).to_have_text("Looking it up.")
    await expect(reply.locator(".tool-call")).to_contain_text("slow_lookup")
    await expect(reply.get_by_role("button", name="Retry")).to_be_visible()
    await expect(page.locator("#messages article")).to_have_count(2)
    assert not tool.said("ended")  # the turn ended while the tool ran
    await picture(page, f"tool-stopped-{viewport['width']}-{scheme}")
    tool.release()
    assert watch.console_errors == [] and watch.csp_violations == []


async def picture(page, name: str) -> None:
    if SCREENSHOTS:
        await page.screenshot(path=f"{SCREENSHOTS}/{name}.png")


async def test_escape_in_another_field_is_that_fields_and_does_not_stop_the_reply(
    page, server, fake_upstream
):
    """Escape stopped the streaming reply wherever the focus was: in the sidebar's search box
    (whose own Escape, clearing it, it took) the rest of the answer was lost. It stops the
    reply from the message box only, or from the page."""
    fake_upstream.plan = streamed(LONG_TOKENS, delay=0.04)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("Count for me")
    await chat.wait_for_text(reply_id, len("t000 ") * 4)
    search = page.locator("#sidebar-search")
    await search.fill("lisbon")
    await search.press("Escape")
    await expect(search).to_have_value("")  # (a search box's own Escape)
    shown = await chat.wait_for_text(reply_id, 0)
    await chat.wait_for_text(reply_id, len(shown) + len("t000 ") * 4)  # it goes on
    await expect(chat.reply(reply_id).locator(".reply-note")).to_have_count(0)

    await page.locator("#messages").click(position={"x": 5, "y": 5})  # the page
    await page.keyboard.press("Escape")
    await expect(chat.reply(reply_id).locator(".reply-note")).to_have_text("Stopped.")
