"""A reply that fails shows why, and Retry streams a new one in its place."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from chat.models import Message
from tests.browser.pages import SCHEMES, SIZES, check_looks
from tests.browser.support import BROWSER_MARKS, ChatPage, streamed
from tests.fake_upstream import reply_events

pytestmark = BROWSER_MARKS

RETRY_TOKENS = ["Second", " time", " lucky", "."] + [f" w{i}" for i in range(16)]


async def http_500(request):
    return await request.error(500, "The upstream fell over")


async def cut_stream(request):
    return await request.stream(reply_events(["kept ", "text ", "lost"]), cut_after=3)


@pytest.mark.parametrize(
    ("plan", "status", "shown"),
    [
        (http_500, "error", ".reply-error"),
        (cut_stream, "interrupted", ".reply-warning"),
    ],
    ids=["http-500", "cut-stream"],
)
async def test_a_failed_reply_shows_the_error_and_retry_streams_a_new_one(
    page, server_factory, fake_upstream, plan, status, shown
):
    server = server_factory(CHAT_MAX_RETRIES="0")
    fake_upstream.plan = plan
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("Try this")
    reply = chat.reply(reply_id)

    await chat.wait_finished(reply_id, status=status)
    saved = await Message.objects.aget(pk=reply_id)
    assert saved.status == status and saved.error
    if status == "error":
        await expect(reply.locator(".reply-error")).to_contain_text("Error:")
        await expect(reply.locator(".reply-error")).to_contain_text("The upstream fell over")
        # The error line is an alert, read as it shows; it is not said a second time as
        # "Reply error." (found by a walk-through)
        await expect(reply.get_by_role("alert")).to_have_count(1)
        await page.wait_for_timeout(100)  # (the page's own announcement comes a turn later)
        await expect(page.locator("#announcer")).to_have_text("")
    else:
        await expect(reply.locator(".reply-warning")).to_contain_text("The reply was interrupted")
        await expect(reply.locator(".content.markdown")).to_have_text("kept text")
    await expect(reply.locator(shown)).to_be_visible()
    assert len(fake_upstream.requests) == 1

    fake_upstream.plan = streamed(RETRY_TOKENS, delay=0.03)
    await reply.get_by_role("button", name="Retry").click()

    # A new version of the reply streams in its place, live, and ends complete with no trace
    # of the failure; the failed version is kept.
    replies = page.locator("#messages article.assistant")
    await expect(replies.last).not_to_have_attribute("id", f"m{reply_id}")
    await expect(replies).to_have_count(1)
    retry_id = int((await replies.get_attribute("id") or "")[1:])
    reply = chat.reply(retry_id)
    await chat.wait_for_text(retry_id, 1)
    await chat.wait_finished(retry_id)
    await expect(reply.locator(".content.markdown")).to_have_text("".join(RETRY_TOKENS))
    await expect(reply.locator(".reply-error, .reply-warning")).to_have_count(0)
    await expect(reply.get_by_role("button", name="Regenerate")).to_be_visible()
    saved = await Message.objects.aget(pk=retry_id)
    assert (saved.status, saved.content, saved.error) == ("complete", "".join(RETRY_TOKENS), "")
    assert (await Message.objects.aget(pk=reply_id)).status == status
    assert len(fake_upstream.requests) == 2


@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_refused_regenerate_says_why_where_it_can_be_read(
    page, server_factory, fake_upstream, watch, viewport
):
    """Refused by the day's tokens, Regenerate's reason went under the last reply, at the
    foot of the messages, cut off by the message box."""
    await page.set_viewport_size(viewport)
    server = server_factory(CHAT_LIMIT_TOKENS_PER_DAY="10")
    fake_upstream.plan = lambda request: request.stream(
        reply_events([f"Line {i}.\n\n" for i in range(30)])
    )
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("A long answer, please")
    reply = chat.reply(reply_id)
    await expect(reply).to_have_attribute("data-status", "complete", timeout=20_000)
    await reply.get_by_role("button", name="Regenerate").click()
    refused = reply.locator(".action-error")
    await expect(refused).to_contain_text("tokens for today")
    # Whole within the messages' visible part, above the message box
    await expect(refused).to_be_in_viewport()
    outside = await refused.evaluate(
        """(line) => {
            const box = line.getBoundingClientRect();
            const seen = line.closest(".messages").getBoundingClientRect();
            return Math.max(0, box.bottom - seen.bottom, seen.top - box.top);
        }"""
    )
    assert outside < 1, f"{outside} px of the line out of sight"
    assert all("429" in e for e in watch.console_errors), watch.console_errors
    watch.console_errors.clear()  # the browser and htmx log the refusal


# How far below its article's top a reply's first line of text stands.
FIRST_LINE_JS = """
(article) => {
  const line = article.querySelector(".content.markdown > :first-child, .reply-end > p");
  return line.getBoundingClientRect().top - article.getBoundingClientRect().top;
}
"""


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    ("viewport", "touch"),
    [(SIZES["phone"], True), (SIZES["desktop"], False)],
    ids=["phone", "desktop"],
)
async def test_a_failed_reply_says_so_where_a_reply_begins(
    page, server_factory, fake_upstream, viewport, touch, scheme, tmp_path
):
    """A reply that failed before its first word had 16 px more above its "Error: …"
    than a reply above its text: the space of a paragraph's margin under an empty body."""
    await page.emulate_media(color_scheme=scheme)
    server = server_factory(CHAT_MAX_RETRIES="0")
    fake_upstream.plan = streamed(["A reply ", "that worked."], delay=0.01)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    worked = await chat.send("First")
    await chat.wait_finished(worked)
    fake_upstream.plan = http_500
    failed = await chat.send("Second")
    await chat.wait_finished(failed, status="error")
    for when in ("as it failed", "on the page loaded again"):
        if when != "as it failed":
            await page.reload()
            await expect(chat.reply(failed).locator(".reply-error")).to_be_visible()
        normal = await chat.reply(worked).evaluate(FIRST_LINE_JS)
        error = await chat.reply(failed).evaluate(FIRST_LINE_JS)
        assert abs(error - normal) <= 3, f"{when}: the error line {error} px down, text {normal}"
    await check_looks(page, tmp_path / f"failed-{viewport['width']}-{scheme}.png")
