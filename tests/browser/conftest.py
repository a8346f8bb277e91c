"""Real-browser fixtures: Debian's chromium driven by Playwright (async API).

One chromium per test package (launching it costs ~2 s), a fresh context and page per test.
Every page is watched: console errors, uncaught exceptions and Content Security Policy
violations fail the test; failed requests, WebSockets and dialogs are recorded. When a test
fails, a screenshot, the page HTML, the watch log and the server log are saved into
test-artifacts/.

Browser tests run on one event loop per package: each module sets
`pytestmark = BROWSER_MARKS` (from tests.browser.support).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from tests.browser.support import CSP_LISTENER, LOOP, PageWatch
from tests.live import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

WATCH_KEY = pytest.StashKey[PageWatch]()
SERVERS_KEY = pytest.StashKey[list[ServerProcess]]()
REPORTS_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()


# --- Hooks ------------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test that passed still fails if its page logged a JS error or a CSP violation."""
    result = yield
    watch = item.stash.get(WATCH_KEY, None)
    if watch is not None and watch.problems():
        raise AssertionError("the page reported problems:\n  " + "\n  ".join(watch.problems()))
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[pytest.TestReport]:
    report = yield
    item.stash.setdefault(REPORTS_KEY, {})[report.when] = report
    return report


def _failed(node: pytest.Item) -> bool:
    reports = node.stash.get(REPORTS_KEY, {})
    return any(r.failed for r in reports.values())


def _artifact_name(node: pytest.Item) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", node.nodeid.split("::", 1)[-1])[:120]


# --- Fixtures ---------------------------------------------------------------------------------


@pytest_asyncio.fixture(autouse=True, loop_scope=LOOP)
async def close_thread_connections() -> AsyncIterator[None]:
    """The async ORM runs on asgiref's executor thread; close its connections after each test
    so the test database can be flushed or dropped."""
    yield
    await sync_to_async(connections.close_all)()


@pytest_asyncio.fixture(scope="package", loop_scope=LOOP)
async def browser() -> AsyncIterator[Any]:
    if shutil.which(str(CHROMIUM)) is None:
        pytest.skip(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(scripts/test installs it with apt-get when run as root)"
        )
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


@pytest.fixture
def server_factory(
    request: pytest.FixtureRequest, start_server: Callable[..., ServerProcess]
) -> Callable[..., ServerProcess]:
    """`server_factory(port=None, **env)`: start_server, remembered so its log is saved on
    failure."""
    servers = request.node.stash.setdefault(SERVERS_KEY, [])

    def start(port: int | None = None, **env: str) -> ServerProcess:
        server = start_server(port=port, **env)
        servers.append(server)
        return server

    return start


@pytest.fixture
def server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory()


@pytest.fixture
def viewport() -> dict[str, int]:
    """Override in a test module (or parametrize indirectly) for another window size."""
    return {"width": 1280, "height": 800}


@pytest.fixture
def touch() -> bool:
    """Parametrize indirectly with True for a phone's touch screen (no hover)."""
    return False


@pytest_asyncio.fixture(loop_scope=LOOP)
async def context(
    browser: Any, alice_session: str, viewport: dict[str, int], touch: bool
) -> AsyncIterator[Any]:
    """A fresh browser profile, logged in as alice, light theme."""
    context = await browser.new_context(
        viewport=viewport,
        color_scheme="light",
        locale="en-US",
        reduced_motion="reduce",
        has_touch=touch,
        is_mobile=touch,
    )
    context.set_default_timeout(10_000)
    await context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": alice_session,
                "domain": "127.0.0.1",
                "path": "/",
                "httpOnly": True,
                "sameSite": "Lax",
            }
        ]
    )
    yield context
    await context.close()


@pytest.fixture
def watch(request: pytest.FixtureRequest) -> PageWatch:
    watch = PageWatch()
    request.node.stash[WATCH_KEY] = watch
    return watch


@pytest_asyncio.fixture(loop_scope=LOOP)
async def page(
    request: pytest.FixtureRequest, context: Any, watch: PageWatch
) -> AsyncIterator[Any]:
    page = await context.new_page()
    await page.expose_function(
        "__chatsiteCspViolation", lambda text: watch.csp_violations.append(text)
    )
    await page.add_init_script(CSP_LISTENER)
    watch.attach(page)
    yield page
    if _failed(request.node):
        await save_artifacts(request.node, page, watch)


async def save_artifacts(node: pytest.Item, page: Any, watch: PageWatch) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    name = _artifact_name(node)
    try:
        await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        (ARTIFACTS / f"{name}.html").write_text(await page.content())
    except Exception as exc:  # the page may be gone; keep what we can
        (ARTIFACTS / f"{name}.html").write_text(f"could not capture the page: {exc!r}")
    logs = [watch.log()]
    for i, server in enumerate(node.stash.get(SERVERS_KEY, [])):
        logs.append(f"== server {i} log ==\n{server.log_text()}")
    (ARTIFACTS / f"{name}.log").write_text("\n".join(logs))
