"""Every page, at laptop and phone size, light and dark: no console error, no CSP violation, no
serious accessibility problem (axe-core), nothing wider than the window."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.pages import SCHEMES, SIZES, axe_problems, sideways_scrolls, stops, tour
from tests.browser.support import BROWSER_MARKS

pytestmark = BROWSER_MARKS


@pytest.fixture
def user(django_user_model: type) -> Any:
    """Staff: the tour ends in the admin."""
    return django_user_model.objects.create_superuser(
        "alice", email="alice@example.com", password="alice-password"
    )


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_every_page_is_clean_accessible_and_fits(
    page, watch, server_factory, user, viewport, scheme
):
    server = server_factory(
        OPENAI_BASE_URL="",
        OPENAI_API_KEY="",
        CHAT_MODEL="",
        CHAT_DEMO_MIN_TPS="40",
        CHAT_DEMO_MAX_TPS="60",
        CHAT_GENERATE_TITLES="true",
    )
    await page.emulate_media(color_scheme=scheme)
    await page.context.clear_cookies()
    problems: dict[str, list[str]] = {}
    visited = []
    async for stop in tour(page, server.url, username="alice", password="alice-password"):
        visited.append(stop.name)
        found = await axe_problems(page)
        found += await sideways_scrolls(page)
        if found:
            problems[stop.name] = found
    assert tuple(visited) == stops(viewport)
    assert problems == {}, "\n".join(
        f"{name}: {p}" for name, found in problems.items() for p in found
    )
    assert watch.console_errors == [] and watch.csp_violations == []
