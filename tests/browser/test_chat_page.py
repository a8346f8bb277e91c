"""The chat page in a real browser: sending, streaming, the finished markdown, the composer."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from playwright.async_api import expect

from chat.models import Message
from tests.browser.support import BROWSER_MARKS, ChatPage, eventually, streamed

ROOT = Path(__file__).resolve().parents[2]

pytestmark = BROWSER_MARKS

# A paragraph, a list and a python code block, a word or so per token.
REPLY_TOKENS = [
    "Here",
    " is",
    " a",
    " **short**",
    " answer.",
    "\n\n",
    "- first",
    " item\n",
    "- second",
    " item\n",
    "\n```python\n",
    "def ",
    "greet(name):\n",
    "    return ",
    'f"Hello, {name}!"\n',
    "```\n",
    "\nDone",
    ".",
]
REPLY_TEXT = "".join(REPLY_TOKENS)


async def test_a_sent_message_streams_a_reply_that_becomes_highlighted_markdown(
    page, server, fake_upstream
):
    fake_upstream.plan = streamed(REPLY_TOKENS, delay=0.04)
    chat = ChatPage(page, server)
    await chat.new_conversation()

    await chat.composer.fill("Show me some code")
    await chat.composer.press("Enter")

    user = page.locator("#messages article.user")
    await expect(user).to_have_count(1)
    await expect(user.locator(".content")).to_have_text("Show me some code")
    await expect(chat.composer).to_have_value("")
    reply = page.locator("#messages article.assistant")
    await expect(reply).to_have_count(1)
    reply_id = int((await reply.get_attribute("id") or "")[1:])

    samples = await chat.sample_states(reply_id)
    lengths = sorted({len(s["streaming"]) for s in samples if s["streaming"]})
    assert len(lengths) >= 3, f"the reply did not grow visibly: {lengths}"
    await chat.wait_finished(reply_id)
    # Rendered blocks only ever grow, and are what the finished reply shows (a list's items
    # go in before its end, which is white space); the open tail is the text that followed
    # them
    final = (await chat.state(reply_id))["text"]
    assert all(final.startswith(s["blocks"].rstrip()) for s in samples), "a block changed"
    # (its closed marks formatted; or, for the code block still streaming, its language
    # label and its code so far).
    formatted = REPLY_TEXT.replace("**short**", "short")
    assert all(
        s["tail"] in REPLY_TEXT or s["tail"] in formatted or s["tail"].startswith("python")
        for s in samples
    )

    content = chat.reply(reply_id).locator(".content.markdown")
    await expect(content.locator("p").first).to_have_text("Here is a short answer.")
    await expect(content.locator("p strong")).to_have_text("short")
    await expect(content.locator("ul > li")).to_have_text(["first item", "second item"])
    code = content.locator("pre code.language-python")
    await expect(code).to_contain_text('return f"Hello, {name}!"')
    # Pygments spans: `def` is a keyword, `greet` a function name, the f-string a string.
    await expect(code.locator("span.k", has_text="def")).to_have_count(1)
    await expect(code.locator("span.nf", has_text="greet")).to_have_count(1)
    assert await code.locator("span").count() >= 5
    # No live-text element or Stop button is left behind.
    await expect(page.locator(f"#t{reply_id}")).to_have_count(0)
    await expect(chat.reply(reply_id).locator(".stop-button")).to_have_count(0)
    saved = await Message.objects.aget(pk=reply_id)
    assert (saved.status, saved.content) == ("complete", REPLY_TEXT)

    # Copy puts the reply on the clipboard as its markdown (plain text: "**short**" and the
    # fence as the model wrote them) and as the HTML shown, without the code block's label
    # and button, for pasting formatted (it copied the text shown, marks and fences lost);
    # Copy code takes the code alone. (The label and the button were copied with the reply.)
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    button = chat.reply(reply_id).locator(".copy-button")
    await button.click()
    await expect(button).to_have_attribute("aria-label", "Copied")
    copied = await page.evaluate(READ_CLIPBOARD)
    assert copied["text/plain"] == REPLY_TEXT, copied
    html = copied["text/html"]
    assert "<strong>short</strong>" in html and "<li>second item</li>" in html, html
    assert '<span class="nf">greet</span>' in html, html
    assert "code-lang" not in html and "Copy code" not in html, html
    await content.get_by_role("button", name="Copy code").click()
    assert (
        await page.evaluate("navigator.clipboard.readText()")
        == 'def greet(name):\n    return f"Hello, {name}!"\n'
    )
    await expect(content.locator(".code-lang")).to_be_visible()  # shown again

    # Where the markdown cannot be had (the session ended meanwhile), the text shown.
    await page.context.clear_cookies()
    await expect(button).to_have_attribute("aria-label", "Copy")
    await button.click()
    await expect(button).to_have_attribute("aria-label", "Copied")
    copied = await page.evaluate(READ_CLIPBOARD)
    assert copied["text/plain"].startswith("Here is a short answer."), copied
    assert copied["text/plain"].endswith("Done.") and "**" not in copied["text/plain"], copied


# Each type on the clipboard, and its text.
READ_CLIPBOARD = """async () => {
    const found = {};
    for (const item of await navigator.clipboard.read()) {
        for (const type of item.types) { found[type] = await (await item.getType(type)).text(); }
    }
    return found;
}"""


async def test_shift_enter_adds_a_new_line_and_does_not_send(page, watch, server, fake_upstream):
    chat = ChatPage(page, server)
    await chat.new_conversation()

    await chat.composer.click()
    await page.keyboard.type("line one")
    await page.keyboard.press("Shift+Enter")
    await page.keyboard.type("line two")

    await expect(chat.composer).to_have_value("line one\nline two")
    await expect(page.locator("#messages article")).to_have_count(0)
    # Now Enter sends: exactly one message, holding both lines (a send on Shift+Enter would
    # have made a first message with "line one" alone).
    await page.keyboard.press("Enter")
    await expect(page.locator("#messages article.user")).to_have_count(1)
    sent = page.locator("#messages article.user .content")
    assert await sent.inner_text() == "line one\nline two"
    await expect(sent.locator("br")).to_have_count(1)
    await expect(chat.composer).to_have_value("")
    message_posts = [u for u in watch.posts if u.endswith("/messages/")]
    assert len(message_posts) == 1, message_posts
    saved = [m async for m in Message.objects.filter(role="user")]
    assert [m.content.replace("\r\n", "\n") for m in saved] == ["line one\nline two"]


@pytest.mark.parametrize(("viewport", "touch"), [({"width": 390, "height": 844}, True)])
async def test_on_a_touch_screen_enter_adds_a_new_line_and_send_sends(
    page, watch, server, fake_upstream
):
    """A phone's keyboard has no Shift+Enter: Enter starts a new line there, and the Send
    button sends (Enter sent, so a message of several lines could only be pasted). So does
    Ctrl+Enter, from a keyboard attached; on the start page too."""
    fake_upstream.plan = streamed(["Two ", "lines read."], delay=0.01)
    chat = ChatPage(page, server)
    await page.goto(server.url + "/")
    await chat.composer.tap()
    await page.keyboard.type("first line")
    await page.keyboard.press("Enter")
    await page.keyboard.type("second line")
    await expect(chat.composer).to_have_value("first line\nsecond line")
    assert page.url == server.url + "/"
    await page.locator("#composer .send-button").tap()
    await page.wait_for_url(re.compile(r"/c/[0-9a-f-]{36}/$"))
    sent = page.locator("#messages article.user .content")
    await expect(sent).to_have_count(1)
    assert await sent.inner_text() == "first line\nsecond line"
    reply = page.locator("#messages article.assistant")
    await chat.wait_finished(int((await reply.last.get_attribute("id") or "")[1:]))

    await chat.composer.tap()
    await page.keyboard.type("a third")
    await page.keyboard.press("Enter")
    await expect(chat.composer).to_have_value("a third\n")
    await page.keyboard.type("and a fourth")
    await page.keyboard.press("Control+Enter")
    await expect(page.locator("#messages article.user")).to_have_count(2)
    assert await sent.last.inner_text() == "a third\nand a fourth"
    message_posts = [u for u in watch.posts if u.endswith("/messages/")]
    assert len(message_posts) == 1, message_posts


async def test_a_normal_exchange_has_no_csp_violation_or_js_error(
    page, watch, server, fake_upstream
):
    fake_upstream.plan = streamed(REPLY_TOKENS, delay=0.01)
    response = await page.goto(server.url + "/")
    assert response is not None
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "img-src 'self' data:" in csp, csp
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("hello")
    await chat.wait_finished(reply_id)
    await page.reload()
    await expect(chat.reply(reply_id).locator("pre code.language-python")).to_be_visible()
    await chat.wait_for_socket()

    assert watch.page_errors == []
    assert watch.csp_violations == []
    assert watch.unexpected_console_errors() == []
    # The watch is live: an inline script injected now is refused by the CSP and reported.
    await page.evaluate(
        """() => { const s = document.createElement("script");
                   s.textContent = "window.__inline = 1"; document.body.append(s); }"""
    )
    await eventually(lambda: watch.csp_violations, message="CSP violation not reported")
    assert await page.evaluate("window.__inline") is None
    watch.csp_violations.clear()
    watch.console_errors.clear()


async def test_frames_that_outrun_the_reply_element_log_no_error_and_clear_the_wait_note(
    page, watch, server, fake_upstream
):
    fake_upstream.plan = streamed([f"w{i:02d} " for i in range(40)], delay=0.03)
    first_delta = asyncio.Event()

    def on_socket(ws):
        ws.on(
            "framereceived",
            lambda payload: 'hx-swap-oob="beforeend"' in str(payload) and first_delta.set(),
        )

    page.on("websocket", on_socket)
    chat = ChatPage(page, server)
    await chat.new_conversation()

    async def hold_until_streaming(route):
        # Deterministic version of a race seen in ~40% of normal sends: the socket delivers
        # the first frames of the reply before the POST response that adds its element.
        response = await route.fetch()
        await asyncio.wait_for(first_delta.wait(), 10)
        await route.fulfill(response=response)

    await page.route("**/messages/", hold_until_streaming)
    reply_id = await chat.send("hello")
    await chat.wait_for_text(reply_id, 20)

    assert await page.locator(f"#s{reply_id}").text_content() == ""
    oob_errors = [e for e in watch.console_errors if "oobErrorNoTarget" in e]
    assert oob_errors == []
    await chat.wait_finished(reply_id)


async def test_the_page_loads_no_missing_resource(page, watch, server):
    failed: list[str] = []
    page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
    chat = ChatPage(page, server)
    await chat.new_conversation()
    await page.wait_for_load_state("networkidle")
    assert failed == []
    assert watch.unexpected_console_errors(tolerate_known=False) == []


DEMO_QUESTION = "Can you explain how the streaming works?"


async def test_the_demo_model_answers_and_titles_the_conversation_live(page, server_factory):
    """Its screenshot goes to test-artifacts/ (the README's are made by scripts/screenshots)."""
    server = server_factory(
        OPENAI_BASE_URL="",
        OPENAI_API_KEY="",
        CHAT_MODEL="",
        CHAT_DEMO_MIN_TPS="400",
        CHAT_DEMO_MAX_TPS="500",
        CHAT_GENERATE_TITLES="true",
    )
    chat = ChatPage(page, server)
    await chat.new_conversation()
    await expect(page.locator(".demo-notice")).to_be_visible()
    await expect(page.locator("#settings-model")).to_have_value("demo")
    reply_id = await chat.send(DEMO_QUESTION)
    await chat.wait_finished(reply_id)
    content = chat.reply(reply_id).locator(".content.markdown")
    await expect(content).to_contain_text(f"You asked about: {DEMO_QUESTION}")
    await expect(content.locator("ol > li")).to_have_count(4)
    await expect(content.locator("h2")).to_have_text("The demo model")
    await expect(content.locator("table tbody tr")).to_have_count(4)
    await expect(content.locator("pre code.language-python span.k").first).to_have_text("def")
    # The model-written title replaces "New conversation" in the header and the sidebar,
    # over the socket, without a reload.
    title = "Explain how the streaming works"
    await expect(page.locator("#conversation-title")).to_have_text(title)
    await expect(page.locator(".conversation-list a[aria-current=page]")).to_have_text(title)

    # Show the question and the start of the answer, with the pointer out of the way.
    await page.mouse.move(0, 0)
    await page.locator("#composer-text").blur()
    await page.locator("#messages").evaluate("el => { el.scrollTop = 0; }")
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "screenshot-chat.png"
    await page.screenshot(path=str(shot), animations="disabled", caret="hide")


async def test_stop_takes_the_send_buttons_place_while_a_reply_streams(page, server, fake_upstream):
    fake_upstream.plan = streamed([f"w{i} " for i in range(40)], delay=0.04)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    composer = page.locator("#composer")
    send = composer.get_by_role("button", name="Send")
    stop = composer.get_by_role("button", name="Stop")
    await expect(send).to_be_visible()
    await expect(stop).to_have_count(0)
    send_box = await send.bounding_box()

    reply_id = await chat.send("count")
    await expect(stop).to_be_visible()
    await expect(send).to_have_count(0)
    stop_box = await stop.bounding_box()
    assert send_box and stop_box
    assert abs(stop_box["x"] - send_box["x"]) <= 1 and abs(stop_box["y"] - send_box["y"]) <= 1
    await chat.wait_for_text(reply_id, 10)
    await stop.click()
    await chat.wait_finished(reply_id, status="cancelled")
    await expect(send).to_be_visible()
    await expect(stop).to_have_count(0)


async def test_send_with_only_spaces_says_so_under_the_box_with_debug_on(
    page, server_factory, watch
):
    """With DEBUG on (`./scripts/run`), django-htmx's debug script put an htmx request's 400,
    403, 404 or 500 answer in place of the whole page: the page does without it (its
    refusals are its own to show), and a form's errors come as 422, shown under the message
    box, as with DEBUG off."""
    server = server_factory(DJANGO_DEBUG="true")
    chat = ChatPage(page, server)
    await chat.new_conversation()
    await expect(page.locator('script[src*="django-htmx.js"]')).to_have_count(0)
    await expect(page.locator('script[src*="htmx-2"]')).to_have_count(1)
    await chat.composer.fill("   ")
    await page.locator("#composer").get_by_role("button", name="Send").click()
    await expect(page.locator("#composer-error")).to_have_text("Type a message first.")
    await expect(chat.composer).to_be_visible()
    assert await Message.objects.acount() == 0
    watch.console_errors.clear()  # the browser logs the 422


async def test_what_is_typed_survives_a_reload_until_it_is_sent(page, server, fake_upstream):
    """A reload (or a browser that drops the page) lost a message half typed."""
    fake_upstream.plan = streamed(["Noted."])
    await page.goto(server.url + "/")
    await page.locator("#composer-text").press_sequentially("the first question")
    await page.reload()
    await expect(page.locator("#composer-text")).to_have_value("the first question")
    await page.locator("#composer-text").press("Enter")
    await page.wait_for_url("**/c/*/")
    chat = ChatPage(page, server)
    reply = chat.reply(int((await page.locator("article.assistant").get_attribute("id"))[1:]))
    await expect(reply).to_have_attribute("data-status", "complete")
    await page.goto(server.url + "/")  # sent: the start page's box is empty again
    await expect(page.locator("#composer-text")).to_have_value("")
    await page.go_back()
    await page.locator("#composer-text").press_sequentially("half a thought")
    await page.reload()
    await expect(page.locator("#composer-text")).to_have_value("half a thought")
    await page.locator("#composer-text").fill("")
    await page.locator("#composer-text").press_sequentially("a whole one")
    await page.locator("#composer-text").press("Enter")
    await expect(page.locator("article.user")).to_have_count(2)
    await expect(page.locator("#composer-text")).to_have_value("")
    await page.reload()
    await expect(page.locator("#composer-text")).to_have_value("")


async def test_signing_out_drops_the_tabs_drafts(page, server):
    """A draft kept for a reload must not wait in the tab for whoever signs in next."""
    await page.goto(server.url + "/")
    await page.locator("#composer-text").press_sequentially("a private thought")
    drafts = "() => Object.keys(sessionStorage).filter((k) => k.startsWith('chat-draft:'))"
    assert len(await page.evaluate(drafts)) == 1
    await page.get_by_role("button", name="Log out").click()
    await page.wait_for_url("**/login/**")
    assert await page.evaluate(drafts) == []
