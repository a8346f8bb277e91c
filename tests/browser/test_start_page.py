"""The start page: a message box and a few suggested prompts. A conversation exists from its
first message on, so "New conversation" never leaves an empty one behind."""

from __future__ import annotations

import re

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
