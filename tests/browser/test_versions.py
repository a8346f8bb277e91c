"""Reply versions in a real browser: the switcher by mouse and keyboard, what screen readers
hear, and a reload that keeps the chosen version."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import expect

from chat.models import Message
from tests.browser.support import BROWSER_MARKS, ChatPage, another_tab, streamed
from tests.fake_upstream import FakeRequest, reply_events

pytestmark = BROWSER_MARKS


async def numbered_answers(request: FakeRequest) -> Any:
    """The upstream's plan: "Answer number N." to its Nth request."""
    return await request.stream(reply_events([f"Answer number {request.index + 1}."]))


async def answered_and_another_tab(chat: ChatPage, context: Any) -> tuple[int, Any]:
    """A new conversation with one question answered, and a second tab open on it, its socket
    connected: the first answer's id, and the second tab."""
    await chat.new_conversation()
    first = await chat.send("Tell me something")
    await chat.wait_finished(first)
    other = await another_tab(context)
    await other.goto(chat.page.url)
    await ChatPage(other, chat.server).wait_for_socket()
    return first, other


async def answered_and_a_deaf_tab(chat: ChatPage, context: Any) -> tuple[int, Any, dict[str, bool]]:
    """`answered_and_another_tab` ("First question"), the second tab's sockets routed through
    `deaf_on_demand`: the answer's id, the tab, and the switch that makes it deaf."""
    await chat.new_conversation()
    first = await chat.send("First question")
    await chat.wait_finished(first)
    other = await another_tab(context)
    hearing = await deaf_on_demand(other)
    await other.goto(chat.page.url)
    await ChatPage(other, chat.server).wait_for_socket()
    return first, other, hearing


async def deaf_on_demand(page: Any) -> dict[str, bool]:
    """Route the page's sockets through the test, which stops what the server sends from
    reaching the page (as when its socket is down) by setting the result's "on" to False."""
    hearing = {"on": True}

    def route(socket: Any) -> None:
        server_side = socket.connect_to_server()
        server_side.on_message(lambda message: socket.send(message) if hearing["on"] else None)

    await page.route_web_socket(re.compile(r"/ws/"), route)
    return hearing


async def test_the_version_switcher_works_by_mouse_and_keyboard_and_survives_a_reload(
    page, server, fake_upstream, watch
):
    fake_upstream.plan = numbered_answers
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("Tell me something")
    await chat.wait_finished(reply_id)
    for _ in range(2):
        reply_id = await chat.regenerate(reply_id)
        await chat.wait_finished(reply_id)
    reply = page.locator("#messages article.assistant")
    await expect(reply).to_have_count(1)
    await expect(reply.locator(".content")).to_have_text("Answer number 3.")
    switcher = reply.get_by_role("navigation", name="Versions of this reply")
    await expect(switcher).to_contain_text("version 3 of 3")
    await expect(switcher.get_by_role("button", name="Next version")).to_be_disabled()

    # Mouse: back one version; screen readers hear which one.
    await switcher.get_by_role("button", name="Previous version").click()
    await expect(reply.locator(".content")).to_have_text("Answer number 2.")
    await expect(page.locator("#announcer")).to_have_text("Version 2 of 3.")

    # Keyboard: the focus stays on the switcher, Enter goes back once more.
    previous = page.locator("#messages article.assistant").get_by_role(
        "button", name="Previous version"
    )
    await expect(previous).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#messages article.assistant .content")).to_have_text(
        "Answer number 1."
    )
    await expect(page.locator("#announcer")).to_have_text("Version 1 of 3.")
    # At the first version that button is disabled: the focus moved to "Next version".
    await expect(
        page.locator("#messages article.assistant").get_by_role("button", name="Next version")
    ).to_be_focused()

    await page.reload()
    await expect(page.locator("#messages article.assistant .content")).to_have_text(
        "Answer number 1."
    )
    await expect(page.locator("#messages article.assistant .versions")).to_contain_text(
        "version 1 of 3"
    )
    assert watch.console_errors == [] and watch.csp_violations == []


async def test_a_tab_another_tab_has_overtaken_redraws_itself_and_keeps_the_text(
    page, context, server, fake_upstream, watch
):
    """Tab one shows version 2 of a reply; tab two goes back to version 1 while tab one hears
    nothing from its socket (as when it is down). A message sent from tab one would go below
    version 1, which tab one does not show: it is refused, and tab one shows the conversation
    as it is, with the typed text still in the box."""

    fake_upstream.plan = numbered_answers
    hearing = await deaf_on_demand(page)
    chat = ChatPage(page, server)
    url = await chat.new_conversation()
    first = await chat.send("Tell me something")
    await chat.wait_finished(first)
    second = await chat.regenerate(first)
    await chat.wait_finished(second)

    other = await context.new_page()
    await other.goto(page.url)
    hearing["on"] = False
    await (
        other.locator("#messages article.assistant")
        .get_by_role("button", name="Previous version")
        .click()
    )
    await expect(other.locator("#messages article.assistant .content")).to_have_text(
        "Answer number 1."
    )

    await chat.composer.fill("A follow-up to answer two")
    await chat.composer.press("Enter")
    await expect(page.locator("#composer-error")).to_contain_text("changed in another tab")
    await expect(page.locator("#messages article.assistant .content")).to_have_text(
        "Answer number 1."
    )
    await expect(chat.composer).to_have_value("A follow-up to answer two")
    await expect(page.locator("#messages article.user")).to_have_count(1)
    # The browser and htmx log the refused request (409) as errors; nothing else went wrong.
    assert watch.page_errors == [] and watch.csp_violations == []
    assert all("409" in e or "htmx" in e for e in watch.console_errors), watch.console_errors
    assert any("409" in e for e in watch.console_errors) and url
    watch.console_errors.clear()  # those two, checked above

    # Sent again from the page as it is now, it goes below what the page shows.
    await chat.composer.press("Enter")
    await expect(page.locator("#messages article.user")).to_have_count(2)
    await expect(page.locator("#composer-error")).to_be_hidden()


async def test_a_version_switch_refused_while_a_reply_streams_says_why_under_the_header(
    page, server, fake_upstream, watch
):
    """The reason went under the message box; beside the switcher it landed inside the
    message's header row."""

    async def plan(request: FakeRequest):
        words = ["Answer ", "number ", f"{request.index + 1}."]
        return await request.stream(reply_events(words * (40 if request.index else 1)), delay=0.1)

    fake_upstream.plan = plan
    chat = ChatPage(page, server)
    await chat.new_conversation()
    first = await chat.send("Tell me something")
    await chat.wait_finished(first)
    await chat.regenerate(first)  # streams for about 12 s
    reply = page.locator("#messages article.assistant")
    await reply.get_by_role("button", name="Previous version").click()
    refused = reply.locator(".role + .action-error")
    await expect(refused).to_contain_text("still replying")
    await expect(reply.locator(".role .action-error")).to_have_count(0)
    await reply.get_by_role("button", name="Previous version").click()  # refused again
    await expect(reply.locator(".action-error")).to_have_count(1)
    assert all("409" in e for e in watch.console_errors), watch.console_errors
    watch.console_errors.clear()  # the browser and htmx log the 409s


async def test_a_regenerated_reply_whose_frames_outran_the_answer_shows_whole(
    page, server, fake_upstream
):
    """The model's reply came at once, and its first frame reached the tab before the
    Regenerate's answer drew the new reply: it was dropped (no reply to go to), and the reply
    showed its last words alone ("the end" of 61 lines, the saved text whole) until the page
    was loaded again (found while writing the switcher's scroll test, in one try of two)."""
    pieces = [f"line {i:03d}\n\n" for i in range(60)] + ["the end"]
    fake_upstream.plan = streamed(pieces, delay=0)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("Tell me")
    await chat.wait_finished(reply_id)
    for _ in range(8):  # (a try of the scroll test showed it one time in two, here fewer)
        reply_id = await chat.regenerate(reply_id)
        await chat.wait_finished(reply_id)
        paragraphs = chat.reply(reply_id).locator(".content p")
        await expect(paragraphs).to_have_count(61)
        await expect(paragraphs.first).to_have_text("line 000")
        await expect(paragraphs.last).to_have_text("the end")


async def test_regenerate_an_edit_and_a_version_switch_show_in_the_other_tab(
    page, context, server, fake_upstream, watch
):
    """The other tab kept showing the old version, with no sign of the change, until a
    message it sent was refused."""

    async def plan(request: FakeRequest):
        return await request.stream(
            reply_events(["Answer ", "number ", f"{request.index + 1}."]), delay=0.05
        )

    fake_upstream.plan = plan
    chat = ChatPage(page, server)
    first, other = await answered_and_another_tab(chat, context)
    shown = other.locator("#messages article.assistant")

    second = await chat.regenerate(first)  # streams in the other tab too
    await expect(other.locator(f"#m{second}")).to_have_attribute("data-status", "complete")
    await expect(shown).to_have_count(1)
    await expect(shown.locator(".content")).to_have_text("Answer number 2.")
    await expect(shown.locator(".versions")).to_contain_text("version 2 of 2")

    await (
        page.locator("#messages article.assistant")
        .get_by_role("button", name="Previous version")
        .click()
    )
    await expect(shown.locator(".content")).to_have_text("Answer number 1.")
    await expect(shown.locator(".versions")).to_contain_text("version 1 of 2")

    user = page.locator("#messages article.user")
    await user.get_by_role("button", name="Edit").click()
    await user.get_by_label("Edit your message").fill("Tell me more")
    await user.get_by_role("button", name="Save and send").click()
    await expect(other.locator("#messages article.user .content")).to_have_text("Tell me more")
    await expect(other.locator("#messages article.user .versions")).to_contain_text(
        "version 2 of 2"
    )
    await expect(shown).to_have_count(1)
    await expect(shown.locator(".content")).to_have_text("Answer number 3.")
    await expect(shown).to_have_attribute("data-status", "complete")
    # The tab that asked shows each change once.
    await expect(page.locator("#messages article")).to_have_count(2)
    await expect(page.locator("#messages article.assistant .content")).to_have_text(
        "Answer number 3."
    )
    assert watch.console_errors == [] and watch.csp_violations == []


async def test_a_tab_that_missed_a_change_redraws_its_list_on_the_next_one(
    page, context, server, fake_upstream, watch
):
    """A tab that missed a turn (its socket down) was sent a later Regenerate's new path from
    a fork it did not show: appended below what it showed, two branches mixed, and the
    message it sent then was accepted below a turn it never saw."""

    fake_upstream.plan = numbered_answers
    chat = ChatPage(page, server)
    first, other, hearing = await answered_and_a_deaf_tab(chat, context)
    hearing["on"] = False
    second = await chat.send("Second question")  # the other tab misses this turn
    await chat.wait_finished(second)
    hearing["on"] = True
    third = await chat.regenerate(second)
    await chat.wait_finished(third)
    shown = other.locator("#messages article")
    await expect(shown.locator(".content")).to_have_text(
        ["First question", "Answer number 1.", "Second question", "Answer number 3."]
    )
    assert watch.console_errors == [] and watch.csp_violations == []


async def test_a_tab_with_an_edit_under_way_keeps_it_when_another_tab_edits(
    page, context, server, fake_upstream, watch
):
    """The path drawn anew took the other tab's open edit box, and what was typed in it."""
    fake_upstream.plan = numbered_answers
    chat = ChatPage(page, server)
    first, other = await answered_and_another_tab(chat, context)
    theirs = other.locator("#messages article.user")
    await theirs.get_by_role("button", name="Edit").click()
    await theirs.get_by_label("Edit your message").fill("Tell me something else")
    mine = page.locator("#messages article.user")
    await mine.get_by_role("button", name="Edit").click()
    await mine.get_by_label("Edit your message").fill("Tell me a story")
    await mine.get_by_role("button", name="Save and send").click()
    await expect(page.locator("#messages article.assistant .content")).to_have_text(
        "Answer number 2."
    )
    await expect(theirs.get_by_label("Edit your message")).to_have_value("Tell me something else")
    await theirs.get_by_role("button", name="Save and send").click()  # the edit goes through
    await expect(other.locator("#messages article.assistant .content")).to_have_text(
        "Answer number 3."
    )
    await expect(other.locator("#messages article.user .content")).to_have_text(
        "Tell me something else"
    )
    assert watch.console_errors == [] and watch.csp_violations == []


async def test_a_tab_that_missed_a_change_loads_again_on_the_next_turn(
    page, context, server, fake_upstream, watch
):
    """A tab that missed a Regenerate (its socket down) was sent the next turn as it was:
    appended below the version it still showed, two branches mixed."""
    fake_upstream.plan = numbered_answers
    chat = ChatPage(page, server)
    first, other, hearing = await answered_and_a_deaf_tab(chat, context)
    hearing["on"] = False
    second = await chat.regenerate(first)  # the other tab misses this change
    await chat.wait_finished(second)
    hearing["on"] = True
    third = await chat.send("Second question")
    await chat.wait_finished(third)
    shown = other.locator("#messages article")
    await expect(shown.locator(".content")).to_have_text(
        ["First question", "Answer number 2.", "Second question", "Answer number 3."]
    )
    await expect(other.locator(f"#m{third}")).to_have_attribute("data-status", "complete")
    assert watch.console_errors == [] and watch.csp_violations == []


async def test_a_tab_that_missed_a_change_keeps_a_half_typed_comment_and_title(
    page, context, server, fake_upstream, watch
):
    """It loaded again on the next turn, and a reply's comment or a new title being typed
    went with the page (an edit's text and the message box's were kept)."""
    fake_upstream.plan = numbered_answers
    chat = ChatPage(page, server)
    first, other, hearing = await answered_and_a_deaf_tab(chat, context)
    theirs = other.locator(f"#m{first}")
    await theirs.get_by_role("button", name="Good reply").click()
    await expect(theirs.get_by_role("button", name="Good reply")).to_have_attribute(
        "aria-pressed", "true"
    )
    await theirs.get_by_label("Comment").fill("Short and to the point")
    await other.locator(".conversation-menu summary").click()
    await other.get_by_label("Title").fill("Numbered answers")
    hearing["on"] = False
    second = await chat.regenerate(first)  # the other tab misses this change
    await chat.wait_finished(second)
    await other.evaluate(
        """window.heard = [];
        document.addEventListener("htmx:wsBeforeMessage", function (event) {
          window.heard.push(String(event.detail.message));
        });"""
    )
    hearing["on"] = True
    third = await chat.send("Second question")
    await chat.wait_finished(third)
    # The turn has reached the other tab, its reply's end too (a reload would forget `heard`).
    await other.wait_for_function(
        "id => (window.heard || []).some(m => m.includes('id=\"e' + id + '\"'))", arg=third
    )
    await expect(theirs.get_by_label("Comment")).to_have_value("Short and to the point")
    await expect(other.get_by_label("Title")).to_have_value("Numbered answers")
    await other.get_by_role("button", name="Rename").click()
    await expect(other.locator("#conversation-title")).to_have_text("Numbered answers")
    await theirs.get_by_role("button", name="Save comment").click()
    await expect(theirs.get_by_text("Comment saved.")).to_be_visible()
    saved = await Message.objects.aget(pk=first)
    assert (saved.feedback, saved.feedback_comment) == ("up", "Short and to the point")
    assert watch.console_errors == [] and watch.csp_violations == []
