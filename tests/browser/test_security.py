"""A hostile model reply runs no script and makes the browser call no other host, while it
streams and after it is rendered as markdown."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser.support import BROWSER_MARKS, ChatPage, Gate, eventually
from tests.fake_upstream import reply_events

pytestmark = BROWSER_MARKS

PAYLOADS = [
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=2">',
    "[x](javascript:window.__pwned=3)",
    "![t](http://evil.example/pixel.png)",
    "![t](//evil.example/p2.png)",
]
# Split inside the payloads, as a model's tokens would be.
TOKENS = [
    "Look: <scr",
    "ipt>window.__pwned=1</sc",
    "ript> and <img src=x one",
    'rror="window.__pwned=2">',
]
TOKENS += ["\n\n[x](java", "script:window.__pwned=3) then ![t](http://evil", ".example/pixel.png)"]
TOKENS += [" and ![t](//evil.example/p2.png) end.", "\n\nThe end."]
TEXT = "".join(TOKENS)

# Anything in the reply's text (not the app's own buttons) that could run script or fetch.
ACTIVE_ELEMENTS_JS = """
(id) => {
  const article = document.getElementById("m" + id);
  const found = [];
  for (const el of article.querySelectorAll(".content *, .reasoning-text *, .tool-calls *")) {
    const tag = el.tagName.toLowerCase();
    if (["script", "iframe", "object", "embed", "link", "style", "form"].includes(tag)) {
      found.push(tag);
    }
    for (const attr of el.attributes) {
      const value = attr.value.trim().toLowerCase();
      if (attr.name.startsWith("on") || value.startsWith("javascript:")) {
        found.push(tag + "[" + attr.name + "=" + attr.value + "]");
      }
      // (a link to another host's image, opened only if the reader follows it, and without
      // this page as its referrer or opener, is no call)
      const rel = (el.getAttribute("rel") || "").split(/\\s+/);
      const imageLink = tag === "a" && attr.name === "href" && el.classList.contains("image-link")
        && /^https?:\\/\\//.test(value) && rel.includes("noopener") && rel.includes("noreferrer");
      if (["src", "href", "srcset", "action", "formaction", "poster"].includes(attr.name) &&
          !value.startsWith("/") && !value.startsWith("#") && !imageLink) {
        found.push(tag + "[" + attr.name + "=" + attr.value + "]");
      }
    }
  }
  return found;
}
"""


async def _settled(chat: ChatPage, reply_id: int, text: str) -> bool:
    state = await chat.state(reply_id)
    return text in state["blocks"] and state["tail"] == "The end."


async def test_a_hostile_reply_runs_no_script_and_calls_no_other_host(
    page, watch, server, fake_upstream
):
    for payload in PAYLOADS:
        assert payload in TEXT
    gate = Gate(fake_upstream)
    pieces = reply_events(TOKENS)

    async def plan(request):
        # Hold the stream before its finish chunk, to look at the page while it streams.
        return await request.stream(pieces, delay=0.02, before_piece=gate.before(len(TOKENS) + 1))

    fake_upstream.plan = plan
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("Say something nasty")
    reply = chat.reply(reply_id)

    # While streaming: settled blocks are rendered and cleaned (the HTML escaped, another
    # host's images links to them, no link to javascript:), and the open tail is shown as text.
    await eventually(
        lambda: _settled(chat, reply_id, "then"),
        message="the paragraph with the links did not settle while streaming",
    )
    live = await chat.state(reply_id)
    assert live["tail"] == "The end."
    assert "Look: <script>window.__pwned=1</script>" in live["blocks"]
    assert await page.evaluate(ACTIVE_ELEMENTS_JS, reply_id) == []
    await expect(reply.locator("script, img")).to_have_count(0)
    await expect(reply.locator("a[href]")).to_have_count(2)  # (the images', to them)
    await expect(reply.locator("a.image-link[href]")).to_have_count(2)
    assert await page.evaluate("() => window.__pwned") is None

    # Finished: rendered as markdown, the HTML still escaped, the images links to them.
    gate.open()
    await chat.wait_finished(reply_id)
    content = reply.locator(".content.markdown")
    await expect(content).to_contain_text("Look: <script>window.__pwned=1</script> and <img")
    await expect(content).to_contain_text('onerror="window.__pwned=2">')
    await expect(content).to_contain_text("[x](javascript:window.__pwned=3)")
    assert await page.evaluate(ACTIVE_ELEMENTS_JS, reply_id) == []
    await expect(content.locator("img")).to_have_count(0)
    await expect(content.locator("a[href]")).to_have_count(2)
    await expect(content.locator("a.image-link")).to_have_text(["t", "t"])

    # Clicking the would-be link does nothing.
    url = page.url
    await content.get_by_text("javascript:window.__pwned=3", exact=False).click()
    assert page.url == url
    assert await page.evaluate("() => window.__pwned") is None
    assert watch.dialogs == []
    # Every request went to the app's own origin: no pixel, no relative `x` image.
    assert watch.foreign_requests(server.url) == []
    assert not [u for u in watch.requests if "evil" in u or u.endswith("/x")]
    assert watch.csp_violations == []  # nothing even tried


async def test_a_text_box_the_user_resized_does_not_make_a_later_swap_break_the_csp(
    page, watch, server
):
    chat = ChatPage(page, server)
    await chat.new_conversation()
    await page.locator(".prompt-menu summary").click()
    prompt = page.get_by_label("System prompt")
    box = await prompt.bounding_box()
    assert box is not None
    # Drag the box's resize corner, as a user would: the browser sets its height inline.
    await page.mouse.move(box["x"] + box["width"] - 3, box["y"] + box["height"] - 3)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] - 3, box["y"] + box["height"] + 60, steps=5)
    await page.mouse.up()
    assert "height" in (await prompt.get_attribute("style") or "")

    await prompt.fill("Be brief.")
    await page.get_by_role("button", name="Save system prompt").click()
    await expect(page.get_by_text("Saved.")).to_be_visible()
    assert watch.csp_violations == []
