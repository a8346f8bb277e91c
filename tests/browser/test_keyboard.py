"""Keyboard users: the focus never drops to the page after an action, Escape closes what is
open and says so, and the skip link leads somewhere."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from chat.models import Message
from tests.browser.support import BROWSER_MARKS, ChatPage, another_tab, streamed

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


# The colour drawn over the page behind the drawer (the body's ::after), or None.
BACKDROP_JS = """
() => {
  const style = getComputedStyle(document.body, "::after");
  return style.content === "none" ? null : style.backgroundColor;
}
"""


@pytest.mark.parametrize("viewport", [PHONE])
async def test_the_phone_drawer_closes_with_its_own_button_or_a_tap_beside_it(page, server):
    """It had no close button, and nothing dimmed the chat behind it: only a tap somewhere
    outside it, or Escape, closed it."""
    chat = ChatPage(page, server)
    await chat.new_conversation()
    toggle = page.get_by_role("button", name="Conversations", exact=True)
    sidebar = page.locator("#sidebar")
    close = sidebar.get_by_role("button", name="Close conversations")
    assert await page.evaluate(BACKDROP_JS) is None
    await toggle.click()
    await expect(close).to_be_visible()
    drawer, button = await sidebar.bounding_box(), await close.bounding_box()
    assert drawer and button and button["width"] >= 40 and button["height"] >= 40
    assert button["x"] + button["width"] <= drawer["x"] + drawer["width"]
    assert await page.evaluate(BACKDROP_JS) not in (None, "rgba(0, 0, 0, 0)")
    await close.click()
    await expect(sidebar).to_be_hidden()
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    await expect(toggle).to_be_focused()
    assert await page.evaluate(BACKDROP_JS) is None

    await toggle.click()
    await expect(sidebar).to_be_visible()
    await page.mouse.click(drawer["x"] + drawer["width"] + 20, PHONE["height"] / 2)
    await expect(sidebar).to_be_hidden()
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    await expect(toggle).to_be_focused()


@pytest.mark.parametrize("viewport", [PHONE])
async def test_the_keyboard_stays_in_the_open_phone_drawer(page, server):
    """Tab went on from the drawer's last control to the page behind it, where what was typed
    went into the message box the drawer hid."""
    chat = ChatPage(page, server)
    await chat.new_conversation()
    await page.get_by_role("button", name="Conversations", exact=True).click()
    await expect(page.locator("#sidebar")).to_be_visible()
    places = []
    for _ in range(12):
        await page.keyboard.press("Tab")
        places.append(
            await page.evaluate(
                "() => document.activeElement.closest('#sidebar') ? 'drawer'"
                " : document.activeElement === document.body ? 'none' : 'behind'"
            )
        )
    assert "behind" not in places and "drawer" in places, places
    for name in ("Archived", "Log out"):
        box = await page.locator("#sidebar").get_by_role("button", name=name).bounding_box()
        assert box and box["height"] >= 24, (name, box)
    await page.keyboard.press("Escape")
    await expect(page.locator("#sidebar")).to_be_hidden()
    await chat.composer.fill("typed after")  # the page is back within reach
    await expect(chat.composer).to_have_value("typed after")


async def test_the_drawer_close_button_shows_only_on_a_phone(page, server):
    chat = ChatPage(page, server)
    await chat.new_conversation()
    await expect(page.locator("#sidebar")).to_be_visible()
    await expect(page.get_by_role("button", name="Close conversations")).to_be_hidden()


@pytest.mark.parametrize("viewport", [PHONE])
async def test_the_phone_drawer_opens_on_the_conversation_shown(page, server, fake_upstream):
    """The focus goes to the current conversation's link: it went to the first link or button
    in the drawer (New conversation), whichever the selectors named first."""
    fake_upstream.plan = streamed(["Hi."])
    chat = ChatPage(page, server)
    reply_id = await chat.start("hello")
    await chat.wait_finished(reply_id)
    await page.get_by_role("button", name="Conversations", exact=True).click()
    current = page.locator('#sidebar [aria-current="page"]')
    await expect(current).to_have_count(1)
    await expect(current).to_be_focused()


# What the focused element is called, and whether its focus can be seen.
FOCUSED_JS = """
() => {
  const el = document.activeElement;
  if (!el || el === document.body) { return null; }
  const style = getComputedStyle(el);
  const frame = el.closest(".composer");
  return {
    name: (el.getAttribute("aria-label") || el.textContent || el.value || "").trim(),
    id: el.id,
    visible: style.outlineStyle !== "none" ||
      (frame !== null && getComputedStyle(frame).boxShadow !== "none"),
  };
}
"""


async def tab_to(page, name: str, *, limit: int = 120) -> None:
    """Press Tab until the element named `name` has the focus, and check that it shows."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(FOCUSED_JS)
        if focused and (focused["name"] == name or focused["id"] == name):
            assert focused["visible"], f"the focus on {name} cannot be seen"
            return
    pytest.fail(f"Tab never reached {name}")


@pytest.mark.parametrize("key", ["Enter", "Space"])
async def test_send_pressed_by_keyboard_hands_the_focus_to_stop_then_to_the_reply(
    page, server, fake_upstream, key
):
    """Found by a walk-through: Stop takes Send's place as the reply starts, and the focus
    fell to the page, where it stayed."""
    fake_upstream.plan = streamed([f"w{i} " for i in range(40)], delay=0.05)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    await chat.composer.fill("a question")
    await chat.composer.focus()
    await tab_to(page, "Send")
    await page.keyboard.press(key)
    stop = page.locator("#composer").get_by_role("button", name="Stop")
    await expect(stop).to_be_focused()
    replies = page.locator("#messages article.assistant")
    await expect(replies).to_have_count(1)
    reply_id = int((await replies.get_attribute("id") or "")[1:])
    await chat.wait_finished(reply_id)
    await expect(chat.reply(reply_id)).to_be_focused()


async def test_send_clicked_leaves_the_focus_off_stop(page, context, server, fake_upstream):
    """Found by a second read: Send clicked with the mouse (which focuses it) handed the focus
    to Stop, and a Space pressed to scroll stopped the reply; so did a reply started in another
    tab while the focus rested on Send."""
    fake_upstream.plan = streamed([f"w{i} " for i in range(40)], delay=0.05)
    chat = ChatPage(page, server)
    url = await chat.new_conversation()
    await chat.composer.fill("a question")
    await page.locator("#composer .send-button").click()
    stop = page.locator("#composer").get_by_role("button", name="Stop")
    await expect(stop).to_be_visible()
    await expect(stop).not_to_be_focused()
    await page.keyboard.press("Space")
    replies = page.locator("#messages article.assistant")
    reply_id = int((await replies.last.get_attribute("id") or "")[1:])
    await chat.wait_finished(reply_id)  # not cancelled

    other = await another_tab(context)
    await other.goto(url)
    await ChatPage(other, server).wait_for_socket()
    await page.locator("#composer .send-button").focus()
    await ChatPage(other, server).send("from the other tab")
    await expect(stop).to_be_visible()
    await expect(stop).not_to_be_focused()
    await other.close()


async def test_a_whole_conversation_by_keyboard_alone(page, watch, server, fake_upstream):
    fake_upstream.plan = streamed([f"w{i} " for i in range(60)], delay=0.05)
    chat = ChatPage(page, server)
    await page.goto(server.url + "/")
    await expect(chat.composer).to_be_focused()
    await page.keyboard.type("Count for me")
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"/c/[0-9a-f-]{36}/$"))
    first = page.locator("#messages article.assistant")
    await expect(first).to_have_count(1)
    first_id = int((await first.get_attribute("id") or "")[1:])
    await chat.wait_for_text(first_id, 10)

    # Stop, from the message box: the Stop button is the next stop after it.
    await expect(chat.composer).to_be_focused()
    await tab_to(page, "Stop")
    await page.keyboard.press("Enter")
    await chat.wait_finished(first_id, status="cancelled")

    # Regenerate: a new version streams, with the focus on its Stop button, then on it.
    fake_upstream.plan = streamed(["A ", "second ", "answer."], delay=0.05)
    await tab_to(page, "Retry")
    await page.keyboard.press("Enter")
    replies = page.locator("#messages article.assistant")
    await expect(replies.last).not_to_have_attribute("id", f"m{first_id}")
    second_id = int((await replies.last.get_attribute("id") or "")[1:])
    await chat.wait_finished(second_id)
    await expect(chat.reply(second_id)).to_be_focused()

    # Back to the first version, and the switcher keeps the focus.
    await tab_to(page, "Previous version")
    await page.keyboard.press("Enter")
    await expect(page.locator("#announcer")).to_have_text("Version 1 of 2.")
    await expect(page.get_by_role("button", name="Next version")).to_be_focused()

    # Rename from the conversation menu.
    await tab_to(page, "Conversation menu")
    await page.keyboard.press("Enter")
    await tab_to(page, "rename-title")
    await page.keyboard.press("Control+A")
    await page.keyboard.type("Counting by keyboard")
    await page.keyboard.press("Enter")
    await expect(page.locator("#conversation-title")).to_have_text("Counting by keyboard")

    # Delete it.
    watch.accept_dialogs = True
    await tab_to(page, "Delete conversation")
    await page.keyboard.press("Enter")
    await page.wait_for_url(server.url + "/")
    assert watch.accepted_dialogs and "cannot be undone" in watch.accepted_dialogs[0]
    await expect(page.locator("#sidebar").get_by_text("Counting by keyboard")).to_have_count(0)


async def test_feedback_by_keyboard_keeps_the_rating_and_the_focus(page, server, fake_upstream):
    """Enter in the comment box saves the comment: it submitted the form with its first
    button, thumbs up, which on a reply rated up clears the rating. Each control used keeps
    the focus as the form is drawn again."""
    fake_upstream.plan = streamed(["A fine ", "answer."])
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("rate me")
    await chat.wait_finished(reply_id)
    reply = chat.reply(reply_id)
    good = reply.get_by_role("button", name="Good reply")

    await good.focus()
    await page.keyboard.press("Enter")
    await expect(good).to_have_attribute("aria-pressed", "true")
    await expect(good).to_be_focused()

    # The form drawn anew is htmx's once it has settled: a button used before that (20 ms,
    # faster than a person) submits it natively.
    settling = page.locator(f"#feedback-{reply_id}.htmx-settling, #feedback-{reply_id}.htmx-added")
    await expect(settling).to_have_count(0)
    comment = reply.get_by_label("Comment")
    await comment.focus()
    await page.keyboard.type("Clear and right.")
    await page.keyboard.press("Enter")
    await expect(reply.get_by_text("Comment saved.")).to_be_visible()
    await expect(good).to_have_attribute("aria-pressed", "true")
    await expect(comment).to_be_focused()
    saved = await Message.objects.aget(pk=reply_id)
    assert (saved.feedback, saved.feedback_comment) == ("up", "Clear and right.")

    save = reply.get_by_role("button", name="Save comment")
    await expect(settling).to_have_count(0)
    await save.focus()
    await page.keyboard.press("Enter")
    await expect(reply.get_by_text("Comment saved.")).to_be_visible()
    await expect(save).to_be_focused()


async def test_the_conversation_menus_keep_the_focus_on_the_button_used(page, server):
    chat = ChatPage(page, server)
    await chat.new_conversation()
    await page.locator(".conversation-menu summary").click()
    await page.get_by_role("button", name="Pin to the top").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("button", name="Unpin")).to_be_focused()
    # htmx readies the new buttons as it settles (20 ms), sooner than anyone presses a key.
    await expect(page.locator(".htmx-settling")).to_have_count(0)
    await page.get_by_role("button", name="Archive", exact=True).focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("button", name="Unarchive")).to_be_focused()

    await page.locator(".prompt-menu summary").click()
    await page.get_by_label("System prompt").fill("Answer in French.")
    await page.get_by_role("button", name="Save system prompt").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_text("Saved. Used from the next reply on.")).to_be_visible()
    await expect(page.get_by_role("button", name="Save system prompt")).to_be_focused()


# Keydowns of Enter in the message box, as the browser sends them (synthetic: the page's
# handler reads key, isComposing and keyCode), and how many times its form was submitted.
ENTERS_JS = """
(enters) => {
  const box = document.getElementById("composer-text");
  let submitted = 0;
  const count = () => { submitted += 1; };
  box.form.addEventListener("submit", count);
  for (const init of enters) {
    box.dispatchEvent(new KeyboardEvent("keydown", {key: "Enter", bubbles: true, cancelable: true, ...init}));
  }
  box.form.removeEventListener("submit", count);
  return submitted;
}
"""


async def test_enter_that_confirms_an_input_methods_composition_does_not_send(
    page, server, fake_upstream
):
    """Chinese, Japanese and Korean are typed through an input method: Enter confirms the
    characters composed. That Enter must not send what is half written, whether the browser
    says it is composing (Chromium, Firefox) or sends it just after with keyCode 229 (Safari,
    which sent the message)."""
    fake_upstream.plan = streamed(["好的。"])
    chat = ChatPage(page, server)
    await chat.new_conversation()
    await chat.composer.fill("你好")
    assert await page.evaluate(ENTERS_JS, [{"isComposing": True}, {"keyCode": 229}]) == 0
    await expect(chat.composer).to_have_value("你好")
    assert await page.evaluate(ENTERS_JS, [{"keyCode": 13}]) == 1  # (an Enter of its own sends)
    await expect(page.locator("article.message.user")).to_have_count(1)
    await expect(chat.composer).to_have_value("")
