"""What screen-reader, keyboard and phone users get, and the dark theme."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.support import BROWSER_MARKS, ChatPage, streamed

pytestmark = BROWSER_MARKS


async def test_one_polite_announcement_when_a_reply_finishes_not_one_per_token(
    page, server, fake_upstream
):
    fake_upstream.plan = streamed([f"word{i} " for i in range(20)], delay=0.02)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    messages = page.locator("#messages")
    await expect(messages).to_have_attribute("role", "log")
    await expect(messages).to_have_attribute("aria-live", "off")
    announcer = page.locator("#announcer")
    await expect(announcer).to_have_attribute("aria-live", "polite")
    reply_id = await chat.send("hello")
    await chat.wait_finished(reply_id)
    await expect(announcer).to_have_text("Reply finished.")


async def test_the_keyboard_reaches_the_composer_and_sends(page, server, fake_upstream):
    fake_upstream.plan = streamed(["Hi", " there."], delay=0.01)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    await page.locator("body").focus()
    for _ in range(30):
        await page.keyboard.press("Tab")
        if (
            await page.evaluate("document.activeElement && document.activeElement.id")
            == "composer-text"
        ):
            break
    else:
        pytest.fail("Tab never reached the message box")
    # The focus is visible: on the message box's rounded frame, which holds the text field.
    ring = await page.evaluate(
        "getComputedStyle(document.activeElement.closest('.composer')).boxShadow"
    )
    unfocused = await page.evaluate(
        "document.activeElement.blur(), getComputedStyle(document.querySelector('.composer')).boxShadow"
    )
    assert ring != unfocused, (ring, unfocused)
    await page.locator("#composer-text").focus()
    await page.keyboard.type("typed with the keyboard")
    await page.keyboard.press("Enter")
    await expect(page.locator("#messages article.user .content")).to_have_text(
        "typed with the keyboard"
    )


async def test_the_dark_theme_follows_the_system_setting(page, server):
    await page.emulate_media(color_scheme="dark")
    chat = ChatPage(page, server)
    await chat.new_conversation()
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(21, 23, 27)"
    await page.emulate_media(color_scheme="light")
    assert (
        await page.evaluate("getComputedStyle(document.body).backgroundColor")
        == "rgb(255, 255, 255)"
    )


@pytest.mark.parametrize("viewport", [{"width": 390, "height": 844}])
async def test_on_a_phone_the_conversations_open_as_a_drawer(page, server, fake_upstream):
    fake_upstream.plan = streamed(["Small ", "screen."], delay=0.01)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    sidebar = page.locator("#sidebar")
    await expect(sidebar).to_be_hidden()
    reply_id = await chat.send("phone test")
    await chat.wait_finished(reply_id)
    toggle = page.get_by_role("button", name="Conversations", exact=True)
    await toggle.click()
    await expect(sidebar).to_be_visible()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    await expect(sidebar.get_by_text("phone test")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(sidebar).to_be_hidden()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing overflows sideways
