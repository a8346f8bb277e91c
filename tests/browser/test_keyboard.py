"""Keyboard users: the focus never drops to the page after an action, Escape closes what is
open and says so, and the skip link leads somewhere."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.support import BROWSER_MARKS, ChatPage, streamed

pytestmark = BROWSER_MARKS

PHONE = {"width": 390, "height": 844}

# Where the focus is: the element's id or tag, and the id of the message it is in.
FOCUS_JS = """
() => {
  const el = document.activeElement;
  const article = el && el.closest ? el.closest("article") : null;
  return {
    tag: el ? el.tagName.toLowerCase() : null,
    id: el ? el.id : null,
    name: el ? el.getAttribute("aria-label") || el.textContent.trim() : null,
    article: article ? article.id : null,
  };
}
"""


async def test_after_regenerate_the_focus_is_on_the_new_reply(page, server, fake_upstream):
    fake_upstream.plan = streamed([f"word{i} " for i in range(30)], delay=0.05)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    first = await chat.send("question")
    await chat.wait_finished(first)
    await chat.reply(first).get_by_role("button", name="Regenerate").focus()
    await page.keyboard.press("Enter")
    replies = page.locator("#messages article.assistant")
    await expect(replies.last).not_to_have_attribute("id", f"m{first}")
    second = int((await replies.last.get_attribute("id") or "")[1:])
    # While it streams, on the Stop button (Enter stops it); once it ends, on the reply.
    await expect(page.locator("#composer").get_by_role("button", name="Stop")).to_be_focused()
    await chat.wait_finished(second)
    focus = await page.evaluate(FOCUS_JS)
    assert focus["tag"] != "body" and focus["article"] == f"m{second}", focus


async def test_escape_closes_the_conversation_menu_and_returns_to_its_button(page, server):
    chat = ChatPage(page, server)
    await chat.new_conversation()
    menu = page.locator("details.conversation-menu")
    await menu.locator("summary").focus()
    await page.keyboard.press("Enter")
    await expect(menu).to_have_attribute("open", "")
    await page.get_by_label("Title").focus()
    await page.keyboard.press("Escape")
    await expect(menu).not_to_have_attribute("open", "")
    await expect(menu.locator("summary")).to_be_focused()


@pytest.mark.parametrize("where", ["home", "conversation"])
async def test_the_skip_link_leads_somewhere_and_takes_the_focus(page, server, where):
    chat = ChatPage(page, server)
    if where == "conversation":
        await chat.new_conversation()
    else:
        await page.goto(server.url + "/")
    skip = page.locator("body > :first-child")
    await expect(skip).to_have_class("skip-link")  # the first thing Tab reaches
    await skip.focus()
    await expect(skip).to_be_visible()
    target = (await skip.get_attribute("href") or "").lstrip("#")
    assert await page.locator(f"#{target}").count() == 1, f"the skip link points at #{target}"
    await page.keyboard.press("Enter")
    await expect(page.locator(f"#{target}")).to_be_focused()


@pytest.mark.parametrize("viewport", [PHONE])
async def test_escape_closes_the_phone_drawer_and_its_toggle_says_so(page, server):
    chat = ChatPage(page, server)
    await chat.new_conversation()
    toggle = page.get_by_role("button", name="Conversations", exact=True)
    await toggle.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#sidebar")).to_be_visible()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    await page.keyboard.press("Escape")
    await expect(page.locator("#sidebar")).to_be_hidden()
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    await expect(toggle).to_be_focused()
