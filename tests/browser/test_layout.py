"""How the pages are laid out at laptop and phone sizes: the main column has the room, and
controls line up."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.support import BROWSER_MARKS, ChatPage, streamed

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

    toggle = page.get_by_role("button", name="Conversations", exact=True)
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    await toggle.click()
    await expect(sidebar).to_be_visible()
    await expect(toggle).to_have_attribute("aria-expanded", "true")


# Whether an input shows its whole placeholder, and whether a button's label is on one line.
PLACEHOLDER_FITS_JS = """
(input) => {
  const style = getComputedStyle(input);
  const canvas = document.createElement("canvas").getContext("2d");
  canvas.font = style.font;
  const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return canvas.measureText(input.placeholder).width <= room;
}
"""
LINES_JS = """
(element) => {
  const range = document.createRange();
  range.selectNodeContents(element);
  return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
}
"""


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}, PHONE])
async def test_the_reply_actions_sit_on_one_line_apart_and_the_comment_box_fits(
    page, server, fake_upstream, viewport
):
    fake_upstream.plan = streamed(["A reply ", "worth ", "rating."], delay=0.01)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("rate this")
    await chat.wait_finished(reply_id)
    reply = chat.reply(reply_id)
    await reply.get_by_role("button", name="Bad reply").click()
    await expect(reply.get_by_role("button", name="Bad reply")).to_have_attribute(
        "aria-pressed", "true"
    )
    names = ["Copy", "Regenerate", "Good reply", "Bad reply"]
    boxes = [await reply.get_by_role("button", name=n, exact=True).bounding_box() for n in names]
    centres = [b["y"] + b["height"] / 2 for b in boxes]
    assert max(centres) - min(centres) <= 1, dict(zip(names, centres, strict=True))
    for (name, box), following in zip(zip(names, boxes, strict=True), boxes[1:], strict=False):
        assert following["x"] - (box["x"] + box["width"]) >= 4, f"{name} touches the next button"
    heights = [b["height"] for b in boxes]
    assert max(heights) <= 40 and max(heights) - min(heights) <= 1, dict(
        zip(names, heights, strict=True)
    )

    comment = reply.get_by_label("Comment")
    assert await comment.evaluate(PLACEHOLDER_FITS_JS), "the comment box cuts its placeholder"
    save = reply.get_by_role("button", name="Save comment")
    assert await save.evaluate(LINES_JS) == 1, "the Save comment label wraps"
    assert await page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]


@pytest.mark.parametrize("viewport", [PHONE, {"width": 1280, "height": 900}])
async def test_version_buttons_are_big_enough_to_tap_and_copy_code_sits_in_its_label(
    page, server, fake_upstream, viewport
):
    """The switcher's buttons were 24 x 22 px, smaller than WCAG's 24 x 24 minimum and far from
    a finger's size on a phone. A code block's Copy button sat across the lower edge of its
    language label, half on the code."""
    fake_upstream.plan = streamed(["Look:\n\n", "```python\n", "print(1)\n", "```\n"], delay=0.01)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    first = await chat.send("show code")
    await chat.wait_finished(first)
    reply_id = await chat.regenerate(first)
    await chat.wait_finished(reply_id)
    smallest = (40, 36) if viewport is PHONE else (24, 24)
    for name in ("Previous version", "Next version"):
        box = await chat.reply(reply_id).get_by_role("button", name=name).bounding_box()
        wide, tall = smallest
        assert box["width"] >= wide and box["height"] >= tall, (name, box)

    label = await chat.reply(reply_id).locator(".code-lang").bounding_box()
    copy = await chat.reply(reply_id).get_by_role("button", name="Copy code").bounding_box()
    assert copy["height"] >= 24, copy
    assert label["y"] <= copy["y"] and copy["y"] + copy["height"] <= label["y"] + label["height"], (
        label,
        copy,
    )
