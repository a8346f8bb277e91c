"""The start page: a message box and a few suggested prompts. A conversation exists from its
first message on, so "New conversation" never leaves an empty one behind."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from chat.models import Conversation, Message
from tests.browser.support import BROWSER_MARKS, ChatPage, streamed

pytestmark = BROWSER_MARKS

CONVERSATION_URL = re.compile(r"/c/[0-9a-f-]{36}/$")


async def test_new_conversation_saves_nothing_until_the_first_message_is_sent(
    page, server, fake_upstream
):
    fake_upstream.plan = streamed(["Hello ", "to ", "you."], delay=0.05)
    await page.goto(server.url + "/")
    for _ in range(3):
        await page.locator(".new-conversation").click()
        await page.wait_for_load_state()
    await expect(page.locator("#composer-text")).to_be_visible()
    assert await Conversation.objects.acount() == 0

    await page.locator("#composer-text").fill("Hi there")
    await page.locator("#composer-text").press("Enter")
    await page.wait_for_url(CONVERSATION_URL)
    chat = ChatPage(page, server)
    await expect(page.locator("#messages article.user .content")).to_have_text("Hi there")
    reply = page.locator("#messages article.assistant")
    await expect(reply).to_have_count(1)
    await chat.wait_finished(int((await reply.get_attribute("id") or "")[1:]))
    await expect(reply.locator(".content")).to_have_text("Hello to you.")
    assert await Conversation.objects.acount() == 1
    assert await Message.objects.acount() == 2
    await expect(page.locator("#conversation-title")).to_have_text("Hi there")


async def test_a_suggested_prompt_starts_a_conversation_with_it(page, server, fake_upstream):
    fake_upstream.plan = streamed(["Sure."], delay=0.01)
    await page.goto(server.url + "/")
    suggestions = page.locator(".suggestions button")
    assert await suggestions.count() >= 3
    prompt = (await suggestions.first.get_attribute("data-prompt")) or ""
    await suggestions.first.click()
    await page.wait_for_url(CONVERSATION_URL)
    await expect(page.locator("#messages article.user .content")).to_have_text(prompt)
    first = await Message.objects.filter(role="user").aget()
    assert first.content == prompt


REACHABLE_JS = """
() => {
  const body = document.querySelector(".start-body");
  body.scrollTop = 0;
  const top = body.getBoundingClientRect().top;
  return [document.querySelector(".start-body h1").getBoundingClientRect().top - top,
          document.getElementById("composer-text").getBoundingClientRect().top - top];
}
"""


@pytest.mark.parametrize("viewport", [{"width": 320, "height": 256}])
async def test_zoomed_in_the_question_and_the_message_box_can_be_scrolled_to(page, server):
    """At 400% zoom (320 x 256 CSS px) the start page is taller than the window: it scrolls
    from its top. Centred, its top stood above where it could scroll, and the question and the
    message box could not be reached, though the box took the keyboard (found by a
    walk-through)."""
    await page.goto(server.url + "/")
    heading, box = await page.evaluate(REACHABLE_JS)
    assert heading >= 0 and box >= 0, (heading, box)
    await page.locator("#composer-text").focus()
    await expect(page.locator("#composer-text")).to_be_in_viewport()
