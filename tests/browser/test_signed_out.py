"""A tab whose session ends (logged out in another tab, say) says so and offers to log in
again, instead of saying "Reconnecting…" for ever: its socket is closed for good."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.pages import SCHEMES, SIZES, axe_problems, overflow
from tests.browser.support import BROWSER_MARKS, ChatPage

pytestmark = BROWSER_MARKS


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_tab_signed_out_elsewhere_says_so_and_offers_to_log_in_again(
    page, context, watch, server, viewport, scheme, tmp_path
):
    await page.emulate_media(color_scheme=scheme)
    chat = ChatPage(page, server)
    conversation_url = await chat.new_conversation()
    status = page.locator("#connection-status")
    await expect(status).to_have_text("")

    # Logged out in another tab of this browser (the same session).
    token = next(c["value"] for c in await context.cookies() if c["name"] == "csrftoken")
    logout = await context.request.post(
        server.url + "/accounts/logout/", headers={"X-CSRFToken": token}, max_redirects=0
    )
    assert logout.status == 302, await logout.text()

    await expect(status).to_have_text("You were signed out. Log in again")
    link = status.get_by_role("link", name="Log in again")
    await expect(link).to_be_visible()
    await page.wait_for_timeout(1500)  # not replaced by "Reconnecting…", nor reconnected
    await expect(status).to_have_text("You were signed out. Log in again")
    assert await axe_problems(page) == []
    widths = await overflow(page)
    assert widths["page"] <= widths["window"], widths
    await page.screenshot(path=str(tmp_path / f"signed-out-{viewport['width']}-{scheme}.png"))

    await link.click()
    await page.wait_for_url(lambda url: "/accounts/login/" in url)
    assert conversation_url.removeprefix(server.url) in page.url.replace("%2F", "/")
    assert watch.console_errors == [] and watch.csp_violations == []


async def test_a_new_password_set_in_this_browser_keeps_its_tabs_connected(
    page, context, watch, server
):
    """Django's password change gives this browser's cookie a new session and ends the old
    one, which the open tab's socket was opened with: the tab asks whether the page still
    loads, and its socket opens again, rather than saying it was signed out."""
    chat = ChatPage(page, server)
    await chat.new_conversation()
    status = page.locator("#connection-status")

    token = next(c["value"] for c in await context.cookies() if c["name"] == "csrftoken")
    changed = await context.request.post(
        server.url + "/accounts/password_change/",
        form={
            "old_password": "alice-password",
            "new_password1": "a-much-longer-passw0rd!",
            "new_password2": "a-much-longer-passw0rd!",
        },
        headers={"X-CSRFToken": token, "Referer": server.url + "/"},
        max_redirects=0,
    )
    assert changed.status == 302, await changed.text()

    await chat.wait_for_socket(2)  # closed with its old session, opened with the new one
    await expect(status).to_have_text("")
    await page.wait_for_timeout(500)
    await expect(status).to_have_text("")
    reply_id = await chat.send("still here?")
    await chat.wait_finished(reply_id)
    assert watch.console_errors == [] and watch.csp_violations == []
