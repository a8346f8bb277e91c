"""What screen-reader, keyboard and phone users get, and the dark theme."""

from __future__ import annotations

import base64
from typing import Any

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


# How many pixels of a PNG differ clearly from its commonest colour (its background): what is
# drawn on it. Decoded by the page's browser.
DRAWN_PIXELS_JS = """
async (png) => {
  const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
  const blob = new Blob([bytes], { type: "image/png" });
  const bitmap = await createImageBitmap(blob);
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  const data = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const counts = new Map();
  for (let i = 0; i < data.length; i += 4) {
    const key = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  const background = [...counts.entries()].sort((a, b) => b[1] - a[1])[0][0];
  const [r, g, b] = [background >> 16, (background >> 8) & 255, background & 255];
  let drawn = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (Math.abs(data[i] - r) + Math.abs(data[i + 1] - g) + Math.abs(data[i + 2] - b) > 120) {
      drawn += 1;
    }
  }
  return drawn;
}
"""


async def _drawn_pixels(page: Any, element: Any) -> int:
    png = base64.b64encode(await element.screenshot()).decode()
    return int(await page.evaluate(DRAWN_PIXELS_JS, png))


@pytest.mark.parametrize(
    "viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}]
)
@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_in_forced_colours_every_icon_button_shows_its_icon(
    page, server, fake_upstream, viewport, scheme, tmp_path
):
    """Windows' contrast themes (forced colours) replace backgrounds, and the icons are masks
    over one: every icon button (Send, the menus, a reply's actions) was blank but for its
    focus ring (found by a walk-through)."""
    await page.emulate_media(forced_colors="active", color_scheme=scheme)
    fake_upstream.plan = streamed(["An answer."], delay=0.01)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    await chat.page.locator("#composer-text").fill("A question")
    buttons = {"send": page.locator(".send-button")}
    blank = []
    for name, button in buttons.items():
        if await _drawn_pixels(page, button) < 20:
            blank.append(name)
    reply_id = await chat.send("A question")
    await chat.wait_finished(reply_id)
    icons = page.locator(".header-button:visible, .icon-button:visible, .new-conversation:visible")
    assert await icons.count() >= 4
    for i in range(await icons.count()):
        icon = icons.nth(i)
        await icon.hover()  # (a message's own actions show when it is pointed at)
        if await _drawn_pixels(page, icon) < 20:
            blank.append(await icon.evaluate("(e) => e.outerHTML.slice(0, 80)"))
    await page.screenshot(path=str(tmp_path / f"forced-{viewport['width']}-{scheme}.png"))
    assert blank == []


# The contrast of each field's edge with what is behind it (WCAG 1.4.11 asks 3:1).
FIELD_EDGES_JS = """
(selectors) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => {
    const [r, g, b] = rgb(c).map((v) => v / 255)
      .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const behind = (e) => {
    for (let p = e.parentElement; p; p = p.parentElement) {
      const c = getComputedStyle(p).backgroundColor;
      if (!c.startsWith("rgba(0, 0, 0, 0")) { return c; }
    }
    return "rgb(255, 255, 255)";
  };
  return selectors.map((s) => {
    const e = document.querySelector(s);
    const [a, b] = [lum(getComputedStyle(e).borderTopColor), lum(behind(e))];
    return [s, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
  });
}
"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_the_fields_edges_stand_out_from_the_page(page, server, scheme):
    """A text field's edge is what shows where to type: it was 1.3:1 against the page (the
    message box, the search, the rename box)."""
    await page.emulate_media(color_scheme=scheme)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    edges = await page.evaluate(
        FIELD_EDGES_JS,
        [".composer", ".sidebar-search input", "#rename-title", "#settings-system-prompt"],
    )
    assert all(contrast >= 3 for _, contrast in edges), edges
