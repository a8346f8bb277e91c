"""A tour of every page a person sees, in the order they meet them: the login page, the start
page, a conversation while its reply streams and once it has finished, on a phone its
conversations drawer, its settings (the system
prompt), and the admin's conversation list and transcript.

`tests/browser/test_every_page.py` checks each stop (no console error or CSP violation, no
serious accessibility problem, nothing wider than the window); `tests/screenshots.py` takes a
picture of each for `docs/screenshots/`. Both run it against a server with the demo model.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from playwright.async_api import Page, expect

# The demo model answers with headings, a list, a table and a code block: every kind of block.
QUESTION = "Can you explain how the streaming works?"
SYSTEM_PROMPT = "Answer briefly, and show code when it helps."
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SIZES = {"desktop": DESKTOP, "phone": PHONE}
SCHEMES = ("light", "dark")
STOPS = (
    "login",
    "start",
    "conversation-streaming",
    "conversation",
    "drawer",
    "settings",
    "admin-list",
    "admin-transcript",
)

# Stops only a phone has: its conversations open as a drawer over the chat.
PHONE_ONLY = ("drawer",)


def stops(viewport: dict[str, int]) -> tuple[str, ...]:
    """The tour's stops at this size."""
    return tuple(s for s in STOPS if viewport == PHONE or s not in PHONE_ONLY)


# Serious accessibility problems axe-core finds on the page (its own script, run by
# Playwright outside the page's CSP).
AXE_IMPACTS = ("serious", "critical")


@dataclass
class Stop:
    name: str
    url: str


async def tour(page: Page, base_url: str, *, username: str, password: str) -> AsyncIterator[Stop]:
    """Walk the pages, yielding at each stop once it is shown and settled. Starts logged out."""
    await page.goto(base_url + "/accounts/login/")
    yield Stop("login", page.url)

    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(base_url + "/")
    await expect(page.locator("#composer-text")).to_be_focused()
    yield Stop("start", page.url)

    await page.locator("#composer-text").fill(QUESTION)
    await page.locator("#composer-text").press("Enter")
    await page.wait_for_url(re.compile(r"/c/[0-9a-f-]{36}/$"))
    reply = page.locator("#messages article.assistant").last
    # Far enough into the reply that a heading and a list are formatted, with text still coming.
    await expect(reply.locator(".content.markdown ol > li").nth(1)).to_be_attached(timeout=20_000)
    await expect(reply).to_have_attribute("data-status", re.compile("pending|streaming"))
    await page.locator("#composer-text").blur()
    yield Stop("conversation-streaming", page.url)

    await expect(reply).to_have_attribute("data-status", "complete", timeout=60_000)
    await expect(reply.locator(".code-copy").first).to_be_attached()
    conversation_url = page.url
    await page.locator("#composer-text").blur()
    await page.mouse.move(0, 0)
    yield Stop("conversation", conversation_url)

    toggle = page.get_by_role("button", name="Conversations", exact=True)
    if await toggle.is_visible():  # a phone: the conversations open as a drawer
        await toggle.click()
        await expect(page.locator("#sidebar")).to_be_visible()
        yield Stop("drawer", conversation_url)
        await page.get_by_role("button", name="Close conversations").click()
        await expect(page.locator("#sidebar")).to_be_hidden()

    if await page.locator(".prompt-menu > summary").is_visible():
        await page.locator(".prompt-menu > summary").click()
    else:  # a phone: the system prompt is an item of the conversation's menu
        await page.locator(".conversation-menu > summary").click()
        await page.get_by_role("button", name="System prompt…").click()
    await page.get_by_label("System prompt").fill(SYSTEM_PROMPT)
    await page.get_by_role("button", name="Save system prompt").click()
    await expect(page.get_by_text("Saved. Used from the next reply on.")).to_be_visible()
    await expect(page.locator("header .prompt-mark")).to_be_attached()
    panel = await page.locator(".prompt-menu .menu-body").bounding_box()
    window = page.viewport_size
    assert panel and window and panel["x"] >= 0 and panel["x"] + panel["width"] <= window["width"]
    yield Stop("settings", conversation_url)

    await page.goto(base_url + "/admin/chat/conversation/")
    yield Stop("admin-list", page.url)

    conversation_id = conversation_url.rstrip("/").rsplit("/", 1)[-1]
    await page.goto(f"{base_url}/admin/chat/conversation/{conversation_id}/transcript/")
    yield Stop("admin-transcript", page.url)


async def axe_problems(page: Page) -> list[str]:
    """The serious and critical accessibility violations axe-core finds on the page."""
    from axe_playwright_python.async_playwright import Axe

    results = await Axe().run(page)
    problems = []
    for violation in results.response["violations"]:
        if violation.get("impact") in AXE_IMPACTS:
            targets = [", ".join(node["target"]) for node in violation["nodes"]][:5]
            problems.append(f"{violation['id']} ({violation['impact']}): {targets}")
    return problems


async def check_looks(page: Page, screenshot: Path) -> None:
    """A page as it is looked at: no serious accessibility problem, nothing scrolls sideways,
    and a screenshot to open (`screenshot`)."""
    assert await axe_problems(page) == []
    assert await sideways_scrolls(page) == []
    await page.screenshot(path=str(screenshot))


async def sideways_scrolls(page: Page) -> list[str]:
    """What scrolls sideways and must not: the page, or the conversation's messages (a wide
    table or code block scrolls in its own box)."""
    widths = await page.evaluate(
        """() => {
          const messages = document.getElementById("messages");
          return {
            "the page scrolls": [document.documentElement.scrollWidth, window.innerWidth],
            "the messages scroll": messages ? [messages.scrollWidth, messages.clientWidth] : [0, 0],
          };
        }"""
    )
    return [
        f"{what} sideways: {wide} px in {room}"
        for what, (wide, room) in widths.items()
        if wide > room
    ]
