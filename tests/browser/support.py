"""Helpers for the browser tests: the marks every module uses, the page watcher, and a small
page object for the chat page."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.fake_upstream import FakeRequest, FakeUpstream, reply_events
from tests.live import ServerProcess

LOOP = "package"

# Every browser test module: `pytestmark = BROWSER_MARKS`.
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio(loop_scope=LOOP),
    pytest.mark.timeout(90),
]

# Added to every page before its own scripts run (init scripts are not subject to its CSP):
# report CSP violations to Python at once, and count WebSocket connections that opened.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", function (e) {
  window.__chatsiteCspViolation(
    e.violatedDirective + " blocked " + (e.blockedURI || "(inline)") + " at " +
    (e.sourceFile || "?") + ":" + e.lineNumber + " sample=" + (e.sample || ""));
});
""" + (
    WS_COUNTER := """
window.__chatsiteWsOpen = 0;
document.addEventListener("htmx:wsOpen", function () { window.__chatsiteWsOpen += 1; });
"""
)
LOCAL_URL = re.compile(r"^(https?|wss?)://127\.0\.0\.1:\d+/")

# Console errors from known app bugs, each shown by a strict-xfail test named here. They are
# recorded but do not fail every other test; delete an entry once its bug is fixed.
KNOWN_CONSOLE_ERRORS: dict[str, re.Pattern[str]] = {}


@dataclass
class PageWatch:
    """What a page did that a test may want to know, or that should fail it."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every request URL, in order
    posts: list[str] = field(default_factory=list)  # the URL of every POST
    websockets: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)  # unexpected: each one fails the test
    accept_dialogs: bool = False  # a test that expects confirm() dialogs sets this
    accepted_dialogs: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)  # every console message

    def attach(self, page: Page) -> None:
        def on_console(message: Any) -> None:
            text = f"{message.type}: {message.text} ({message.location.get('url', '')})"
            self.console.append(text)
            if message.type == "error":
                self.console_errors.append(text)
                if "Content Security Policy" in message.text:
                    self.csp_violations.append(text)

        async def on_dialog(dialog: Any) -> None:
            if self.accept_dialogs:
                self.accepted_dialogs.append(f"{dialog.type}: {dialog.message}")
                await dialog.accept()
                return
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            await dialog.dismiss()

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("request", self._on_request)
        page.on(
            "requestfailed",
            lambda request: self.failed_requests.append(
                f"{request.method} {request.url}: {request.failure}"
            ),
        )
        page.on("websocket", lambda ws: self.websockets.append(ws.url))
        page.on("dialog", on_dialog)

    def _on_request(self, request: Any) -> None:
        self.requests.append(request.url)
        if request.method == "POST":
            self.posts.append(request.url)

    def foreign_requests(self, origin: str | None = None) -> list[str]:
        """Requests to anything but the local server (`origin`, or any 127.0.0.1 port)."""
        urls = self.requests + self.websockets
        if origin is None:
            return [u for u in urls if not LOCAL_URL.match(u)]
        ws_origin = origin.replace("http://", "ws://", 1)
        return [u for u in urls if not u.startswith((origin + "/", ws_origin + "/"))]

    def unexpected_console_errors(self, *, tolerate_known: bool = True) -> list[str]:
        known = KNOWN_CONSOLE_ERRORS.values() if tolerate_known else ()
        return [e for e in self.console_errors if not any(p.search(e) for p in known)]

    def problems(self) -> list[str]:
        found = [f"JS error: {e}" for e in self.page_errors]
        found += [f"CSP violation: {v}" for v in self.csp_violations]
        found += [f"console error: {e}" for e in self.unexpected_console_errors()]
        found += [f"request to another host: {u}" for u in self.foreign_requests()]
        found += [f"dialog opened: {d}" for d in self.dialogs]
        return found

    def log(self) -> str:
        sections = {
            "page errors": self.page_errors,
            "CSP violations": self.csp_violations,
            "console": self.console,
            "failed requests": self.failed_requests,
            "dialogs": self.dialogs,
            "websockets": self.websockets,
            "requests": self.requests,
        }
        return "\n".join(f"== {name} ==\n" + "\n".join(lines) for name, lines in sections.items())


def streamed(tokens: Sequence[str], delay: float = 0.04, **kwargs: Any) -> Any:
    """A fake upstream plan: a normal reply of `tokens`, `delay` seconds apart."""

    async def plan(request: FakeRequest) -> Any:
        return await request.stream(reply_events(tokens), delay=delay, **kwargs)

    return plan


class Gate:
    """Holds a fake upstream stream before a given piece until the test opens it."""

    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream
        self.event = asyncio.Event()  # waited on (and so bound to) the upstream's loop

    def open(self) -> None:
        self.upstream.loop.call_soon_threadsafe(self.event.set)

    def before(self, index: int) -> Callable[[int], Awaitable[None]]:
        async def before_piece(i: int) -> None:
            if i == index:
                await asyncio.wait_for(self.event.wait(), 60)

        return before_piece


def held_stream(upstream: FakeUpstream, tokens: Sequence[str], held: str, delay: float) -> Gate:
    """Make the fake upstream stream `tokens` (a piece each), held before the first `held`
    until the returned gate opens."""
    (gate,) = gated_stream(upstream, tokens, [list(tokens).index(held) + 1], delay)
    return gate


def gated_stream(
    upstream: FakeUpstream, tokens: Sequence[str], pieces_held: Sequence[int], delay: float
) -> list[Gate]:
    """Make the fake upstream stream `tokens` (a piece each, after the role's piece 0), held
    before each of the pieces `pieces_held` until its gate (returned in the same order)
    opens."""
    gates = [Gate(upstream) for _ in pieces_held]
    pieces = reply_events(tokens)

    async def before_piece(i: int) -> None:
        for gate, index in zip(gates, pieces_held, strict=True):
            await gate.before(index)(i)

    async def plan(request: FakeRequest) -> Any:
        return await request.stream(pieces, delay=delay, before_piece=before_piece)

    upstream.plan = plan
    return gates


# What a reply shows: its status, and its text (the live text while it streams, else the
# rendered content). `streaming` is None once the live element is gone.
REPLY_STATE_JS = """
(id) => {
  const article = document.getElementById("m" + id);
  const blocks = document.getElementById("c" + id);
  const tail = document.getElementById("t" + id);
  const text = (el) => el ? el.textContent.replace(/Copy code/g, "") : "";
  return {
    status: article ? article.dataset.status : null,
    // While it streams: the rendered blocks, then the open tail as it arrived.
    streaming: tail ? text(blocks) + tail.textContent : null,
    blocks: text(blocks),
    tail: tail ? tail.textContent : null,
    text: text(blocks),
  };
}
"""


class ChatPage:
    """The chat page as a user sees it."""

    def __init__(self, page: Page, server: ServerProcess) -> None:
        self.page = page
        self.server = server

    @property
    def composer(self) -> Any:
        return self.page.locator("#composer-text")

    def reply(self, reply_id: int) -> Any:
        return self.page.locator(f"#m{reply_id}")

    async def new_conversation(self) -> str:
        """Open a new, empty conversation's page (made the way clients before the start page
        made them, `POST /c/`); returns the page URL. The start page's own way, a conversation
        made with its first message, is `start`."""
        await self.page.goto(self.server.url + "/")
        token = next(
            c["value"] for c in await self.page.context.cookies() if c["name"] == "csrftoken"
        )
        response = await self.page.request.post(
            self.server.url + "/c/", headers={"X-CSRFToken": token}, max_redirects=0
        )
        assert response.status == 302, await response.text()
        await self.page.goto(self.server.url + response.headers["location"])
        await self.wait_for_socket()
        return self.page.url

    async def start(self, text: str) -> int:
        """From the start page, send `text` as the first message of a new conversation;
        returns the id of the reply streaming on the conversation's page."""
        await self.page.goto(self.server.url + "/")
        await self.composer.fill(text)
        await self.press_send()
        await self.page.wait_for_url(re.compile(r"/c/[0-9a-f-]{36}/$"))
        reply = self.page.locator("#messages article.assistant")
        await expect(reply).to_have_count(1)
        return int((await reply.get_attribute("id") or "")[1:])

    async def press_send(self) -> None:
        """Enter in the message box, or on a touch screen (where Enter starts a new line) the
        Send button."""
        if await self.page.evaluate(
            "() => matchMedia('(hover: none) and (pointer: coarse)').matches"
        ):
            await self.page.locator("#composer .send-button").click()
        else:
            await self.composer.press("Enter")

    async def wait_for_socket(self, count: int = 1) -> None:
        """Wait until the page's WebSocket has opened `count` times (htmx:wsOpen)."""

        async def opened() -> bool:
            return await self.page.evaluate("() => window.__chatsiteWsOpen") >= count

        await eventually(opened, message="the WebSocket did not open")

    async def open_system_prompt(self, *, tap: bool = False) -> None:
        """Open the system prompt's panel: from its header button, or on a phone from its item
        in the conversation's menu (clicked, or tapped on a touch screen)."""
        button = self.page.locator(".prompt-menu > summary")
        if await button.is_visible():
            await (button.tap() if tap else button.click())
        else:
            menu = self.page.locator(".conversation-menu > summary")
            await (menu.tap() if tap else menu.click())
            item = self.page.get_by_role("button", name=re.compile(r"^System prompt…"))
            await (item.tap() if tap else item.click())
        await expect(self.page.locator(".prompt-menu .menu-body")).to_be_visible()

    async def send(self, text: str) -> int:
        """Type `text` and press Enter; returns the id of the reply that appears."""
        before = await self.page.locator("#messages article.assistant").count()
        await self.composer.fill(text)
        await self.press_send()
        replies = self.page.locator("#messages article.assistant")
        try:
            await expect(replies).to_have_count(before + 1)
        except AssertionError as failed:
            # (what the page said and showed: once, in CI, no reply came and nothing was logged)
            try:
                seen = await self.page.evaluate(SEND_STATE_JS)
            except Exception as gone:  # (a reload under way: the 409 of a stale page)
                seen = f"not read ({gone})"
            raise AssertionError(f"{failed}; the page then: {seen}") from None
        return int((await replies.last.get_attribute("id") or "")[1:])

    async def regenerate(self, reply_id: int) -> int:
        """Click the reply's Regenerate; returns the id of the new version that replaces it."""
        await self.reply(reply_id).get_by_role("button", name="Regenerate").click()
        replies = self.page.locator("#messages article.assistant")
        await expect(replies.last).not_to_have_attribute("id", f"m{reply_id}")
        return int((await replies.last.get_attribute("id") or "")[1:])

    async def reply_in_two_versions(self, question: str) -> tuple[int, int]:
        """A new conversation whose first reply to `question` was regenerated, both finished:
        the two versions' ids (the page shows the second, its switcher on it)."""
        await self.new_conversation()
        first = await self.send(question)
        await self.wait_finished(first)
        second = await self.regenerate(first)
        await self.wait_finished(second)
        return first, second

    async def state(self, reply_id: int) -> dict[str, Any]:
        return await self.page.evaluate(REPLY_STATE_JS, reply_id)

    async def wait_for_text(self, reply_id: int, min_length: int, timeout: float = 10) -> str:
        """Wait until the live text of a streaming reply has at least `min_length` chars."""
        deadline = time.monotonic() + timeout
        while True:
            state = await self.state(reply_id)
            live = state["streaming"]
            if live is not None and len(live) >= min_length:
                return live
            assert state["status"] in ("pending", "streaming"), f"reply ended early: {state}"
            assert time.monotonic() < deadline, f"reply did not reach {min_length} chars: {state}"
            await asyncio.sleep(0.01)

    async def sample_until_finished(self, reply_id: int, timeout: float = 20) -> list[str]:
        """The live text of a reply, sampled as often as possible until it finishes."""
        return [s["streaming"] for s in await self.sample_states(reply_id, timeout)]

    async def sample_states(self, reply_id: int, timeout: float = 20) -> list[dict[str, Any]]:
        """The states of a streaming reply (see REPLY_STATE_JS), sampled as often as possible
        until its open tail is gone and it has a finished status."""
        samples: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            state = await self.state(reply_id)
            if state["streaming"] is None and state["status"] not in ("pending", "streaming"):
                return samples
            if state["streaming"] is not None:
                samples.append(state)
            assert time.monotonic() < deadline, f"reply did not finish: {state}"
            await asyncio.sleep(0.005)

    async def wait_finished(
        self, reply_id: int, status: str = "complete", timeout: float | None = None
    ) -> None:
        """Until the reply has ended so (`timeout` ms: Playwright's default, 5 s, unless a
        long reply needs more on a busy machine)."""
        await expect(self.reply(reply_id)).to_have_attribute("data-status", status, timeout=timeout)
        await expect(self.reply(reply_id).locator(".content.markdown")).to_be_attached()


def normalize(text: str) -> str:
    return " ".join(text.split())


async def eventually(
    predicate: Callable[[], Awaitable[Any]] | Callable[[], Any],
    timeout: float = 10,
    message: str = "condition not met in time",
) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.01)


# What the page shows of a send that brought no reply: the line under the message box, the
# box, the replies and their statuses, and the address (a 409 reloads the page).
SEND_STATE_JS = """() => ({
  error: (document.getElementById("composer-error") || {}).textContent || "",
  errorHidden: (document.getElementById("composer-error") || {}).hidden,
  composer: (document.getElementById("composer") || {}).className || "",
  box: (document.getElementById("composer-text") || {}).value || "",
  replies: Array.from(document.querySelectorAll("#messages > article")).map(
    (a) => a.id + ":" + a.getAttribute("data-status")),
  address: location.pathname,
})"""


async def another_tab(context: Any) -> Page:
    """A second tab in the browser of the test's page, counting its sockets as the page does
    (`ChatPage.wait_for_socket`)."""
    tab = await context.new_page()
    await tab.add_init_script(WS_COUNTER)
    return tab
