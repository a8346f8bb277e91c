"""A tab opened past the sockets one account may have open says so, and does not reconnect
at once (it would be refused again while the others stay open); it sends nothing that would
start a reply it could not show, and tries its socket again when it is looked at again."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.pages import SCHEMES, SIZES, check_looks
from tests.browser.support import BROWSER_MARKS, ChatPage

pytestmark = BROWSER_MARKS

TOO_MANY = "Too many tabs are open for this account. Close one, then come back to this tab."
NO_REPLIES_HERE = (
    "This tab cannot show replies while too many tabs are open. "
    "Close one, then come back to this tab; your message is still here."
)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_tab_past_the_sockets_an_account_may_open_says_so(
    page, context, watch, server_factory, viewport, scheme, tmp_path
):
    server = server_factory(CHAT_SOCKETS_PER_USER="1")
    await page.emulate_media(color_scheme=scheme)
    chat = ChatPage(page, server)
    url = await chat.new_conversation()
    await expect(page.locator("#connection-status")).to_have_text("")

    second = await context.new_page()
    await second.emulate_media(color_scheme=scheme)
    await second.add_init_script(
        "window.opened = 0; window.closes = [];"
        " document.addEventListener('htmx:wsOpen', () => { window.opened += 1; });"
        " document.addEventListener('htmx:wsClose',"
        " (event) => { window.closes.push(event.detail.event.code); });"
    )
    await second.goto(url)
    status = second.locator("#connection-status")
    await expect(status).to_have_text(TOO_MANY)
    # Refused: the tab does not open its socket again. (The refusal may follow an earlier
    # close that the page reconnects after, on a loaded machine: counted from the refusal.)
    opened = await second.evaluate("window.opened")
    await second.wait_for_timeout(1500)  # not replaced by "Reconnecting…", nor reconnected
    await expect(status).to_have_text(TOO_MANY)
    closes = await second.evaluate("window.closes")
    assert await second.evaluate("window.opened") == opened, closes
    assert closes[-1] == 4429, closes
    # A message sent there is not sent (its reply would not show in this tab): it stays.
    posts: list[str] = []
    second.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    box = second.locator("#composer-text")
    await box.fill("kept for later")
    await second.locator("#composer .send-button").click()
    await expect(second.locator("#composer-error")).to_have_text(NO_REPLIES_HERE)
    await expect(box).to_have_value("kept for later")
    assert posts == []
    await check_looks(second, tmp_path / f"too-many-{viewport['width']}-{scheme}.png")
    # What the line says of a message no longer in the box goes with it
    await box.fill("")
    await expect(second.locator("#composer-error")).to_be_hidden()
    await box.fill("kept for later")
    # The first tab is unaffected; once it is closed, the second connects as its Send is
    # pressed again (no reload; it was in view all along), and sends.
    await expect(page.locator("#connection-status")).to_have_text("")
    await page.close()
    for _ in range(20):  # the server hears of the closed tab's socket a moment later
        opened = await second.evaluate("window.opened")
        before = len(await second.evaluate("window.closes"))
        await second.locator("#composer .send-button").click()  # refused, and tries again
        await second.wait_for_function(f"() => window.opened > {opened}")
        await second.wait_for_timeout(500)  # a refusal comes right after the opening
        if 4429 not in (await second.evaluate("window.closes"))[before:]:
            break
    await expect(second.locator("#connection-status")).to_have_text("")
    await expect(second.locator("#composer-error")).to_be_hidden()
    await second.locator("#composer .send-button").click()
    await expect(box).to_have_value("")
    await expect(second.locator("#messages article.assistant")).to_have_count(1)
    await expect(second.locator("#messages article.assistant")).to_have_attribute(
        "data-status", "complete", timeout=20_000
    )
    assert watch.console_errors == [] and watch.csp_violations == []
