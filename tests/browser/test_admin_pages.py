"""The admin pages staff review conversations on: the changelist fits the window, and the
transcript reads like the chat, in light and dark."""

from __future__ import annotations

import os
from typing import Any

import pytest
from playwright.async_api import expect

from chat import services
from chat.models import Conversation, Message
from tests.browser.pages import axe_problems
from tests.browser.support import BROWSER_MARKS

pytestmark = BROWSER_MARKS

LONG_TITLES = [
    "Planning a two week rail trip through Portugal and Spain with a tight budget and kids",
    "Why does my Django admin changelist need horizontal scrolling on a laptop screen",
    "Explain the difference between optimistic and pessimistic locking in PostgreSQL",
    "Recipe ideas for a vegetarian dinner party of eight with one gluten free guest",
    # a first message that is a long link: no blank to wrap at (it ran over the next columns
    # and pushed the last out of the window, on a laptop and on a phone)
    "https://example.com/" + "a" * 150,
]
# Figures do not wrap: wider than the transcript on a laptop too.
WIDE_TABLE = "".join(
    "| "
    + " | ".join(f"{row}{i}_1,234,567.89" for i in range(10))
    + " |\n"
    + ("|" + "---|" * 10 + "\n" if row == "A" else "")
    for row in "ABC"
)
# Set to a folder to save screenshots of every page and theme there (for looking at them).
SCREENSHOTS = os.environ.get("CHATSITE_ADMIN_SCREENSHOTS", "")


@pytest.fixture
def user(django_user_model: type) -> Any:
    """The logged-in browser user is staff here: these are admin pages."""
    return django_user_model.objects.create_superuser(
        "alice", email="alice@example.com", password="alice-password"
    )


@pytest.fixture
def conversations(user: Any) -> list[Conversation]:
    made = []
    for i, title in enumerate(LONG_TITLES):
        conversation = Conversation.objects.create(
            owner=user, title=title, model="gpt-4o-mini-2024-07-18", system_prompt="Be brief."
        )
        Message.objects.create(
            conversation=conversation, role="user", content=f"Question {i}: {title}?"
        )
        answer = (
            "Here is **an answer** with a list:\n\n- one\n- two\n\n```python\n"
            "print('a code block that is rather long so that it might overflow the page')\n```"
            "\n\n" + WIDE_TABLE + "\nSee https://example.com/" + "x" * 150 + " for more."
        )
        Message.objects.create(
            conversation=conversation,
            role="assistant",
            status="complete",
            finish_reason="stop",
            model="gpt-4o-mini-2024-07-18",
            system_prompt="Be brief.",
            content=answer,
            **services.rendered_fields(content=answer, reasoning=""),
            prompt_tokens=12345,
            completion_tokens=67890,
            feedback="up" if i % 2 else "",
        )
        made.append(conversation)
    return made


# The page does not scroll sideways, nor does the box the admin puts the results table in.
OVERFLOW_JS = """
() => {
  const results = document.querySelector("#changelist-form .results");
  return {
    page: [document.documentElement.scrollWidth, window.innerWidth],
    results: results ? [results.scrollWidth, results.clientWidth] : null,
  };
}
"""


# Each column's head, and the name its field's cell shows before its value
FIELD_NAMES_JS = """
(group) => {
  const heads = [...group.querySelectorAll("thead th")];
  const row = group.querySelector("tbody tr.has_original");
  return heads.map((head, i) => [head, row.children[i]])
    .filter(([head, cell]) => cell && getComputedStyle(cell).display !== "none")
    .map(([head, cell]) => [head.textContent.trim(),
      getComputedStyle(cell, "::before").content.replace(/^"|"$/g, "")]);
}
"""


async def _overflow(page: Any) -> dict[str, Any]:
    return await page.evaluate(OVERFLOW_JS)


async def _screenshot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        await page.screenshot(path=f"{SCREENSHOTS}/admin-{name}.png", full_page=True)


@pytest.mark.parametrize(
    "viewport", [{"width": 1400, "height": 900}, {"width": 1280, "height": 900}]
)
async def test_the_conversation_changelist_fits_the_window_without_scrolling_sideways(
    page, server, conversations
):
    await page.goto(server.url + "/admin/chat/conversation/")
    assert await page.locator("#result_list tbody tr").count() == len(conversations)
    widths = await _overflow(page)
    assert widths["page"][0] <= widths["page"][1], widths
    assert widths["results"][0] <= widths["results"][1], widths
    # A shortened title keeps the whole one in its title attribute, and ends on a whole word.
    title = page.locator(f'#result_list [title="{LONG_TITLES[0]}"]')
    shown = await title.inner_text()
    assert shown.endswith("…") and LONG_TITLES[0].startswith(shown[:-1] + " ")


@pytest.mark.parametrize(
    "viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}]
)
@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_the_list_and_transcript_read_well_on_laptop_and_phone_in_both_themes(
    page, server, conversations, viewport, scheme, watch
):
    await page.emulate_media(color_scheme=scheme)
    name = f"{viewport['width']}-{scheme}"
    await page.goto(server.url + "/admin/chat/conversation/?q=answer")
    assert await page.locator("#result_list tbody tr").count() == len(conversations)
    await _screenshot(page, f"list-{name}")
    widths = await _overflow(page)
    assert widths["page"][0] <= widths["page"][1], widths
    assert widths["results"][0] <= widths["results"][1], widths
    assert await page.locator("#result_list .field-transcript_short a").first.is_visible()

    # The messages list, newest first: each row's text and conversation cut short, on one
    # page width (the conversation's whole title pushed the columns past a laptop's window).
    await page.goto(server.url + "/admin/chat/message/")
    await _screenshot(page, f"messages-{name}")
    rows = page.locator("#result_list tbody tr")
    assert await rows.count() == 2 * len(conversations)
    await expect(rows.first.locator(".field-text_short")).to_contain_text("Here is **an answer**")
    widths = await _overflow(page)
    assert widths["page"][0] <= widths["page"][1], widths
    assert widths["results"][0] <= widths["results"][1], widths
    assert await axe_problems(page) == []

    await page.goto(server.url + f"/admin/chat/conversation/{conversations[1].pk}/transcript/")
    await _screenshot(page, f"transcript-{name}")
    assert await page.locator(".messagelist").count() == 0
    assert await page.locator(".t-message").count() == 2  # question, answer
    # The answer shows the system prompt it was generated with.
    assert "Be brief." in await page.locator(".t-message.assistant .t-system-prompt").inner_text()
    assert "1 reply ·" in await page.locator(".transcript-meta").inner_text()
    widths = await _overflow(page)
    assert widths["page"][0] <= widths["page"][1], widths
    # A wide table scrolls in its own box, where the page scrolled sideways, and is a tab
    # stop, so the keyboard can scroll it; a long URL breaks (the page scrolled sideways too).
    table = page.locator(".t-message.assistant table")
    await expect(table).to_have_attribute("tabindex", "0")
    assert await table.evaluate("(table) => table.scrollWidth > table.clientWidth")
    assert await axe_problems(page) == []
    # The code block follows the theme like the admin around it does.
    code = await page.evaluate(
        "() => getComputedStyle(document.querySelector('.markdown pre')).backgroundColor"
    )
    assert (code == "rgb(248, 248, 248)") == (scheme == "light"), code

    # The conversation's page: its messages, fifteen columns wide, scrolled sideways in a box
    # the keyboard could not reach, their text cut off on a phone. On a phone each message is
    # a card of its fields, named; on a laptop, a table no wider than the page.
    await page.goto(server.url + f"/admin/chat/conversation/{conversations[1].pk}/change/")
    await _screenshot(page, f"change-{name}")
    messages = page.locator("#messages-group")
    await expect(messages.locator("tbody tr.has_original")).to_have_count(2)
    widths = await messages.evaluate(
        "(group) => [document.documentElement.scrollWidth, window.innerWidth,"
        " ...[...group.querySelectorAll('*')].filter((e) => e.scrollWidth > e.clientWidth + 1"
        " && getComputedStyle(e).overflowX !== 'visible').map((e) => e.className || e.tagName)]"
    )
    assert widths[0] <= widths[1] and widths[2:] == [], widths
    answer = messages.locator("tbody tr.has_original").nth(1)
    await expect(answer.locator("td.field-content")).to_contain_text("an answer")
    # Each field is named as its column's head, which is not shown
    names = await messages.evaluate(FIELD_NAMES_JS)
    assert len(names) == 15 and all(shown == f"{head}: " for head, shown in names), names
    assert watch.csp_violations == [] and watch.console_errors == []
    assert await axe_problems(page) == []
    # axe's own run on this page (the admin's jQuery, asked for styles) is refused inline
    # styles by the policy; the page itself asked for none (checked just above).
    watch.csp_violations.clear()
    watch.console_errors.clear()

    # A title with no blank to wrap at (a link) wraps in the pages' headings and breadcrumbs
    # (found by a walk-through: the page scrolled sideways, 983 px wide on a phone)
    for view in ("transcript", "change"):
        await page.goto(server.url + f"/admin/chat/conversation/{conversations[4].pk}/{view}/")
        await _screenshot(page, f"long-title-{view}-{name}")
        widths = await _overflow(page)
        assert widths["page"][0] <= widths["page"][1], (view, widths)


INDENTED = "A function:\n\n```python\ndef twice(x):\n    if x:\n        return 2 * x\n```\n"


@pytest.fixture
def indented(user: Any) -> Conversation:
    """A conversation whose reply's text has indented code."""
    conversation = Conversation.objects.create(owner=user, title="Code", model="m")
    Message.objects.create(conversation=conversation, role="user", content="Write it")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        status="complete",
        content=INDENTED,
        **services.rendered_fields(content=INDENTED, reasoning=""),
    )
    return conversation


@pytest.mark.parametrize(
    "viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}]
)
async def test_a_messages_text_keeps_its_indentation_on_the_conversations_page(
    page, server, indented, viewport, tmp_path
):
    """Found by a walk-through: the conversation's page drew each message's text with its
    spaces collapsed (Django draws a read-only field's line ends as line breaks), so a reply's
    Python showed flush left, its structure gone. (axe runs on this page in the test above.)"""
    await page.goto(server.url + f"/admin/chat/conversation/{indented.pk}/change/")
    text = page.locator("#messages-group tbody tr.has_original td.field-content").nth(1)
    shown = await text.inner_text()
    assert "def twice(x):\n    if x:\n        return 2 * x" in shown, shown
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    await page.screenshot(
        path=str(tmp_path / f"admin-indented-{viewport['width']}.png"),
        caret="initial",
        full_page=True,
    )
