"""A real browser as the client: Debian's chromium driven by Playwright opens a conversation,
sends a message and records the page's long tasks (main-thread tasks over 50 ms) while the
reply streams in and is rendered.

Skipped, with the reason, when chromium or Playwright is missing.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.clients import Target
from bench.tokens import Shape

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [  # as tests/browser/conftest.py
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Before the page's own scripts: count the WebSocket's opens (htmx:wsOpen).
WS_OPEN_LISTENER = """
window.__benchWsOpen = 0;
document.addEventListener("htmx:wsOpen", function () { window.__benchWsOpen += 1; });
"""
# Long tasks since the page loaded (`buffered`), kept with their start (ms since navigation).
LONG_TASK_OBSERVER = """
() => {
  window.__benchLongTasks = [];
  new PerformanceObserver(function (list) {
    list.getEntries().forEach(function (e) {
      window.__benchLongTasks.push({start: e.startTime, duration: e.duration});
    });
  }).observe({type: "longtask", buffered: true});
  return performance.now();
}
"""
REPLY_DONE = """
(id) => {
  const reply = document.getElementById("m" + id);
  return !!reply && !document.getElementById("t" + id)
    && reply.dataset.status !== "pending" && reply.dataset.status !== "streaming";
}
"""
REPLY_SHOWN = """
(id) => {
  const reply = document.getElementById("m" + id);
  const blocks = document.getElementById("c" + id);
  return {
    status: reply ? reply.dataset.status : null,
    text_length: blocks ? blocks.textContent.length : 0,
    code_blocks: blocks ? blocks.querySelectorAll("pre").length : 0,
    tables: blocks ? blocks.querySelectorAll("table").length : 0,
  };
}
"""


def missing() -> str:
    """Why the browser scenario cannot run here, or ''."""
    if shutil.which(str(CHROMIUM)) is None:
        return f"{CHROMIUM} is missing (Debian's chromium package)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[test]')"
    return ""


@dataclass
class BrowserResult:
    shape: Shape
    target: Target
    reply_id: int | None = None
    submitted: float = 0.0  # time.time() as Enter was pressed
    finished: float = 0.0  # the page showed the finished reply
    sent_at_ms: float = 0.0  # performance.now() as Enter was pressed
    finished_at_ms: float = 0.0
    long_tasks: list[dict[str, float]] = field(default_factory=list)  # {start, duration} ms
    shown: dict[str, Any] = field(default_factory=dict)
    console_errors: list[str] = field(default_factory=list)
    chromium: str = ""
    error: str = ""


async def stream_into_page(result: BrowserResult, timeout: float) -> BrowserResult:
    """Log in (the session cookie), open the conversation, install the long-task observer,
    send the shape's message with the composer, and wait until the reply is finished."""
    from playwright.async_api import async_playwright

    target, shape = result.target, result.shape
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            result.chromium = browser.version
            try:
                context = await browser.new_context(
                    viewport={"width": 1280, "height": 800}, locale="en-US"
                )
                await context.add_cookies(
                    [
                        {
                            "name": "sessionid",
                            "value": target.session,
                            "domain": "127.0.0.1",
                            "path": "/",
                            "httpOnly": True,
                            "sameSite": "Lax",
                        }
                    ]
                )
                page = await context.new_page()
                page.on(
                    "console",
                    lambda m: result.console_errors.append(m.text) if m.type == "error" else None,
                )
                page.on("pageerror", lambda e: result.console_errors.append(str(e)))
                await page.add_init_script(WS_OPEN_LISTENER)
                await page.goto(f"{target.origin}/c/{target.conversation}/")
                await page.wait_for_function("() => window.__benchWsOpen >= 1", timeout=30_000)
                await page.evaluate(LONG_TASK_OBSERVER)
                replies = page.locator("#messages article.assistant")
                before = await replies.count()
                composer = page.locator("#composer-text")
                await composer.fill(shape.message())
                result.sent_at_ms = await page.evaluate("() => performance.now()")
                result.submitted = time.time()
                await composer.press("Enter")
                await page.wait_for_function(
                    f"() => document.querySelectorAll('#messages article.assistant').length"
                    f" > {before}",
                    timeout=30_000,
                )
                rid = await replies.last.get_attribute("id")
                result.reply_id = int((rid or "m0")[1:])
                await page.wait_for_function(
                    REPLY_DONE, arg=result.reply_id, timeout=timeout * 1000, polling=20
                )
                result.finished = time.time()
                result.finished_at_ms = await page.evaluate("() => performance.now()")
                # Long-task entries are delivered after the task: give the last ones time.
                await page.wait_for_timeout(500)
                result.long_tasks = await page.evaluate("() => window.__benchLongTasks")
                result.shown = await page.evaluate(REPLY_SHOWN, result.reply_id)
                await context.close()
            finally:
                await browser.close()
    except Exception as exc:  # reported, not fatal to the run
        result.error = f"{type(exc).__name__}: {exc}"
    return result
