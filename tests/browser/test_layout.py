"""How the pages are laid out at laptop and phone sizes: the main column has the room, and
controls line up."""

from __future__ import annotations

import itertools
import re

import pytest
from playwright.async_api import expect

from chat.models import Conversation
from tests.browser.pages import SCHEMES, SIZES, axe_problems, check_looks, sideways_scrolls
from tests.browser.support import BROWSER_MARKS, ChatPage, eventually, held_stream, streamed

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
    page, server, fake_upstream, viewport, tmp_path
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
    # The comment box has a line of its own under the buttons, whatever the note beside them
    # says (beside "Comment saved." it went up onto their line, on a laptop).
    row_bottom = max(b["y"] + b["height"] for b in boxes)
    for note in ("Thanks for the feedback.", "Comment saved."):
        await expect(reply.locator(".saved-note")).to_have_text(note)
        box = await comment.bounding_box()
        assert box is not None and box["y"] >= row_bottom, (note, box, row_bottom)
        assert box["width"] >= 200, box
        if note != "Comment saved.":
            await comment.fill("Useful")
            await save.click()
    await check_looks(page, tmp_path / f"feedback-{viewport['width']}.png")


# Where a focused element's focus ring is drawn: its box, grown by the outline's offset and
# width
RING_JS = """
(el) => {
  const box = el.getBoundingClientRect(), style = getComputedStyle(el);
  if (!el.matches(":focus-visible")) { return null; }
  const grow = parseFloat(style.outlineOffset) + parseFloat(style.outlineWidth);
  return { left: box.left - grow, right: box.right + grow, top: box.top - grow,
           bottom: box.bottom + grow };
}
"""


@pytest.mark.parametrize("viewport", [PHONE, {"width": 1280, "height": 900}])
async def test_version_buttons_are_big_enough_to_tap_and_copy_code_sits_in_its_label(
    page, server, fake_upstream, viewport
):
    """The switcher's buttons were 24 x 22 px, smaller than WCAG's 24 x 24 minimum and far from
    a finger's size on a phone. A code block's Copy button sat across the lower edge of its
    language label, half on the code."""
    chat, reply_id = await _a_code_reply_in_two_versions(page, server, fake_upstream)
    smallest = (40, 36) if viewport is PHONE else (24, 24)
    count = await chat.reply(reply_id).locator(".version-count").bounding_box()
    for name in ("Previous version", "Next version"):
        button = chat.reply(reply_id).get_by_role("button", name=name)
        box = await button.bounding_box()
        wide, tall = smallest
        assert box["width"] >= wide and box["height"] >= tall, (name, box)
        # Its focus ring covers neither the count beside it nor the message (a walk-through
        # found the ring over the "2" of "1 / 2")
        if await button.is_disabled():  # (the last version's Next)
            continue
        await page.keyboard.press("Shift")  # (a key last: the focus shows its ring)
        await button.focus()
        ring = await button.evaluate(RING_JS)
        assert ring is not None, name
        assert ring["left"] >= count["x"] + count["width"] or ring["right"] <= count["x"], ring
        assert ring["top"] >= box["y"] - 1 and ring["bottom"] <= box["y"] + box["height"] + 1

    label = await chat.reply(reply_id).locator(".code-lang").bounding_box()
    copy = await chat.reply(reply_id).get_by_role("button", name="Copy code").bounding_box()
    assert copy["height"] >= 24, copy
    assert label["y"] <= copy["y"] and copy["y"] + copy["height"] <= label["y"] + label["height"], (
        label,
        copy,
    )


# Figures do not wrap: ten columns of them are wider than a laptop's reply too.
COLUMNS = [f"total_{2016 + i}" for i in range(10)]
WIDE_TABLE_REPLY = (
    "Totals by region:\n\n"
    + "| "
    + " | ".join(COLUMNS)
    + " |\n|"
    + "---|" * len(COLUMNS)
    + "\n"
    + "".join(
        "| " + " | ".join(f"{row}{i}_1,234,567.89" for i in range(len(COLUMNS))) + " |\n"
        for row in "ABCD"
    )
    + "\nAnd a small one:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
    + "```text\n"
    + ",".join(f"{i:08}" for i in range(40))
    + "\n```\n\nThat is all."
)
WIDE_TABLE_TOKENS = re.findall(r"\s*\S+|\s+", WIDE_TABLE_REPLY)
# A table's or code block's box: how wide it is drawn and scrolled, where it is scrolled to, and whether it
# is a tab stop.
TABLE_BOX_JS = """
(table) => ({
  scrolled: [table.scrollWidth, table.clientWidth],
  left: table.scrollLeft,
  tabStop: table.tabIndex === 0,
})
"""


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_wide_table_scrolls_in_its_own_box_and_the_keyboard_can_scroll_it(
    page, server, fake_upstream, viewport, scheme, tmp_path
):
    """A table wider than the reply made the whole conversation scroll sideways (on a phone,
    every message moved with it, and the table's far columns were out of reach on the
    screen). It scrolls in its own box, as a code block does, while it streams and once it
    has settled. A table or code block that scrolls is a tab stop, so the keyboard can scroll
    it (a code block's long line was out of the keyboard's reach), and a narrow one is not."""
    await page.set_viewport_size(viewport)
    await page.emulate_media(color_scheme=scheme)
    gate = held_stream(fake_upstream, WIDE_TABLE_TOKENS, " D3_1,234,567.89", delay=0.005)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("Totals?")

    # Streaming, held in the wide table's last row: the table in the tail scrolls.
    live = page.locator(f"#x{reply_id}")
    await expect(page.locator(f"#z{reply_id} td").nth(2)).to_have_text("D2_1,234,567.89")
    assert await sideways_scrolls(page) == []
    await eventually(
        lambda: live.evaluate("(table) => table.tabIndex === 0"),
        message="the streaming table is no tab stop",
    )
    box = await live.evaluate(TABLE_BOX_JS)
    assert box["scrolled"][0] > box["scrolled"][1], box
    await check_looks(page, tmp_path / f"wide-table-streaming-{viewport['width']}-{scheme}.png")

    gate.open()
    await chat.wait_finished(reply_id)
    wide, narrow = (
        page.locator(f"#c{reply_id} table").nth(0),
        page.locator(f"#c{reply_id} table").nth(1),
    )
    await eventually(lambda: wide.evaluate("(table) => table.tabIndex === 0"))
    box = await wide.evaluate(TABLE_BOX_JS)
    assert box["scrolled"][0] > box["scrolled"][1] and box["left"] == 0, box
    small = await narrow.evaluate(TABLE_BOX_JS)
    assert small["scrolled"][0] <= small["scrolled"][1] and not small["tabStop"], small
    # So does a code block's long line, as it did before.
    code = await page.locator(f"#c{reply_id} pre").evaluate(TABLE_BOX_JS)
    assert code["scrolled"][0] > code["scrolled"][1] and code["tabStop"], code
    await check_looks(page, tmp_path / f"wide-table-{viewport['width']}-{scheme}.png")

    # The keyboard scrolls it: Tab reaches it (back from the code block, the narrow table
    # between them is no stop), and the arrow keys bring its last column in.
    await page.locator(f"#c{reply_id} pre").focus()
    await page.keyboard.press("Shift+Tab")
    assert await wide.evaluate("(table) => document.activeElement === table")
    for _ in range(60):
        await page.keyboard.press("ArrowRight")
    last = wide.locator("th").last
    await eventually(
        lambda: wide.evaluate(
            "(table) => table.scrollLeft + table.clientWidth >= table.scrollWidth - 1"
        ),
        message="the arrow keys did not scroll the table to its end",
    )
    table_box, last_box = await wide.bounding_box(), await last.bounding_box()
    assert last_box["x"] + last_box["width"] <= table_box["x"] + table_box["width"] + 1


LONG_WORD = "x" * 150
LONG_WORDS_REPLY = f"""# Heading_{LONG_WORD}

See https://example.com/{LONG_WORD} and `code_{LONG_WORD}` and **bold_{LONG_WORD}**.

> quote_{LONG_WORD}

- item_{LONG_WORD}
  - nested_{LONG_WORD}

[link_{LONG_WORD}](https://example.com/{LONG_WORD}) and the words after it"""
LONG_WORDS_TOKENS = re.findall(r"\s*\S+|\s+", LONG_WORDS_REPLY)


@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_word_longer_than_the_line_breaks_and_nothing_scrolls_sideways(
    page, server, fake_upstream, viewport, tmp_path
):
    """A URL, an identifier or inline code longer than the line ran out of the reply, and the
    conversation scrolled sideways (on a phone and on a laptop). It breaks where it must, as
    in the user's own message, while the reply streams and once it has settled."""
    await page.set_viewport_size(viewport)
    gate = held_stream(fake_upstream, LONG_WORDS_TOKENS, " after", delay=0.005)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send(f"Where is https://example.com/{LONG_WORD}?")
    await expect(page.locator(f"#t{reply_id}")).to_contain_text(f"link_{LONG_WORD}")
    assert await sideways_scrolls(page) == []

    gate.open()
    await chat.wait_finished(reply_id)
    link = chat.reply(reply_id).locator(f'a[href="https://example.com/{LONG_WORD}"]')
    await expect(link).to_have_text(f"link_{LONG_WORD}")
    await check_looks(page, tmp_path / f"long-words-{viewport['width']}.png")


@pytest.mark.parametrize(("viewport", "touch"), [(PHONE, True)])
async def test_on_a_touch_screen_a_tapped_buttons_tooltip_goes(page, server, fake_upstream):
    """A tapped button stays hovered on a touch screen: Copy's tooltip stood over the reply's
    footer, and against the screen's edge, long after the tap."""
    fake_upstream.plan = streamed(["A reply ", "to copy."], delay=0.01)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("tap it")
    await chat.wait_finished(reply_id)
    copy = chat.reply(reply_id).get_by_role("button", name="Copy", exact=True)
    await copy.tap()
    tooltip = "(button) => getComputedStyle(button, '::after').content"
    assert await copy.evaluate(tooltip) == "none"
    await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("Tab")  # from the keyboard, it says what the button does
    assert await copy.evaluate(tooltip) in ('"Copy"', '"Copied"')


BACKGROUND_JS = "(element) => getComputedStyle(element).backgroundColor"


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    ("viewport", "touch"),
    [(PHONE, True), (SIZES["desktop"], False)],
    ids=["touch", "mouse"],
)
async def test_on_a_touch_screen_a_tapped_button_does_not_stay_hovered(
    page, server, fake_upstream, viewport, touch, scheme, tmp_path
):
    """A tapped button stays hovered on a touch screen: a message's Copy, the conversation
    menu's button once closed again, kept their hover's grey after the tap, as if still
    pressed. With a mouse over them they have it (the test sees hovering)."""
    await page.emulate_media(color_scheme=scheme)
    fake_upstream.plan = streamed(["A reply ", "to copy."], delay=0.01)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("tap it")
    await chat.wait_finished(reply_id)
    buttons = {
        "the reply's Copy": chat.reply(reply_id).get_by_role("button", name="Copy", exact=True),
        "your message's Copy": page.locator("#messages article.user").get_by_role(
            "button", name="Copy", exact=True
        ),
        "the conversation's menu": page.locator(".conversation-menu > summary"),
    }
    for name, button in buttons.items():
        resting = await button.evaluate(BACKGROUND_JS)
        if touch:
            await button.tap()
            if name == "the conversation's menu":  # open, then closed again
                await button.tap()
        else:
            await button.click()
            if name == "the conversation's menu":
                await button.click()
        await expect(page.locator("details.menu[open]")).to_have_count(0)
        after = await button.evaluate(BACKGROUND_JS)
        if touch:
            assert after == resting, f"{name} stays hovered after a tap: {after}, not {resting}"
        else:
            assert after != resting, f"{name} shows no hover under the mouse: {after}"
    await check_looks(page, tmp_path / f"tapped-{viewport['width']}-{scheme}.png")


LOOK_JS = """(element) => { const s = getComputedStyle(element);
  return [s.backgroundColor, s.opacity, s.textDecorationLine, s.color].join(" "); }"""


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("viewport", "touch"), [(SIZES["desktop"], False)])
async def test_every_button_shows_the_mouse_over_it(page, server, fake_upstream, scheme, tmp_path):
    """Found by a walk-through: the menus' buttons, Send, Copy code, the sidebar's link-like
    buttons and the rest looked the same under the mouse as at rest."""
    await page.emulate_media(color_scheme=scheme)
    fake_upstream.plan = streamed(["Here:\n\n", "```python\nprint(1)\n```\n"], delay=0.01)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("code, please")
    await chat.wait_finished(reply_id)
    await chat.composer.fill("a next question")
    menu = page.locator(".conversation-menu")
    buttons = {
        "Send": page.locator("#composer .send-button"),
        "Copy code": chat.reply(reply_id).locator(".code-copy"),
        "Archived": page.locator(".archived-toggle"),
        "Log out": page.get_by_role("button", name="Log out"),
        "Rename": menu.get_by_role("button", name="Rename"),
        "Pin": menu.get_by_role("button", name="Pin to the top"),
        "Archive": menu.get_by_role("button", name="Archive"),
        "Delete": menu.get_by_role("button", name="Delete conversation"),
    }
    unchanged = []
    for name, button in buttons.items():
        if name == "Rename":
            await menu.locator("summary").click()
        await page.mouse.move(0, 0)
        resting = await button.evaluate(LOOK_JS)
        await button.hover()
        if await button.evaluate(LOOK_JS) == resting:
            unchanged.append(f"{name}: {resting}")
    assert unchanged == []
    await check_looks(page, tmp_path / f"hovered-{scheme}.png")


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_the_edit_box_of_a_long_message_shows_much_of_it(
    page, server, fake_upstream, viewport, scheme, tmp_path
):
    """The edit box opened three lines tall for a message of thousands of characters."""
    await page.emulate_media(color_scheme=scheme)
    fake_upstream.plan = streamed(["Noted."], delay=0.01)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    long = "\n\n".join(f"Paragraph {i}: " + "some words " * 40 for i in range(10))
    await chat.composer.fill(long)
    await chat.composer.press("Enter")
    reply = page.locator("#messages article.assistant")
    await expect(reply).to_contain_text("Noted.")
    user = page.locator("#messages article.user")
    await user.get_by_role("button", name="Edit").click()
    box = await user.get_by_label("Edit your message").bounding_box()
    assert box is not None and box["height"] >= viewport["height"] * 0.45, box
    assert box["height"] <= viewport["height"] * 0.5 + 1, box  # and no more than half the window
    await check_looks(page, tmp_path / f"edit-long-{viewport['width']}-{scheme}.png")
    short = page.locator("#messages article.user").get_by_label("Edit your message")
    await short.fill("Short")
    box = await short.bounding_box()
    assert box is not None and 60 <= box["height"] <= 120, box  # three lines or so


async def test_the_keyboards_ring_on_a_conversation_in_the_list_is_whole(
    page, server, fake_upstream
):
    """The list's scrolling cut the ring's sides: it showed only as two lines."""
    chat = ChatPage(page, server)
    await chat.new_conversation()
    await page.goto(server.url + "/")
    link = page.locator("#conversation-list a").first
    for _ in range(40):
        await page.keyboard.press("Tab")
        if await link.evaluate("(a) => a === document.activeElement"):
            break
    ring = await link.evaluate(
        "(a) => { const s = getComputedStyle(a); const list = a.closest('#conversation-list');"
        " const r = a.getBoundingClientRect(), l = list.getBoundingClientRect();"
        " const out = parseFloat(s.outlineOffset) + parseFloat(s.outlineWidth);"
        " return [s.outlineStyle, r.left - out >= l.left && r.right + out <= l.right]; }"
    )
    assert ring == ["solid", True], ring


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_the_model_picker_is_as_wide_as_the_model_shown(
    page, server_factory, fake_upstream, viewport, scheme, tmp_path
):
    """It was as wide as its longest model's name: a short name stood far from its arrow,
    and a phone cut the title to a few letters."""
    await page.emulate_media(color_scheme=scheme)
    server = server_factory(CHAT_MODELS="fake-model,gpt-4o-mini-2024-07-18-with-a-long-name")
    chat = ChatPage(page, server)
    await chat.new_conversation()
    picker = page.locator(".chat-header .model-picker")
    await expect(picker).to_have_value("fake-model")
    box = await picker.bounding_box()
    assert box is not None and box["width"] <= 140, box
    await check_looks(page, tmp_path / f"model-{viewport['width']}-{scheme}.png")


# What sticks out of the window sideways: the page's width, and each visible control whose
# right edge is past the window's.
OUT_OF_WINDOW_JS = """
(selector) => {
  const out = [...document.querySelectorAll(selector)]
    .filter((e) => e.getClientRects().length && e.getBoundingClientRect().right > innerWidth + 0.5)
    .map((e) => e.id || e.textContent.trim().slice(0, 20) || e.tagName);
  return [document.documentElement.scrollWidth - innerWidth, out];
}
"""
CONTROLS = "input:not([type=hidden]), textarea, select, button, label"


@pytest.mark.parametrize("viewport", [{"width": 375, "height": 700}])
async def test_with_text_twice_as_large_the_menus_and_the_login_form_fit_a_phone(
    page, context, server, fake_upstream
):
    """Text set twice as large (a reader's setting): the conversation's menu (Rename off the
    window, Archive and Delete cut), the system prompt's (its box and Save past the panel) and
    the login form (its inputs 450 px wide in 375) took their inputs' own width and ran past a
    phone's window (found by a walk-through)."""
    await page.add_init_script(  # (as a reader's setting would: the page's CSP allows it)
        "document.addEventListener('DOMContentLoaded', () => {"
        " document.documentElement.style.fontSize = '200%'; });"
    )
    chat = ChatPage(page, server)
    await chat.new_conversation()
    for menu in (".conversation-menu", ".prompt-menu"):
        if menu == ".prompt-menu":  # (on a phone, from the conversation's menu)
            await chat.open_system_prompt()
        else:
            await page.locator(f"{menu} > summary").click()
        await expect(page.locator(f"{menu} .menu-body")).to_be_visible()
        sideways, out = await page.evaluate(OUT_OF_WINDOW_JS, f"{menu} .menu-body :is({CONTROLS})")
        assert sideways <= 0 and out == [], (menu, sideways, out)
        await page.keyboard.press("Escape")
    await context.clear_cookies()
    await page.goto(server.url + "/accounts/login/")
    sideways, out = await page.evaluate(OUT_OF_WINDOW_JS, CONTROLS)
    assert sideways <= 0 and out == [], ("login", sideways, out)


@pytest.mark.parametrize("viewport", [PHONE])
async def test_a_table_that_scrolls_once_the_text_is_larger_becomes_a_tab_stop(
    page, server, fake_upstream
):
    """A table that fits, then scrolls sideways once the reader makes the text larger (the
    window's width unchanged), becomes a tab stop so the keyboard can scroll it: only a
    window's resize looked at the boxes again (axe, scrollable-region-focusable)."""
    fake_upstream.plan = streamed(["| a | b |\n|---|---|\n| 12345678 | 12345678 |\n"])
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("A small table")
    await chat.wait_finished(reply_id)
    table = page.locator(f"#c{reply_id} table")
    assert not await table.evaluate("(table) => table.scrollWidth > table.clientWidth")
    await expect(table).not_to_have_attribute("tabindex", "0")
    await page.evaluate("document.documentElement.style.fontSize = '400%'")
    assert await table.evaluate("(table) => table.scrollWidth > table.clientWidth")
    await expect(table).to_have_attribute("tabindex", "0")


# What of the sidebar sticks out of it (its right edge)
OUT_OF_SIDEBAR_JS = """
() => {
  const edge = document.getElementById("sidebar").getBoundingClientRect().right;
  return [...document.querySelectorAll("#sidebar *")]
    .filter((e) => e.getClientRects().length && e.getBoundingClientRect().right > edge + 0.5)
    .map((e) => e.className || e.tagName);
}
"""


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 800}])
async def test_with_text_twice_as_large_the_sidebar_holds_what_is_in_it(page, server):
    """On a laptop with text twice as large, "New conversation" ran out of the sidebar (a
    fixed 260 px) into the header (found by a walk-through). The sidebar is as wide in text
    as it was, and what is in it stays in it."""
    await page.add_init_script(
        "document.addEventListener('DOMContentLoaded', () => {"
        " document.documentElement.style.fontSize = '200%'; });"
    )
    await page.goto(server.url + "/")
    await expect(page.locator("#sidebar .new-conversation")).to_be_visible()
    assert await page.evaluate(OUT_OF_SIDEBAR_JS) == []
    assert await sideways_scrolls(page) == []


# The controls a finger may tap whose circle of 44 px around their middle is not all theirs:
# each probed at eight points of the circle (a control's box may be smaller than its hit area,
# drawn around it), once scrolled into the middle of its scrolling box.
SHORT_TARGETS_JS = """
([root, selector]) => {
  const short = [];
  const radius = 21.5;
  const around = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => [Math.cos(i * Math.PI / 4), Math.sin(i * Math.PI / 4)]);
  for (const control of document.querySelector(root).querySelectorAll(selector)) {
    if (!control.checkVisibility({ visibilityProperty: true })) continue;
    control.scrollIntoView({ block: "center", inline: "center" });
    const box = control.getBoundingClientRect();
    const x = box.left + box.width / 2, y = box.top + box.height / 2;
    const missed = around.filter(([dx, dy]) => {
      const hit = document.elementFromPoint(x + dx * radius, y + dy * radius);
      return !hit || !(hit === control || control.contains(hit));
    }).map(([dx, dy]) => `${Math.round(dx * radius)},${Math.round(dy * radius)}`);
    if (missed.length) {
      const name = control.getAttribute("aria-label") || control.textContent.trim().slice(0, 30)
        || control.id || control.className;
      short.push(`${control.tagName.toLowerCase()} "${name}" ` +
        `${Math.round(box.width)}x${Math.round(box.height)} misses ${missed.join(" ")}`);
    }
  }
  return short;
}
"""
TAPPABLE = "button, summary, select, textarea, input:not([type=hidden]), a[href]:not(.skip-link)"


# Text fields whose text is under 16 px (Safari on a phone zooms the page into them)
SMALL_FIELD_TEXT_JS = """
(root) => [...document.querySelectorAll(root)].flatMap((r) => [...r.querySelectorAll(
    "textarea, select, input:not([type=hidden], [type=checkbox], [type=radio])")])
  .filter((field) => field.getClientRects().length
    && parseFloat(getComputedStyle(field).fontSize) < 16)
  .map((field) => `${field.id || field.name}: ${getComputedStyle(field).fontSize}`)
"""


@pytest.mark.parametrize(("viewport", "touch"), [(PHONE, True)])
async def test_on_a_touch_screen_every_control_is_a_fingers_size(page, server, fake_upstream):
    """On a phone the code block's Copy code was 24 px tall, the header's and a message's icon
    buttons 32 to 34 px, the version switcher's 36: smaller than a finger (44 x 44 CSS px, as
    WCAG's 2.5.5 and Apple's guidelines ask). Nothing is wider than the window for it. A
    field's text is 16 px at least (a walk-through found the search box's at 14.4)."""
    chat, reply_id = await _a_code_reply_in_two_versions(page, server, fake_upstream)
    await expect(chat.reply(reply_id).get_by_role("button", name="Copy code")).to_be_visible()

    async def short_targets(root: str) -> None:
        short = await page.evaluate(SHORT_TARGETS_JS, [root, TAPPABLE])
        assert short == [], "\n".join(short)
        assert await sideways_scrolls(page) == []
        # (and a field's text is 16 px at least: Safari zooms into a smaller one's on focus)
        assert await page.evaluate(SMALL_FIELD_TEXT_JS, root) == []

    await short_targets("main")
    assert await axe_problems(page) == []
    # A reply rated (its comment box), a message being edited, the header's menus, the drawer
    await chat.reply(reply_id).get_by_role("button", name="Good reply").tap()
    await expect(chat.reply(reply_id).get_by_label("Comment")).to_be_visible()
    await page.locator("#messages article.user").get_by_role("button", name="Edit").tap()
    await expect(page.get_by_label("Edit your message")).to_be_visible()
    await short_targets("#messages")
    await chat.open_system_prompt(tap=True)  # (from the conversation's menu)
    await short_targets(".prompt-menu .menu-body")
    await page.keyboard.press("Escape")
    await page.locator(".conversation-menu > summary").tap()
    await expect(page.locator(".conversation-menu .menu-body")).to_be_visible()
    await short_targets(".conversation-menu .menu-body")
    await page.locator(".conversation-menu > summary").tap()
    await page.get_by_role("button", name="Conversations", exact=True).tap()
    await expect(page.locator("#sidebar")).to_be_visible()
    await short_targets("#sidebar")


DEMO_SERVER = {
    "OPENAI_BASE_URL": "",
    "OPENAI_API_KEY": "",
    "CHAT_MODEL": "",
    "CHAT_DEMO_MIN_TPS": "400",
    "CHAT_DEMO_MAX_TPS": "500",
}


@pytest.mark.parametrize(("viewport", "touch"), [(PHONE, True)])
async def test_the_demo_models_notice_can_be_hidden_for_good(page, server_factory):
    """On a phone the notice took some 90 px above every conversation for as long as the demo
    model answered, with no way to put it away. Hidden, it stays hidden on every page and
    after a reload; the focus goes to the message box, not to the top of the page."""
    server = server_factory(**DEMO_SERVER)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    notice = page.locator(".demo-notice")
    await expect(notice).to_be_visible()
    assert await axe_problems(page) == []
    hide = notice.get_by_role("button", name="Hide this notice")
    await hide.tap()
    await expect(notice).to_have_count(0)
    await expect(chat.composer).to_be_focused()

    await page.reload()
    await chat.wait_for_socket()
    await expect(page.locator("#messages")).to_be_visible()
    await expect(page.locator(".demo-notice")).to_have_count(0)
    await page.goto(server.url + "/")
    await expect(page.get_by_role("heading", name="What can I help with?")).to_be_visible()
    await expect(page.locator(".demo-notice")).to_have_count(0)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    ("viewport", "touch"), [(PHONE, True), (SIZES["desktop"], False)], ids=["touch", "mouse"]
)
async def test_the_demo_notices_hide_button_shows_hover_and_focus_inside_the_window(
    page, server_factory, viewport, touch, scheme, tmp_path
):
    """The icon buttons' own hover and focus, later in the sheet, gave the hide button the
    notice's own background: under the mouse, or focused, it looked as at rest. Its name,
    shown under it, was centred on it, past the window's edge: the page scrolled sideways."""
    await page.emulate_media(color_scheme=scheme)
    server = server_factory(**DEMO_SERVER)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    notice = page.locator(".demo-notice")
    hide = notice.get_by_role("button", name="Hide this notice")
    panel = await notice.evaluate(BACKGROUND_JS)
    resting = await hide.evaluate(BACKGROUND_JS)
    if not touch:
        await hide.hover()
        hovered = await hide.evaluate(BACKGROUND_JS)
        assert hovered not in (resting, panel), f"no hover: {hovered} on the notice's {panel}"
        assert await sideways_scrolls(page) == []
        await page.mouse.move(0, 0)
    await page.locator("#messages").focus()
    await page.keyboard.press("Shift+Tab")  # the hide button comes before the messages
    await expect(hide).to_be_focused()
    focused = await hide.evaluate(BACKGROUND_JS)
    assert focused not in (resting, panel), f"no focus: {focused} on the notice's {panel}"
    name = await hide.evaluate("(button) => getComputedStyle(button, '::after').content")
    assert name == '"Hide this notice"'
    await check_looks(page, tmp_path / f"demo-notice-{viewport['width']}-{scheme}.png")


# Where an icon button's name, drawn under it when hovered or focused (its ::after, padding
# included), starts and ends across the window: [left, right].
TOOLTIP_EDGES_JS = """
(button) => {
  const box = button.getBoundingClientRect();
  const tip = getComputedStyle(button, "::after");
  if (tip.content === "none" || tip.content === "normal") { return null; }
  const width = parseFloat(tip.width) + parseFloat(tip.paddingLeft) + parseFloat(tip.paddingRight);
  const shift = tip.transform === "none" ? 0 : new DOMMatrixReadOnly(tip.transform).m41;
  const left = box.left + parseFloat(tip.left) + shift;
  return [left, left + width];
}
"""
# How far a focused element's outline reaches out of the window on each side: [left, right].
OUTLINE_PAST_WINDOW_JS = """
(element) => {
  const box = element.getBoundingClientRect();
  const style = getComputedStyle(element);
  const out = parseFloat(style.outlineWidth) + parseFloat(style.outlineOffset);
  return [Math.max(0, out - box.left), Math.max(0, box.right + out - innerWidth)];
}
"""


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    ("viewport", "touch"), [(PHONE, True), (SIZES["desktop"], False)], ids=["touch", "mouse"]
)
async def test_names_focus_rings_and_the_archived_list_stay_inside_the_window(
    page, server, fake_upstream, viewport, touch, scheme, tmp_path
):
    """Found by a walk-through. On a phone the sidebar button's name, centred on it at the
    window's left edge, was cut there ("versations"), and the open sidebar's Close named
    itself over the dimmed page past the sidebar's edge; the messages' focus ring went past
    the window's sides (its right side at 1280 too); the archived list's "Back to all" was
    16 px tall, and its "No archived conversations." stood 8 px left of the titles."""
    await page.emulate_media(color_scheme=scheme)
    fake_upstream.plan = streamed(["A reply."], delay=0.01)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    await chat.wait_finished(await chat.send("hello"))
    width = viewport["width"]

    messages = page.locator("#messages")
    await chat.composer.focus()
    await page.keyboard.press("Shift+Tab")  # from the keyboard: the ring shows
    await messages.focus()
    assert await messages.evaluate("(element) => element.matches(':focus-visible')")
    assert await messages.evaluate(OUTLINE_PAST_WINDOW_JS) == [0, 0]

    if touch:
        toggle = page.get_by_role("button", name="Conversations", exact=True)
        await toggle.focus()
        left, right = await toggle.evaluate(TOOLTIP_EDGES_JS)
        assert 0 <= left and right <= width, (left, right)
        await toggle.tap()
        close = page.get_by_role("button", name="Close conversations")
        await expect(close).to_be_visible()
        await page.keyboard.press("Shift+Tab")
        await page.keyboard.press("Tab")
        await close.focus()
        drawer = await page.locator("#sidebar").bounding_box()
        assert drawer is not None
        left, right = await close.evaluate(TOOLTIP_EDGES_JS)
        assert 0 <= left and right <= drawer["x"] + drawer["width"], (left, right, drawer)

    sidebar = page.locator("#sidebar")
    await sidebar.get_by_role("button", name="Archived", exact=True).click()
    back = sidebar.get_by_role("button", name="Back to all")
    await expect(back).to_be_visible()
    back_box = await back.bounding_box()
    assert back_box is not None and back_box["height"] >= 24, back_box
    text_left = (
        "(item) => { const range = document.createRange();"
        " range.selectNodeContents(item); return range.getBoundingClientRect().left; }"
    )
    heading = await sidebar.locator("li.list-mode").evaluate(text_left)
    empty = sidebar.locator("li.muted")
    await expect(empty).to_have_text("No archived conversations.")
    assert abs(await empty.evaluate(text_left) - heading) <= 1
    await check_looks(page, tmp_path / f"inside-{width}-{scheme}.png")


# How many characters of its text an element shows, the rest cut by an ellipsis: a heading's
# text in its box; a select's chosen option in its box less its padding and arrow (what it
# takes beside the text when the box is as wide as the whole name).
SHOWN_CHARACTERS_JS = """
(element) => {
  const style = getComputedStyle(element);
  const canvas = document.createElement("canvas").getContext("2d");
  canvas.font = style.font;
  const width = (text) => canvas.measureText(text).width;
  let text, room;
  if (element.tagName === "SELECT") {
    text = element.selectedOptions[0].textContent;
    const shown = element.getBoundingClientRect().width;
    element.style.maxWidth = "none";
    const whole = element.getBoundingClientRect().width;
    element.style.maxWidth = "";
    room = shown - (whole - width(text));
  } else {
    text = element.textContent.trim();
    room = element.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  }
  if (width(text) <= room + 0.5) { return text.length; }
  let count = text.length;
  while (count > 0 && width(text.slice(0, count) + "…") > room + 0.5) { count -= 1; }
  return count;
}
"""
# The header's visible controls, left to right: each one's edges, and what is past the window.
HEADER_ROW_JS = """
() => [...document.querySelector(".chat-header").children]
  .filter((e) => e.getClientRects().length && getComputedStyle(e).position !== "absolute")
  .map((e) => { const r = e.getBoundingClientRect(); return [e.className || e.id, r.left, r.right]; })
"""
PHONE_MODEL = "llama-3.1-8b-instruct"
PHONE_TITLE = "Explain the streaming pipeline"


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    ("viewport", "touch"), [(PHONE, True), (SIZES["desktop"], False)], ids=["phone", "desktop"]
)
async def test_on_a_phone_the_title_has_room_and_the_system_prompt_is_in_the_menu(
    page, server_factory, fake_upstream, viewport, touch, scheme, tmp_path
):
    """On a phone the header cut the title to some eight letters ("My rena…"), the model's
    name too ("fake-mo…"): the system prompt's button took their room. There it is an item of
    the conversation's menu, marked when a prompt is set, that opens the same panel (its box
    focused, Escape going back to the menu's button); the model takes at most its share. On
    a laptop the header is as it was."""
    await page.emulate_media(color_scheme=scheme)
    server = server_factory(CHAT_MODEL=PHONE_MODEL, CHAT_MODELS=f"{PHONE_MODEL},gpt-4o-mini")
    chat = ChatPage(page, server)
    url = await chat.new_conversation()
    pk = re.search(r"/c/([0-9a-f-]{36})/", url)
    assert pk
    await Conversation.objects.filter(pk=pk.group(1)).aupdate(title=PHONE_TITLE)
    await page.reload()
    await chat.wait_for_socket()
    header = page.locator("header.chat-header")
    title = header.locator("#conversation-title")
    picker = header.get_by_label("Model")
    await expect(picker).to_have_value(PHONE_MODEL)
    assert await picker.evaluate("(select) => select.selectedOptions[0].textContent") == (
        PHONE_MODEL
    )
    shown = {
        "title": await title.evaluate(SHOWN_CHARACTERS_JS),
        "model": await picker.evaluate(SHOWN_CHARACTERS_JS),
    }
    row = await page.evaluate(HEADER_ROW_JS)
    for (name, _, right), (following, left, _) in itertools.pairwise(row):
        assert right <= left + 0.5, f"{name} runs into {following}: {row}"
    assert row[0][1] >= 0 and row[-1][2] <= viewport["width"], row
    assert await sideways_scrolls(page) == []
    prompt_button = header.locator(".prompt-menu > summary")
    menu = header.locator("details.conversation-menu")
    item = menu.get_by_role("button", name=re.compile(r"^System prompt"))
    if viewport != PHONE:  # a laptop's header: the whole title and model, the prompt's button
        assert shown == {"title": len(PHONE_TITLE), "model": len(PHONE_MODEL)}, shown
        await expect(prompt_button).to_be_visible()
        await check_looks(page, tmp_path / f"header-{viewport['width']}-{scheme}.png")
        await prompt_button.click()
        await expect(page.get_by_label("System prompt")).to_be_visible()
        await menu.locator("summary").click()
        await expect(item).to_be_hidden()
        return

    assert shown["title"] >= 14 and shown["model"] >= 8, shown
    await expect(prompt_button).to_be_hidden()
    await check_looks(page, tmp_path / f"header-{viewport['width']}-{scheme}.png")
    # From the conversation's menu: the item opens the prompt's panel, its box focused
    await menu.locator("summary").tap()
    await expect(item).to_be_visible()
    await expect(item).to_have_accessible_name("System prompt…")
    await check_looks(page, tmp_path / f"menu-{viewport['width']}-{scheme}.png")
    await item.tap()
    await expect(menu).not_to_have_attribute("open", "")
    box = page.get_by_label("System prompt")
    await expect(box).to_be_visible()
    await expect(box).to_be_focused()
    await box.fill("Answer briefly.")
    await page.get_by_role("button", name="Save system prompt").tap()
    await expect(page.get_by_text("Saved. Used from the next reply on.")).to_be_visible()
    assert (await Conversation.objects.aget(pk=pk.group(1))).system_prompt == "Answer briefly."
    await check_looks(page, tmp_path / f"prompt-{viewport['width']}-{scheme}.png")
    # Escape closes it, the focus on the menu's button; the item is marked now
    await page.keyboard.press("Escape")
    await expect(box).to_be_hidden()
    await expect(menu.locator("summary")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(item).to_have_accessible_name("System prompt… (set)")
    mark = await item.evaluate(
        "(item) => { const after = getComputedStyle(item, '::after');"
        " const header = getComputedStyle(document.querySelector('.prompt-mark'));"
        " return [after.width, after.backgroundColor === header.backgroundColor]; }"
    )
    assert mark == ["8px", True], mark  # the header button's mark
    await check_looks(page, tmp_path / f"menu-set-{viewport['width']}-{scheme}.png")
    # From the keyboard: the item, then the box; Escape back to the menu's button
    await page.keyboard.press("Tab")
    await expect(item).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(box).to_be_focused()
    await expect(box).to_have_value("Answer briefly.")
    await page.keyboard.press("Escape")
    await expect(box).to_be_hidden()
    await expect(menu.locator("summary")).to_be_focused()


async def _a_code_reply_in_two_versions(page, server, fake_upstream) -> tuple[ChatPage, int]:
    """A conversation whose reply, a code block, was regenerated: its version switcher and
    its Copy code button on the page. The chat page and the second version's id."""
    fake_upstream.plan = streamed(["Look:\n\n", "```python\n", "print(1)\n", "```\n"], delay=0.01)
    chat = ChatPage(page, server)
    _, reply_id = await chat.reply_in_two_versions("show code")
    return chat, reply_id


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    ("viewport", "touch"), [(PHONE, True), (SIZES["desktop"], False)], ids=["phone", "desktop"]
)
async def test_a_long_system_prompt_is_shown_in_a_box_that_grows(
    page, server, fake_upstream, viewport, touch, scheme, tmp_path
):
    """Found by a walk-through: the system prompt's box stayed four lines tall (90 px) with
    1,700 characters in it, where the message and edit boxes grow. It grows with its text, up
    to 40% of the window, and its panel stays inside the window."""
    await page.emulate_media(color_scheme=scheme)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    await chat.open_system_prompt(tap=touch)
    box = page.locator("#settings-system-prompt")
    empty = (await box.bounding_box() or {})["height"]
    await box.fill("You are a careful assistant who answers in short paragraphs. " * 28)
    grown = (await box.bounding_box() or {})["height"]
    assert grown > 2.5 * empty, (empty, grown)
    assert grown <= 0.4 * viewport["height"] + 1, grown
    panel = await page.locator(".prompt-menu .menu-body").bounding_box()
    assert panel and panel["y"] + panel["height"] <= viewport["height"], panel
    await check_looks(page, tmp_path / f"system-prompt-{viewport['width']}-{scheme}.png")
