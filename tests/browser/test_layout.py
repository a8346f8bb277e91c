"""How the pages are laid out at laptop and phone sizes: the main column has the room, and
controls line up."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.support import BROWSER_MARKS

pytestmark = BROWSER_MARKS

PHONE = {"width": 390, "height": 844}


@pytest.mark.parametrize("viewport", [PHONE])
async def test_on_a_phone_the_home_page_has_the_whole_width_and_a_drawer_toggle(page, server):
    await page.goto(server.url + "/")
    sidebar = page.locator("#sidebar")
    await expect(sidebar).to_be_hidden()
    main = await page.locator("main").bounding_box()
    assert main is not None and main["width"] >= 380, main
    heading = await page.locator("main h1").bounding_box()
    assert heading is not None and heading["x"] + heading["width"] <= PHONE["width"], heading
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    toggle = page.get_by_role("button", name="Conversations")
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    await toggle.click()
    await expect(sidebar).to_be_visible()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
