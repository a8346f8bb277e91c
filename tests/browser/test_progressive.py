"""Progressive rendering in a real browser: headings, lists, tables and code take their shape
while the reply streams, nothing moves or repeats when it finishes, and a reload mid-stream
shows the same blocks once."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from playwright.async_api import Locator, expect

from chat.fragments import CONTENT, tail_html
from chat.markdown import render_markdown
from chat.progressive import ProgressiveRenderer
from tests.browser.pages import SCHEMES, SIZES, check_looks
from tests.browser.support import (
    BROWSER_MARKS,
    ChatPage,
    Gate,
    another_tab,
    eventually,
    gated_stream,
    held_stream,
    streamed,
)
from tests.fake_upstream import reply_events

pytestmark = BROWSER_MARKS

REPLY = """\
## Plan

Here is **the plan**, step by step:

- read the *question*
- think
  - carefully
- answer

| step | time |
|---|---|
| read | 1 s |
| think | 2 s |

```python
def answer() -> int:
    return 42
```

And a last paragraph that is still being written"""
# Word-sized tokens; the stream is held before the last one.
TOKENS = re.findall(r"\s*\S+|\s+", REPLY)

# The reply's HTML as the page has it, without what scripts add (copy buttons).
REPLY_HTML_JS = """
(id) => {
  const reply = document.getElementById("m" + id).cloneNode(true);
  reply.querySelectorAll(".code-copy").forEach((b) => b.remove());
  return reply.outerHTML;
}
"""


def layout_html(html: str) -> str:
    """HTML without the white space between tags, which the page does not show."""
    return re.sub(r">\s+<", "><", html).strip()


async def assert_settled_as_rendered(page: Any, reply_id: int, reply: str, watch: Any) -> None:
    """The settled reply is the one-shot render of its text, nothing drawn twice, and the
    page logged no error."""
    live = await page.evaluate(REPLY_HTML_JS, reply_id)
    assert render_markdown(reply) in live  # the one-shot render, nothing twice
    assert watch.console_errors == [] and watch.csp_violations == []


def near(now: Any, was: Any) -> bool:
    """A box (or a word's start: [x, y]) stands where it stood, within half a pixel."""
    if isinstance(now, dict):
        now, was = (now["x"], now["y"]), (was["x"], was["y"])
    return abs(now[0] - was[0]) <= 0.5 and abs(now[1] - was[1]) <= 0.5


async def assert_a_reload_draws_it_the_same(chat: ChatPage, tail: Locator) -> None:
    """The reply's tail, drawn from a snapshot after a reload, is drawn as its frames drew it."""
    drawn = layout_html(await tail.inner_html())
    await chat.page.reload()
    await chat.wait_for_socket()
    assert layout_html(await tail.inner_html()) == drawn


def gated_plan(fake_upstream, gate: Gate, delay: float):
    pieces = reply_events(TOKENS)

    async def plan(request):
        # Piece 0 is the role chunk; hold the stream before the last token's piece.
        return await request.stream(pieces, delay=delay, before_piece=gate.before(len(TOKENS)))

    return plan


async def blocks_are_formatted(chat: ChatPage, reply_id: int) -> None:
    content = chat.page.locator(f"#c{reply_id}")
    await expect(content.locator("h2")).to_have_text("Plan")
    await expect(content.locator("p strong")).to_have_text("the plan")
    await expect(content.locator(":scope > ul > li")).to_have_count(3)
    await expect(content.locator("ul ul > li")).to_have_text("carefully")
    await expect(content.locator("table td")).to_have_count(4)
    code = content.locator(".code-block pre code.language-python")
    await expect(code.locator("span.k", has_text="def")).to_have_count(1)
    await expect(content.locator(".code-lang")).to_have_text("python")
    # The open paragraph is the tail, as text.
    await expect(chat.page.locator(f"#t{reply_id}")).to_have_text(
        re.compile(r"^And a last paragraph that is still being")
    )


async def box_in_reply(chat: ChatPage, reply_id: int, element: Locator) -> dict[str, float]:
    """Where an element stands inside its reply (the page may scroll meanwhile). Measured
    again if the reply was drawn anew between the two measures (a socket that reconnected
    on a busy machine draws a finished reply whole again: an element measured in the reply
    drawn before has no box)."""

    async def boxes() -> tuple[Any, Any] | None:
        box = await element.bounding_box()
        reply = await chat.reply(reply_id).bounding_box()
        return (box, reply) if box and reply else None

    box, reply = await eventually(boxes, message="the element or its reply has no box")
    return {**box, "x": box["x"] - reply["x"], "y": box["y"] - reply["y"]}


FIRST_LINE_JS = "(e) => { const r = e.getClientRects()[0]; return [r.left, r.top]; }"


async def start_in_reply(chat: ChatPage, reply_id: int, element: Locator) -> tuple[float, float]:
    """Where an inline element starts inside its reply: its first line's box (it may wrap)."""
    left, top = await element.evaluate(FIRST_LINE_JS)
    reply = await chat.reply(reply_id).bounding_box()
    assert reply
    return left - reply["x"], top - reply["y"]


async def offset_in_reply(chat: ChatPage, reply_id: int, selector: str) -> dict[str, float]:
    """Where an element stands inside its reply (the page may scroll meanwhile)."""
    box = await chat.page.locator(f"#c{reply_id} {selector}").bounding_box()
    reply = await chat.reply(reply_id).bounding_box()
    assert box and reply
    return {"x": box["x"] - reply["x"], "y": box["y"] - reply["y"], "width": box["width"]}


async def test_blocks_are_formatted_while_the_reply_streams_and_nothing_moves_at_the_end(
    page, server, fake_upstream, watch
):
    gate = Gate(fake_upstream)
    fake_upstream.plan = gated_plan(fake_upstream, gate, delay=0.02)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("What is the plan?")

    # Before the upstream sends its last token, every finished block is on the page, formatted,
    # and the code block is highlighted with a working copy button.
    await blocks_are_formatted(chat, reply_id)
    assert (await chat.state(reply_id))["status"] in ("pending", "streaming")
    copy = page.locator(f"#c{reply_id} .code-copy")
    await expect(copy).to_have_count(1)
    box_before = await offset_in_reply(chat, reply_id, "table")

    gate.open()
    await chat.wait_finished(reply_id)
    await expect(page.locator(f"#t{reply_id}")).to_have_count(0)
    # What was on screen stayed where it was; the last paragraph joined it.
    assert await offset_in_reply(chat, reply_id, "table") == box_before
    await expect(page.locator(f"#c{reply_id} > p").last).to_have_text(
        "And a last paragraph that is still being written"
    )
    live = await page.evaluate(REPLY_HTML_JS, reply_id)
    assert render_markdown(REPLY) in live  # the one-shot render, not a look-alike

    # A fresh load of the page shows exactly the same reply.
    await page.reload()
    await chat.wait_for_socket()
    await expect(page.locator(f"#m{reply_id} .code-copy")).to_have_count(1)
    assert layout_html(await page.evaluate(REPLY_HTML_JS, reply_id)) == layout_html(live)
    assert watch.console_errors == []


async def test_a_reload_mid_stream_shows_the_same_blocks_once_then_continues(
    page, server, fake_upstream
):
    gate = Gate(fake_upstream)
    fake_upstream.plan = gated_plan(fake_upstream, gate, delay=0.02)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("What is the plan?")
    await blocks_are_formatted(chat, reply_id)

    await page.reload()
    await chat.wait_for_socket()
    await blocks_are_formatted(chat, reply_id)
    await expect(page.locator(f"#c{reply_id} h2")).to_have_count(1)
    await expect(page.locator(f"#c{reply_id} table")).to_have_count(1)
    await expect(page.locator(f"#c{reply_id} pre")).to_have_count(1)

    gate.open()
    await chat.wait_finished(reply_id)
    content = page.locator(f"#c{reply_id}")
    await expect(content.locator("h2")).to_have_count(1)
    await expect(content.locator(":scope > ul > li")).to_have_count(3)
    await expect(content.locator("pre")).to_have_count(1)
    text = await content.inner_text()
    assert text.count("And a last paragraph") == 1


async def test_a_code_block_shows_as_code_from_its_first_line(page, server, fake_upstream):
    tokens = ["Code:\n\n", "```js\n", "const a", " = 1;\n", "const b = 2;\n", "```\n", "\nDone."]
    gate = Gate(fake_upstream)
    pieces = reply_events(tokens)

    async def plan(request):
        return await request.stream(
            pieces, delay=0.02, before_piece=gate.before(6)
        )  # hold the closing fence

    fake_upstream.plan = plan
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("Some code")
    streaming_code = page.locator(f"#t{reply_id} pre.streaming-code code")
    await expect(streaming_code).to_contain_text("const a = 1;")
    await expect(page.locator(f"#t{reply_id} .code-lang")).to_have_text("js")

    async def tail_has_both_lines() -> bool:
        return "const b = 2;" in (await streaming_code.text_content() or "")

    await eventually(tail_has_both_lines, message="the second code line was not appended")
    gate.open()
    await chat.wait_finished(reply_id)
    code = page.locator(f"#c{reply_id} pre code.language-js")
    await expect(code).to_have_text("const a = 1;\nconst b = 2;\n")
    await expect(code.locator("span.kd").first).to_have_text("const")


def cut_then_continued(gate: Gate, before: list[str]):
    """The first reply is `before`, then "Some **bold** words and", cut at the token limit; its
    continuation says " then", waits at the gate, then " more."."""

    async def plan(request):
        if request.index == 0:
            cut = [*before, "Some **bold**", " words and"]
            return await request.stream(reply_events(cut, finish_reason="length"))
        return await request.stream(
            reply_events([" then", " more."]), delay=0.05, before_piece=gate.before(2)
        )

    return plan


async def test_continue_keeps_the_block_the_reply_was_cut_at_formatted(
    page, server, fake_upstream, watch
):
    """A reply cut at the token limit in the middle of a paragraph: on Continue, that
    paragraph went back to plain text (its markers showing) until it settled again. It now
    stays formatted, the new text streams in after it, and the reply ends as one render of
    the whole text."""
    cut = "First paragraph.\n\nSome **bold** words and"
    rest = [" then", " some", " more", " words", ".\n\nA second", " paragraph", "."]
    gate = Gate(fake_upstream)

    async def plan(request):
        if request.index == 0:
            return await request.stream(reply_events([cut], finish_reason="length"))
        pieces = reply_events(rest)
        return await request.stream(pieces, delay=0.05, before_piece=gate.before(2))

    fake_upstream.plan = plan
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("Write two paragraphs")
    await chat.wait_finished(reply_id)
    reply = chat.reply(reply_id)
    await expect(reply.locator("p strong")).to_have_text("bold")

    await reply.get_by_role("button", name="Continue").click()
    tail = page.locator(f"#t{reply_id}")
    await expect(tail.locator("strong")).to_have_text("bold")
    await expect(tail).to_contain_text("then")  # its first word, then it waits at the gate
    await expect(tail.locator("strong")).to_have_text("bold")
    assert "**" not in await tail.text_content()
    gate.open()
    await chat.wait_finished(reply_id)
    whole = cut + "".join(rest)
    live = await page.evaluate(REPLY_HTML_JS, reply_id)
    assert render_markdown(whole) in live
    assert watch.console_errors == []


async def test_a_continue_sent_from_one_tab_streams_in_the_other(
    page, context, server, fake_upstream, watch
):
    """The other tab showed the reply finished: its frames had no open tail to go to, so it
    showed the reply without the paragraph it was cut at, still offering Continue, until the
    end. It now draws the reply streaming as the continuation starts."""
    gate = Gate(fake_upstream)
    fake_upstream.plan = cut_then_continued(gate, ["Intro.\n\n"])
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("Write something")
    await chat.wait_finished(reply_id)
    other = await another_tab(context)
    other_errors: list[str] = []
    other.on("console", lambda m: m.type == "error" and other_errors.append(m.text))
    other_chat = ChatPage(other, server)
    await other.goto(page.url)
    await other_chat.wait_for_socket()

    await chat.reply(reply_id).get_by_role("button", name="Continue").click()
    for tab in (page, other):
        tail = tab.locator(f"#t{reply_id}")
        await expect(tail.locator("strong")).to_have_text("bold")
        await expect(tail).to_contain_text("then")
        await expect(
            tab.locator(f"#m{reply_id}").get_by_role("button", name="Continue")
        ).to_have_count(0)
    gate.open()
    await chat.wait_finished(reply_id)
    await other_chat.wait_finished(reply_id)
    expected = render_markdown("Intro.\n\nSome **bold** words and then more.")
    for tab in (page, other):
        assert expected in await tab.evaluate(REPLY_HTML_JS, reply_id)
    assert watch.console_errors == [] and other_errors == []


async def test_a_reply_too_large_for_a_frame_continues_with_a_slow_answer(
    page, server_factory, fake_upstream, watch
):
    """Drawn whole for the tabs as its continuation starts, a reply too large for a frame went
    as a fetch over HTTP, which took the place of the Continue button while its answer was on
    its way: htmx then dropped that answer (`htmx:targetError`). Such a reply starts as before."""
    server = server_factory(CHAT_MAX_REPLY_CHARS="4000000")
    gate = Gate(fake_upstream)
    many = "".join(
        f"Paragraph {i}: the quick brown fox, **again** and again.\n\n" for i in range(8000)
    )
    fake_upstream.plan = cut_then_continued(gate, [many])
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("Write a lot")
    await expect(chat.reply(reply_id)).to_have_attribute("data-status", "complete", timeout=60_000)

    async def slow(route):
        response = await route.fetch()
        await asyncio.sleep(3)  # the answer comes after the continuation has started
        await route.fulfill(response=response)

    await page.route(re.compile(r".*/continue/$"), slow)
    await chat.reply(reply_id).get_by_role("button", name="Continue").click()
    await expect(page.locator(f"#t{reply_id}")).to_contain_text("then", timeout=30_000)
    gate.open()
    await expect(chat.reply(reply_id)).to_have_attribute("data-status", "complete", timeout=60_000)
    await expect(chat.reply(reply_id).locator(".content > p").last).to_have_text(
        "Some bold words and then more."
    )
    assert watch.console_errors == []


STEPS_REPLY = """\
Three steps:

1. Install **chatsite** with `pip`
2. Run it:
   ```python
   print("hi")
   ```
3. Log in as *demo*, then
4. Ask it something

Then a list that a blank line makes loose:

- first
- second

- third
- fourth and last"""
STEPS_TOKENS = re.findall(r"\s*\S+|\s+", STEPS_REPLY)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_list_takes_shape_item_by_item_while_the_reply_streams(
    page, server, fake_upstream, watch, viewport, scheme, tmp_path
):
    """A list was one block: a numbered answer showed as raw text ("1. Install **chatsite**")
    until the whole list ended, then jumped into shape. Each item now takes its shape as
    the next one begins, and what is drawn stays where it is."""
    await page.set_viewport_size(viewport)
    await page.emulate_media(color_scheme=scheme)
    third = STEPS_TOKENS.index(" Log") + 2  # a piece per token, after the role's
    in_third_step, in_last_item = gated_stream(
        fake_upstream, STEPS_TOKENS, [third, len(STEPS_TOKENS)], delay=0.02
    )
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("How do I start?")
    content, tail = page.locator(f"#c{reply_id}"), page.locator(f"#t{reply_id}")

    # The third step has begun: the two before it are list items, formatted, the code in the
    # second highlighted with its copy button; the third is the tail, as the list's next item
    # (its text as written), where it will settle.
    tail_step = tail.locator("ol.tail-item[start='3'] > li")
    await expect(tail_step).to_have_text("Log")
    steps = content.locator(":scope > ol > li")
    await expect(steps).to_have_count(2)
    await expect(steps.nth(0).locator("strong")).to_have_text("chatsite")
    await expect(steps.nth(0).locator("code")).to_have_text("pip")
    code = steps.nth(1).locator(".code-block pre code.language-python")
    await expect(code.locator("span.nb")).to_have_text("print")
    await expect(steps.nth(1).locator(".code-copy")).to_have_count(1)
    assert "**" not in await content.inner_text()
    first_step = await offset_in_reply(chat, reply_id, "ol > li:first-child")
    second_step = await box_in_reply(chat, reply_id, steps.nth(1))
    third_step = await box_in_reply(chat, reply_id, tail_step)
    assert third_step["x"] == second_step["x"]  # in line with the items, below them
    assert third_step["y"] >= second_step["y"] + second_step["height"]
    await check_looks(page, tmp_path / f"list-{viewport['width']}-{scheme}.png")

    # On to the last item: the steps are four; the second list turned loose when a blank line
    # came between its items, and was drawn again, once, with paragraphs.
    in_third_step.open()
    await expect(tail.locator("ul.tail-item > li")).to_have_text("fourth and")
    await expect(steps).to_have_count(4)
    settled = await box_in_reply(chat, reply_id, steps.nth(2))
    assert (settled["x"], settled["y"]) == (third_step["x"], third_step["y"])  # where it stood
    await expect(steps.nth(2).locator("em")).to_have_text("demo")
    await expect(content.locator(":scope > ul > li > p")).to_have_count(3)
    await expect(content.locator(":scope > ul")).to_have_count(1)
    assert await offset_in_reply(chat, reply_id, "ol > li:first-child") == first_step

    in_last_item.open()
    await chat.wait_finished(reply_id)
    await expect(content.locator(":scope > ul > li > p")).to_have_count(4)
    assert await offset_in_reply(chat, reply_id, "ol > li:first-child") == first_step
    live = await page.evaluate(REPLY_HTML_JS, reply_id)
    assert render_markdown(STEPS_REPLY) in live  # the one-shot render, nothing twice
    assert (await content.inner_text()).count("Install") == 1
    await page.reload()
    await chat.wait_for_socket()
    assert layout_html(await page.evaluate(REPLY_HTML_JS, reply_id)) == layout_html(live)
    assert watch.console_errors == [] and watch.csp_violations == []


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_code_block_in_a_lists_item_is_drawn_as_code_while_it_is_written(
    page, server, fake_upstream, watch, viewport, scheme, tmp_path
):
    """A step's code block showed as the item's text, its fences too ("```python"), until
    the next step began; it is drawn as the code block from its first line, under the
    step's first line rendered, and stays where it is as it closes and the step settles."""
    await page.set_viewport_size(viewport)
    await page.emulate_media(color_scheme=scheme)
    chat, reply_id, (in_code,) = await reply_held_before(
        page, server, fake_upstream, STEPS_TOKENS, ["\n   ```"]
    )
    tail, content = page.locator(f"#t{reply_id}"), page.locator(f"#c{reply_id}")
    step = tail.locator("ol.tail-item[start='2'] > li")
    await expect(step.locator("pre.streaming-code code")).to_have_text('print("hi")\n')
    await expect(step.locator(".code-lang")).to_have_text("python")
    assert (await step.inner_text()).startswith("Run it:")
    assert "`" not in await tail.inner_text()
    block = await box_in_reply(chat, reply_id, step.locator(".code-block"))
    await check_looks(page, tmp_path / f"item-code-{viewport['width']}-{scheme}.png")
    await assert_a_reload_draws_it_the_same(chat, tail)

    in_code.open()
    await chat.wait_finished(reply_id)
    settled = content.locator(":scope > ol > li").nth(1).locator(".code-block")
    await expect(settled.locator("span.nb")).to_have_text("print")
    moved = await box_in_reply(chat, reply_id, settled)
    assert (moved["x"], moved["y"], moved["width"]) == (block["x"], block["y"], block["width"])
    await assert_settled_as_rendered(page, reply_id, STEPS_REPLY, watch)


TEXT_START_JS = """
(element, word) => {
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  let node;
  while ((node = walker.nextNode())) {
    const at = node.textContent.indexOf(word);
    if (at >= 0) {
      const range = document.createRange();
      range.setStart(node, at);
      range.setEnd(node, at + 1);
      const box = range.getClientRects()[0];
      return [box.left, box.top];
    }
  }
  return null;
}
"""


async def word_in_reply(chat: ChatPage, reply_id: int, element: Locator, word: str) -> list[float]:
    """Where a word's first character stands inside its reply (the first text node that has
    the word: text appended as it came is in nodes of its own)."""

    async def measures() -> tuple[Any, Any] | None:  # (again if the reply was drawn anew)
        start = await element.evaluate(TEXT_START_JS, word)
        reply = await chat.reply(reply_id).bounding_box()
        return (start, reply) if start and reply else None

    start, reply = await eventually(measures, message=f"{word!r} or its reply has no box")
    return [start[0] - reply["x"], start[1] - reply["y"]]


AFTER_CODE_REPLY = """\
Steps:

1. Install it:
   ```sh
   pip install chatsite
   ```
   Then check the **version** it prints, and go on.
2. Start it"""
# The same, as most models write steps: loose (blank lines between the step's line, its code
# and its text after it), the step after one that settled
LOOSE_CODE_REPLY = """\
Steps:

1. Make a folder.

2. Install it:

   ```sh
   pip install chatsite
   ```

   Then check the **version** it prints, and go on.

3. Start it"""


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize(
    "reply, number", [(AFTER_CODE_REPLY, 1), (LOOSE_CODE_REPLY, 2)], ids=["tight", "loose"]
)
async def test_an_items_text_after_its_code_block_is_drawn_after_the_block(
    page, server, fake_upstream, watch, reply, number, viewport, scheme, tmp_path
):
    """Text after a step's code block drew the whole step as text again, the block's fences
    too, until the next step began. It is drawn after the block, which stays rendered, as
    the step's text formatted as it comes, and all stay where they are as the step
    settles. So too in a loose list, whose step's code followed a blank line: it showed as
    the step's text, its fences too, until the next step began."""
    await page.set_viewport_size(viewport)
    await page.emulate_media(color_scheme=scheme)
    tokens = re.findall(r"\s*\S+|\s+", reply)
    chat, reply_id, (in_text,) = await reply_held_before(
        page, server, fake_upstream, tokens, [" and"]
    )
    tail, content = page.locator(f"#t{reply_id}"), page.locator(f"#c{reply_id}")
    step = tail.locator("ol > li" if number == 1 else f"ol[start='{number}'] > li")
    after = step.locator(f"#x{reply_id}")
    await expect(after).to_have_text("Then check the version it prints,")
    await expect(after.locator("strong")).to_have_text("version")
    await expect(step.locator(".code-block code.language-sh .w")).not_to_have_count(0)
    assert "```" not in await tail.inner_text()
    block = await box_in_reply(chat, reply_id, step.locator(".code-block"))
    words = await word_in_reply(chat, reply_id, after, "Then")
    intro = await word_in_reply(chat, reply_id, step, "Install")
    name = f"item-after-code-{reply == LOOSE_CODE_REPLY}-{viewport['width']}-{scheme}.png"
    await check_looks(page, tmp_path / name)
    await assert_a_reload_draws_it_the_same(chat, tail)

    in_text.open()
    await chat.wait_finished(reply_id)
    settled = content.locator(":scope > ol > li").nth(number - 1)
    moved = await box_in_reply(chat, reply_id, settled.locator(".code-block"))
    assert (moved["x"], moved["y"], moved["width"]) == (block["x"], block["y"], block["width"])
    for word, was in (("Then", words), ("Install", intro)):
        now = await word_in_reply(chat, reply_id, settled, word)
        assert near(now, was), (word, was, now)
    await assert_settled_as_rendered(page, reply_id, reply, watch)


POINTS_REPLY = """\
Steps:

1. **Install** it:
   - Run `pip install chatsite` first
   - Check the *version* it prints, then go on
2. Start it"""
POINTS_TOKENS = re.findall(r"\s*\S+|\s+", POINTS_REPLY)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_list_nested_in_a_lists_item_is_drawn_as_a_list_while_it_is_written(
    page, server, fake_upstream, watch, viewport, scheme, tmp_path
):
    """A step's points (a list nested in its item) showed as the item's text, their markers
    too ("- Run"), until the next step began; they are drawn as the nested list from the
    first point's first word, under the step's first line rendered, each point added as the
    next begins, and all stay where they are as the step settles."""
    await page.set_viewport_size(viewport)
    await page.emulate_media(color_scheme=scheme)
    chat, reply_id, (in_points,) = await reply_held_before(
        page, server, fake_upstream, POINTS_TOKENS, [" then"]
    )
    tail, content = page.locator(f"#t{reply_id}"), page.locator(f"#c{reply_id}")
    step = tail.locator("ol.tail-list > li")
    points = step.locator(":scope > ul.tail-sublist > li")
    await expect(points).to_have_count(2)
    await expect(points.nth(1)).to_have_text("Check the version it prints,")
    await expect(points.nth(1).locator("em")).to_have_text("version")
    await expect(points.nth(0).locator("code")).to_have_text("pip install chatsite")
    await expect(step.locator(":scope > span > strong")).to_have_text("Install")
    shown = await tail.inner_text()
    assert not re.search(r"(?m)^\s*- ", shown) and "**" not in shown and "`" not in shown
    drawn = [await box_in_reply(chat, reply_id, points.nth(i)) for i in range(2)]
    intro = await start_in_reply(chat, reply_id, step.locator(":scope > span > strong"))
    await check_looks(page, tmp_path / f"nested-list-{viewport['width']}-{scheme}.png")
    await assert_a_reload_draws_it_the_same(chat, tail)

    in_points.open()
    await chat.wait_finished(reply_id)
    settled = content.locator(":scope > ol > li").nth(0)
    for i, box in enumerate(drawn):  # where each point stood, as wide
        moved = await box_in_reply(chat, reply_id, settled.locator(":scope > ul > li").nth(i))
        assert near(moved, box)
        assert abs(moved["width"] - box["width"]) <= 0.5
    assert await start_in_reply(chat, reply_id, settled.locator(":scope > strong")) == intro
    await assert_settled_as_rendered(page, reply_id, POINTS_REPLY, watch)


LOOSE_STEPS_REPLY = """\
Steps:

1. **Install it**

   Run the installer and wait for the *prompt*, then go on.

2. **Eat**

   - an apple
   - a pear

3. Rest"""


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_loose_steps_paragraph_and_points_stand_where_they_settle(
    page, server, fake_upstream, watch, viewport, scheme, tmp_path
):
    """A loose step (its title, a blank line, then its text or its points, as ChatGPT writes
    steps) drew its text on the title's line, and its points as that text, their markers too,
    until the next step began: then the text moved down under the title. They are drawn
    under the title as they are written, and stay where they are as the step settles."""
    chat, reply_id, (in_text, in_points), tail, content = await reply_held_at_size(
        page, server, fake_upstream, viewport, scheme, LOOSE_STEPS_REPLY, [" then", " pear"]
    )
    step = tail.locator("ol > li")
    await expect(step.locator(".tail-paragraph")).to_have_text(
        "Run the installer and wait for the prompt,"
    )
    await expect(step.locator(".tail-paragraph em")).to_have_text("prompt")
    words = {w: await word_in_reply(chat, reply_id, step, w) for w in ("Install", "Run")}
    await check_looks(page, tmp_path / f"loose-step-{viewport['width']}-{scheme}.png")
    await assert_a_reload_draws_it_the_same(chat, tail)

    in_text.open()
    points = tail.locator("ol > li > ul.tail-sublist > li")
    await expect(points).to_have_count(2)
    assert "- an" not in await tail.inner_text() and "**" not in await tail.inner_text()
    words["Eat"] = await word_in_reply(chat, reply_id, tail.locator("ol > li"), "Eat")
    point = await box_in_reply(chat, reply_id, points.nth(0))
    await check_looks(page, tmp_path / f"loose-points-{viewport['width']}-{scheme}.png")
    await assert_a_reload_draws_it_the_same(chat, tail)

    in_points.open()
    await chat.wait_finished(reply_id)
    steps = content.locator(":scope > ol > li")
    for word, was in words.items():
        now = await word_in_reply(chat, reply_id, steps.nth(0 if word != "Eat" else 1), word)
        assert near(now, was), (word, was, now)
    moved = await box_in_reply(chat, reply_id, steps.nth(1).locator(":scope > ul > li").nth(0))
    assert near(moved, point)
    await assert_settled_as_rendered(page, reply_id, LOOSE_STEPS_REPLY, watch)


POINT_CODE_REPLY = """\
Steps:

1. **Set up**
   - Write it:
     ```python
     def main():
         return 1
     ```
   - Then run it, and go on
   - See the outline:
     - with **points**
     - of its own
2. Run it"""


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_points_code_and_its_points_stand_where_they_settle(
    page, server, fake_upstream, watch, viewport, scheme, tmp_path
):
    """A step's point with code, or with points of its own (a third level), showed as the
    point's text, fences and markers too, until the next step began. They are drawn as the
    code block and the list, the line being written in its place, and stay where they are
    as the step settles, the code's indentation too."""
    chat, reply_id, (in_code, in_points), tail, content = await reply_held_at_size(
        page, server, fake_upstream, viewport, scheme, POINT_CODE_REPLY, [" go", " own"]
    )
    point = tail.locator("ol > li > ul.tail-sublist > li").nth(0)
    code = point.locator(".code-block code.language-python")
    await expect(code).to_have_text("def main():\n    return 1\n")
    assert "```" not in await tail.inner_text()
    block = await box_in_reply(chat, reply_id, point.locator(".code-block"))
    shown_code = await code.inner_text()
    await check_looks(page, tmp_path / f"point-code-{viewport['width']}-{scheme}.png")

    in_code.open()
    deeper = tail.locator("ol > li > ul.tail-sublist > li > ul > li")
    await expect(deeper).to_have_count(2)
    await expect(deeper.nth(0).locator("strong")).to_have_text("points")
    assert not re.search(r"(?m)^\s*- ", await tail.inner_text())
    first = await box_in_reply(chat, reply_id, deeper.nth(0))
    await check_looks(page, tmp_path / f"point-points-{viewport['width']}-{scheme}.png")
    await assert_a_reload_draws_it_the_same(chat, tail)

    in_points.open()
    await chat.wait_finished(reply_id)
    settled = content.locator(":scope > ol > li").nth(0)
    moved = await box_in_reply(chat, reply_id, settled.locator(".code-block"))
    assert (moved["x"], moved["y"], moved["width"]) == (block["x"], block["y"], block["width"])
    assert await settled.locator(".code-block code").inner_text() == shown_code
    now = await box_in_reply(chat, reply_id, settled.locator(":scope > ul > li > ul > li").nth(0))
    assert near(now, first)
    await assert_settled_as_rendered(page, reply_id, POINT_CODE_REPLY, watch)


QUOTE_POINTS_REPLY = """\
Here is a note:

> **Note:** do this first.
> - Back up your *data*
> - Then update the app, and go on

After the note."""


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_quote_with_points_stands_where_it_settles(
    page, server, fake_upstream, watch, viewport, scheme, tmp_path
):
    """A note with points was drawn as the quote, then as text, its markers too, from its
    first point on, then as the quote again as it settled: two jumps. It is drawn as the
    quote with its points as they are written, and stays where it is as it settles."""
    chat, reply_id, (in_points,), tail, content = await reply_held_at_size(
        page, server, fake_upstream, viewport, scheme, QUOTE_POINTS_REPLY, [" go"]
    )
    points = tail.locator("blockquote > ul > li")
    await expect(points).to_have_count(2)
    await expect(points.nth(1)).to_have_text("Then update the app, and")
    await expect(points.nth(0).locator("em")).to_have_text("data")
    shown = await tail.inner_text()
    assert ">" not in shown and not re.search(r"(?m)^\s*- ", shown), shown
    drawn = [await box_in_reply(chat, reply_id, points.nth(i)) for i in range(2)]
    quote = await box_in_reply(chat, reply_id, tail.locator("blockquote"))
    await check_looks(page, tmp_path / f"quote-points-{viewport['width']}-{scheme}.png")
    await assert_a_reload_draws_it_the_same(chat, tail)

    in_points.open()
    await chat.wait_finished(reply_id)
    settled = content.locator(":scope > blockquote")
    moved = await box_in_reply(chat, reply_id, settled)
    assert near(moved, quote)
    for i, box in enumerate(drawn):
        now = await box_in_reply(chat, reply_id, settled.locator(":scope > ul > li").nth(i))
        assert near(now, box)
    await assert_settled_as_rendered(page, reply_id, QUOTE_POINTS_REPLY, watch)


BREAKS_REPLY = (
    "Send it to:\n\n**Ada Lovelace**  \n12 St James's Square  \nLondon\\\nSW1Y 4JH\n\nThanks."
)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_paragraphs_hard_line_breaks_are_drawn_as_they_are_written(
    page, server, fake_upstream, watch, viewport, scheme, tmp_path
):
    """An address's lines, each ended by two spaces or a backslash, ran on as one line ("Ada
    Lovelace 12 St James's Square London\\ SW1Y") and broke as the paragraph settled; after
    the backslash, bold and code showed their marks until then. Each line is drawn on its own
    line as its end comes, and stands there as the paragraph settles."""
    chat, reply_id, (held,), tail, content = await reply_held_at_size(
        page, server, fake_upstream, viewport, scheme, BREAKS_REPLY, [" 4JH"]
    )
    await expect(tail.locator("br")).to_have_count(3)
    await expect(tail.locator("strong")).to_have_text("Ada Lovelace")
    shown = await tail.inner_text()
    assert shown.split("\n") == ["Ada Lovelace", "12 St James's Square", "London", "SW1Y"], shown
    drawn = [await word_in_reply(chat, reply_id, tail, word) for word in ("12", "London", "SW1Y")]
    await check_looks(page, tmp_path / f"breaks-{viewport['width']}-{scheme}.png")
    await assert_a_reload_draws_it_the_same(chat, tail)

    held.open()
    await chat.wait_finished(reply_id)
    address = content.locator("p").nth(1)
    for word, box in zip(("12", "London", "SW1Y"), drawn, strict=True):
        assert near(await word_in_reply(chat, reply_id, address, word), box), word
    await assert_settled_as_rendered(page, reply_id, BREAKS_REPLY, watch)


MARKS_REPLY = """\
To start:

Use **pip install chatsite** then `chatsite serve`, and see [the docs](/docs/) now; **and then \
wait** for it"""
MARKS_TOKENS = re.findall(r"\s*\S+|\s+", MARKS_REPLY)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_paragraphs_bold_code_and_links_are_formatted_as_they_are_written(
    page, server, fake_upstream, watch, viewport, scheme, tmp_path
):
    """The paragraph being written showed its marks as text ("**pip install chatsite**",
    "`chatsite serve`", a link's destination) until each closed, then they went and the words
    moved. Each is drawn formatted from its first word, as it will render; nothing moves
    when its marks close, nor when the reply ends."""
    await page.set_viewport_size(viewport)
    await page.emulate_media(color_scheme=scheme)
    gate = held_stream(fake_upstream, MARKS_TOKENS, " wait**", delay=0.02)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("How do I start?")
    tail = page.locator(f"#t{reply_id}")

    # Held inside the last bold: the closed marks are formatted in the tail, and the open
    # one is drawn bold in its pending span, its marks not shown.
    await expect(page.locator(f"#w{reply_id} strong")).to_have_text("and then")
    await expect(tail.locator("strong").first).to_have_text("pip install chatsite")
    await expect(tail.locator("code")).to_have_text("chatsite serve")
    await expect(tail.locator("a")).to_have_text("the docs")
    assert await tail.locator("a").get_attribute("href") == "/docs/"
    shown = await tail.inner_text()
    assert "`" not in shown and "*" not in shown and "[the" not in shown, shown
    assert shown.startswith(
        "Use pip install chatsite then chatsite serve, and see the docs now; and then"
    )
    bold = await box_in_reply(chat, reply_id, tail.locator("strong").first)
    code = await box_in_reply(chat, reply_id, tail.locator("code"))
    open_bold = await start_in_reply(chat, reply_id, tail.locator("strong").last)
    await check_looks(page, tmp_path / f"marks-{viewport['width']}-{scheme}.png")

    gate.open()
    await chat.wait_finished(reply_id)
    content = page.locator(f"#c{reply_id}")
    await expect(content.locator("p strong").first).to_have_text("pip install chatsite")
    # The paragraph settled where its tail stood: the formatted words did not move, and the
    # bold being written grew where it stood.
    assert await box_in_reply(chat, reply_id, content.locator("p strong").first) == bold
    assert await box_in_reply(chat, reply_id, content.locator("p code")) == code
    assert await content.locator("p strong").last.inner_text() == "and then wait"
    # (within a pixel: the text before it is in other text nodes once settled)
    settled_bold = await start_in_reply(chat, reply_id, content.locator("p strong").last)
    assert settled_bold == pytest.approx(open_bold, abs=0.5)
    live = await page.evaluate(REPLY_HTML_JS, reply_id)
    assert render_markdown(MARKS_REPLY) in live  # the one-shot render, nothing twice
    assert (await content.inner_text()).count("pip install") == 1
    assert watch.console_errors == [] and watch.csp_violations == []


IMAGE_REPLY = (
    "The service has three parts ![the architecture](https://example.com/img/arch.png) and "
    "**the steps then wait** for it"
)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_an_image_and_the_words_after_it_are_drawn_as_they_will_render(
    page, server, fake_upstream, watch, viewport, scheme, tmp_path
):
    """An image in the paragraph being written is drawn as it renders (another host's: a
    link to it with its text, nothing fetched), and the words after it formatted as they
    come; nothing moves when the paragraph settles. They showed as their source ("![the
    architecture](https://...", "**the steps") until it settled, then jumped to the render."""
    chat, reply_id, (gate,), tail, content = await reply_held_at_size(
        page, server, fake_upstream, viewport, scheme, IMAGE_REPLY, [" wait**"]
    )

    await expect(page.locator(f"#w{reply_id} strong")).to_have_text("the steps then")
    image = tail.locator("a.image-link")
    await expect(image).to_have_text("the architecture")
    assert await image.get_attribute("href") == "https://example.com/img/arch.png"
    assert await page.locator(f"#m{reply_id} img").count() == 0  # (another host's: not fetched)
    shown = await tail.inner_text()
    assert "](" not in shown and "*" not in shown and "https" not in shown, shown
    picture = await box_in_reply(chat, reply_id, image)
    assert picture["width"] > 0
    bold = await start_in_reply(chat, reply_id, tail.locator("strong"))
    await check_looks(page, tmp_path / f"image-{viewport['width']}-{scheme}.png")

    gate.open()
    await chat.wait_finished(reply_id)
    await expect(content.locator("p strong")).to_have_text("the steps then wait")
    settled = await box_in_reply(chat, reply_id, content.locator("p a.image-link"))
    assert near(settled, picture) and settled["width"] == pytest.approx(picture["width"], abs=0.5)
    settled_bold = await start_in_reply(chat, reply_id, content.locator("p strong"))
    assert settled_bold == pytest.approx(bold, abs=0.5)
    await assert_settled_as_rendered(page, reply_id, IMAGE_REPLY, watch)


SELDOM_REPLY = (
    "To run the tests of this project, take every file that matches *.py and then run "
    "`pytest` with **verbose** output, and 2**10 is `x` and _private is `y` so **then wait** "
    "for it"
)
SELDOM_TOKENS = re.findall(r"\s*\S+|\s+", SELDOM_REPLY)


async def test_words_after_marks_that_never_close_are_formatted_by_small_frames(
    page, server, fake_upstream, watch
):
    """A mark that opens an emphasis and never closes ("*.py", "2**10", "_private") is given
    up on at the next mark: its words after it are drawn formatted by a frame that moves the
    pending span's text before it (the tail was drawn again whole for each such mark). The
    page the frames made is the tail as the server draws it for the text so far, as a
    reload draws it, and it settles as rendered."""
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda p: frames.append(str(p))))
    gate = held_stream(fake_upstream, SELDOM_TOKENS, " wait**", delay=0.02)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("How do I run the tests?")
    tail = page.locator(f"#t{reply_id}")

    await expect(page.locator(f"#w{reply_id} strong")).to_have_text("then")
    await expect(tail.locator("code")).to_have_text(["pytest", "x", "y"])
    await expect(tail.locator("strong").first).to_have_text("verbose")
    shown = await tail.inner_text()
    assert shown.startswith("To run the tests of this project, take every file that matches *.py")
    assert "*.py and then run pytest with verbose output, and 2**10 is x and _private is y" in shown
    assert "`" not in shown, shown
    # Given up on by frames of their own, not by the tail drawn again
    # (a snapshot, should the socket send one, draws the blocks too)
    assert any(f'hx-swap-oob="beforebegin:#w{reply_id}"' in frame for frame in frames)
    redrawn = f'<div id="t{reply_id}" hx-swap-oob="innerHTML">'
    snapshot = f'<div id="c{reply_id}" hx-swap-oob="innerHTML">'
    assert not any(redrawn in frame and snapshot not in frame for frame in frames)
    # The page the frames made is the server's drawing of the text so far
    renderer = ProgressiveRenderer()
    renderer.feed("".join(SELDOM_TOKENS[: SELDOM_TOKENS.index(" wait**")]))
    drawn = tail_html(CONTENT, reply_id, renderer.tail)
    assert layout_html(await tail.inner_html()) == layout_html(drawn)
    await assert_a_reload_draws_it_the_same(chat, tail)

    gate.open()
    await chat.wait_finished(reply_id)
    await assert_settled_as_rendered(page, reply_id, SELDOM_REPLY, watch)


CJK_REPLY = """\
## 安装步骤

**第一步：**安装依赖，运行 `pip install chatsite`。

**注意：**请先确认**「配置文件」**已经存在，然后再**启动服务：**执行命令"""
# Tokens of one to three characters, as CJK text streams (it has no blanks to split at)
CJK_TOKENS = re.findall(r"\s+|[!-~]+|[^!-~\s]{1,3}", CJK_REPLY)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_chinese_bold_before_the_next_word_is_bold_as_it_streams_and_settles(
    page, server, fake_upstream, watch, viewport, scheme, tmp_path
):
    """Bold that ends in full-width punctuation right before the next word ("**注意：**请",
    CommonMark's CJK-friendly amendment) was drawn bold while open, then shown as text with
    its stars once closed, and saved so. It is bold from its first character, its stars never
    shown, and it settles where it stood."""
    await page.set_viewport_size(viewport)
    await page.emulate_media(color_scheme=scheme)
    held = CJK_TOKENS.index("执行命")
    (gate,) = gated_stream(fake_upstream, CJK_TOKENS, [held + 1], delay=0.02)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("怎么安装？")
    tail, content = page.locator(f"#t{reply_id}"), page.locator(f"#c{reply_id}")

    # Held after "**启动服务：**": the paragraph before is settled bold, and the one being
    # written has its closed bold formatted and the last drawn bold, no star shown.
    await expect(content.locator("p strong")).to_have_text("第一步：")
    await expect(tail.locator("strong")).to_have_text(["注意：", "「配置文件」", "启动服务："])
    shown = await tail.inner_text()
    assert "*" not in shown and shown.startswith("注意：请先确认「配置文件」已经存在"), shown
    drawn = [await start_in_reply(chat, reply_id, tail.locator("strong").nth(i)) for i in range(3)]
    await check_looks(page, tmp_path / f"cjk-{viewport['width']}-{scheme}.png")

    gate.open()
    await chat.wait_finished(reply_id)
    settled = content.locator("p").nth(1).locator("strong")
    await expect(settled).to_have_text(["注意：", "「配置文件」", "启动服务："])
    for i, start in enumerate(drawn):
        assert await start_in_reply(chat, reply_id, settled.nth(i)) == pytest.approx(start, abs=0.5)
    assert "*" not in await content.inner_text()
    await assert_settled_as_rendered(page, reply_id, CJK_REPLY, watch)


TABLE_REPLY = """\
Plans:

| plan | price | seats |
|---|--:|---|
| Free | 0 | 1 |
| **Team** | 20 | 10 |
| *Enterprise* | `ask` | unlimited |

That is all."""
TABLE_TOKENS = re.findall(r"\s*\S+|\s+", TABLE_REPLY)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_table_takes_shape_row_by_row_as_it_streams(
    page, server, fake_upstream, watch, viewport, scheme, tmp_path
):
    """A table streamed as lines of pipes until a blank line ended it, then jumped into a
    table. From its head on it is a table: each row is added rendered as its line ends, the
    row being written fills its cells as the text comes, a reload draws it the same, and
    nothing moves when it ends."""
    await page.set_viewport_size(viewport)
    await page.emulate_media(color_scheme=scheme)
    gate = held_stream(fake_upstream, TABLE_TOKENS, " unlimited", delay=0.02)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("Which plans are there?")
    table = page.locator(f"#x{reply_id}")

    # Held in the last row: the head and two rows are drawn rendered, the row being written
    # shows its cells so far.
    await expect(table.locator("thead th")).to_have_text(["plan", "price", "seats"])
    await expect(table.locator("tbody:not(.tail-row) tr")).to_have_count(2)
    await expect(table.locator("td strong")).to_have_text("Team")
    await expect(page.locator(f"#z{reply_id} td")).to_have_text(["Enterprise", "ask", ""])
    # Its cells that ended (a pipe came) are drawn as the table will render them.
    await expect(page.locator(f"#z{reply_id} td em")).to_have_text("Enterprise")
    await expect(page.locator(f"#z{reply_id} td code")).to_have_text("ask")
    shown = await page.locator(f"#t{reply_id}").inner_text()
    assert not {"|", "*", "`"} & set(shown), shown
    # The price column is aligned right ("--:"), the row being written too, as it will be
    # (markdown-it's style attribute was stripped, so every column stood left).
    price = f"#x{reply_id} thead th, #x{reply_id} tbody td"
    aligned = await page.eval_on_selector_all(
        price, "cs => cs.map(c => getComputedStyle(c).textAlign)"
    )
    assert aligned[1::3] == ["right"] * 4 and "right" not in aligned[0::3] + aligned[2::3], aligned
    team = await box_in_reply(chat, reply_id, table.locator("td strong"))
    ask = await box_in_reply(chat, reply_id, page.locator(f"#z{reply_id} td code"))
    head = await box_in_reply(chat, reply_id, table.locator("thead"))
    await check_looks(page, tmp_path / f"table-{viewport['width']}-{scheme}.png")
    await assert_a_reload_draws_it_the_same(chat, page.locator(f"#t{reply_id}"))

    gate.open()
    await chat.wait_finished(reply_id)
    content = page.locator(f"#c{reply_id}")
    await expect(content.locator("table tbody tr")).to_have_count(3)
    # The table settled where it streamed: its head and rows did not move.
    assert await box_in_reply(chat, reply_id, content.locator("thead")) == head | {
        "width": (await box_in_reply(chat, reply_id, content.locator("thead")))["width"]
    }
    settled_team = await box_in_reply(chat, reply_id, content.locator("td strong"))
    assert (settled_team["x"], settled_team["y"]) == (team["x"], team["y"])
    settled_ask = await box_in_reply(chat, reply_id, content.locator("td code"))
    assert (settled_ask["x"], settled_ask["y"]) == (ask["x"], ask["y"])
    assert await content.locator("td.align-right").count() == 3
    live = await page.evaluate(REPLY_HTML_JS, reply_id)
    assert render_markdown(TABLE_REPLY) in live  # the one-shot render, nothing twice
    assert (await content.inner_text()).count("Enterprise") == 1
    assert watch.console_errors == [] and watch.csp_violations == []


async def reply_held_before(
    page, server, fake_upstream, tokens: list[str], held_before: list[str]
) -> tuple[ChatPage, int, list[Gate]]:
    """A new conversation's reply streaming `tokens` a piece each, held before each token of
    `held_before` until its gate (returned in the same order) opens."""
    held = [tokens.index(token) + 1 for token in held_before]  # (after the role's piece)
    gates = gated_stream(fake_upstream, tokens, held, delay=0.02)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    return chat, await chat.send("Tell me"), gates


async def reply_held_at_size(
    page, server, fake_upstream, viewport, scheme, reply: str, held_before: list[str]
) -> tuple[ChatPage, int, list[Gate], Locator, Locator]:
    """`reply_held_before` at a window's size and colour scheme, its tokens the words of
    `reply`; also its tail and its settled blocks."""
    await page.set_viewport_size(viewport)
    await page.emulate_media(color_scheme=scheme)
    tokens = re.findall(r"\s*\S+|\s+", reply)
    chat, reply_id, gates = await reply_held_before(
        page, server, fake_upstream, tokens, held_before
    )
    return chat, reply_id, gates, page.locator(f"#t{reply_id}"), page.locator(f"#c{reply_id}")


# The blinking cursors in a reply's tail (each element's `::after` that draws one)
CURSORS_JS = """
(id) => [document.getElementById("t" + id), ...document.querySelectorAll(`#t${id} *`)]
  .filter((e) => getComputedStyle(e, "::after").content.includes("\u258d")).length
"""
TABLES_IN_BLOCKS_REPLY = """\
1. Compare the options:
   | Option | Cost |
   |---|---|
   | Alpha | 1 |
   | Beta | 2 |

   Take the cheaper one.
2. Pick one

> Note the plans:
> | Plan | Price |
> |---|---|
> | Free | 0 |
> | Pro | 9 |

Done."""


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_table_in_a_lists_item_and_in_a_quote_stands_where_it_settles(
    page, server, fake_upstream, watch, viewport, scheme, tmp_path
):
    """A table in a list's item, or in a quote after its paragraph, showed as the item's or
    the paragraph's text, pipes and all ("Compare the options: | Option | Cost | |---|---|
    ..."), until the item or the quote settled, then jumped into a table. It is drawn as it
    renders: its head as its delimiter row ends, each row as its line ends, the row being
    written not yet; where it stands, it stays as it settles."""
    chat, reply_id, (in_item, after_table, in_quote), tail, content = await reply_held_at_size(
        page,
        server,
        fake_upstream,
        viewport,
        scheme,
        TABLES_IN_BLOCKS_REPLY,
        [" Beta", " cheaper", " Pro"],
    )
    rows = tail.locator("ol li table tbody tr")
    await expect(rows).to_have_count(1)
    await expect(tail.locator("ol li table th")).to_have_text(["Option", "Cost"])
    await expect(rows.locator("td")).to_have_text(["Alpha", "1"])
    shown = await tail.inner_text()
    assert "|" not in shown and "---" not in shown, shown
    assert await page.evaluate(CURSORS_JS, reply_id) == 1
    await check_looks(page, tmp_path / f"tables-{viewport['width']}-{scheme}.png")
    in_item.open()

    # The item's paragraph after its table, being written (a blank line before it made the
    # item loose: its first line a paragraph, as it settles): one cursor, after its words (a
    # second read: the item's own stood on a line of its own under them too)
    await expect(tail.locator("ol li > p").last).to_have_text("Take the")
    assert await page.evaluate(CURSORS_JS, reply_id) == 1
    table = await box_in_reply(chat, reply_id, tail.locator("ol li table"))
    intro = await start_in_reply(chat, reply_id, tail.locator("ol li"))
    after_table.open()

    await expect(tail.locator("blockquote table tbody tr")).to_have_count(1)
    await expect(tail.locator("blockquote p")).to_have_text("Note the plans:")
    shown = await tail.inner_text()
    assert "|" not in shown and "---" not in shown, shown
    settled = await box_in_reply(chat, reply_id, content.locator("ol li table"))
    assert near(settled, table), (settled, table)
    assert near(await start_in_reply(chat, reply_id, content.locator("ol li").first), intro)
    quoted = await box_in_reply(chat, reply_id, tail.locator("blockquote table"))
    in_quote.open()

    await chat.wait_finished(reply_id)
    settled = await box_in_reply(chat, reply_id, content.locator("blockquote table"))
    assert near(settled, quoted), (settled, quoted)
    await expect(content.locator("blockquote table tbody tr")).to_have_count(2)
    await assert_settled_as_rendered(page, reply_id, TABLES_IN_BLOCKS_REPLY, watch)


HEAD_REPLY = """\
Plans:

| plan | **price** | seats |
|---|--:|---|
| Free | 0 | 1 |

That is all."""
HEAD_TOKENS = [
    *("Plans", ":", "\n\n", "|", " plan", " |", " **pr", "ice**", " |", " seats", " |", "\n"),
    *("|---", "|--:", "|---|", "\n", "| Free", " |", " 0", " |", " 1", " |", "\n\n"),
    *("That", " is", " all", "."),
]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_tables_head_is_drawn_as_its_head_while_it_is_written(
    page, server, fake_upstream, watch, viewport, scheme, tmp_path
):
    """A table's first line showed as text ("| plan | **price** |"), and its delimiter row
    after it ("|---|--:"), until that row's line ended: then the table took their place.
    The head is now drawn as the table's head from its first pipe, its cells as they come
    (each as it will render, its marks not shown), the delimiter row not at all, and the
    table opens where the head stood."""
    assert "".join(HEAD_TOKENS) == HEAD_REPLY
    await page.set_viewport_size(viewport)
    await page.emulate_media(color_scheme=scheme)
    chat, reply_id, (in_cell, *gates) = await reply_held_before(
        page, server, fake_upstream, HEAD_TOKENS, ["ice**", " seats", "|--:", " 1"]
    )
    tail, head = page.locator(f"#t{reply_id}"), page.locator(f"#z{reply_id}")

    # In a cell being written: drawn bold from its first letters, its marks not shown.
    await expect(head.locator("th strong")).to_have_text("pr")
    assert not {"|", "*"} & set(await tail.inner_text())
    written = await box_in_reply(chat, reply_id, head.locator("th strong"))
    in_cell.open()

    # In the head's line: its cells so far, the ended one rendered; a pipe began the third.
    await expect(head.locator("th:visible")).to_have_text(["plan", "price"])
    await expect(head.locator("th strong")).to_have_text("price")
    await expect(head.locator("th:visible")).to_have_count(2)
    assert not {"|", "*"} & set(await tail.inner_text())
    price = await box_in_reply(chat, reply_id, head.locator("th strong"))
    assert (price["x"], price["y"]) == (written["x"], written["y"])

    # In the delimiter row: the head is whole, the row is not drawn.
    gates[0].open()
    await expect(head.locator("th:visible")).to_have_text(["plan", "price", "seats"])
    assert not {"|", "*", "-"} & set(await tail.inner_text())
    assert await box_in_reply(chat, reply_id, head.locator("th strong")) == price
    await check_looks(page, tmp_path / f"head-{viewport['width']}-{scheme}.png")
    await assert_a_reload_draws_it_the_same(chat, tail)

    # In the first row: the table opened where its head stood.
    gates[1].open()
    table = page.locator(f"#x{reply_id}")
    await expect(page.locator(f"#z{reply_id} td")).to_have_text(["Free", "0", ""])
    await expect(table.locator("thead th")).to_have_text(["plan", "price", "seats"])
    opened = await box_in_reply(chat, reply_id, table.locator("thead th strong"))
    assert (opened["x"], opened["y"]) == (price["x"], price["y"])

    gates[2].open()
    await chat.wait_finished(reply_id)
    content = page.locator(f"#c{reply_id}")
    settled = await box_in_reply(chat, reply_id, content.locator("thead th strong"))
    assert (settled["x"], settled["y"]) == (price["x"], price["y"])
    await assert_settled_as_rendered(page, reply_id, HEAD_REPLY, watch)


STEPS_AFTER_A_LINE = """\
To start, follow these steps:
1. Install **chatsite** with pip
2. Run it

Done."""
STEPS_AFTER_A_LINE_TOKENS = re.findall(r"\s*\S+|\s+", STEPS_AFTER_A_LINE)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_list_right_after_a_paragraphs_line_is_drawn_as_the_list_as_it_begins(
    page, server, fake_upstream, watch, viewport, scheme, tmp_path
):
    """A list on the line right after a paragraph's (no blank line between, as models often
    write it) streamed as the paragraph's text ("To start, follow these steps: 1. Install")
    until its first item's line ended, then jumped into a list. It is drawn as the list from
    its first item's marker and first word, where it settles."""
    await page.set_viewport_size(viewport)
    await page.emulate_media(color_scheme=scheme)
    chat, reply_id, gates = await reply_held_before(
        page, server, fake_upstream, STEPS_AFTER_A_LINE_TOKENS, [" with"]
    )
    tail, content = page.locator(f"#t{reply_id}"), page.locator(f"#c{reply_id}")

    await expect(tail.locator("ol li")).to_have_text(re.compile(r"^Install chatsite"))
    await expect(tail.locator("ol li strong")).to_have_text("chatsite")
    await expect(content.locator("p")).to_have_text("To start, follow these steps:")
    assert not {"1.", "*"} & set(re.findall(r"1\.|\*", await tail.inner_text()))
    item = await box_in_reply(chat, reply_id, tail.locator("ol li"))
    await check_looks(page, tmp_path / f"steps-{viewport['width']}-{scheme}.png")
    await assert_a_reload_draws_it_the_same(chat, tail)

    gates[0].open()
    await chat.wait_finished(reply_id)
    settled = await box_in_reply(chat, reply_id, content.locator("ol > li").first)
    assert (settled["x"], settled["y"]) == (item["x"], item["y"])
    await assert_settled_as_rendered(page, reply_id, STEPS_AFTER_A_LINE, watch)


QUOTE_REPLY = """\
As the docs put it:

> **Note:** a reply is saved when its stream ends,
> once.
>
> And every `frame` carries its offset.

That is all."""
QUOTE_TOKENS = re.findall(r"\s*\S+|\s+", QUOTE_REPLY)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_quote_is_drawn_as_the_quote_while_it_streams(
    page, server, fake_upstream, watch, viewport, scheme, tmp_path
):
    """A quote streamed as text with its markers ("> **Note:** ..."), then moved in by the
    quote's margin as it settled, its markers gone. It is drawn as the quote from its first
    word, its lines' markers not at all, and settles where it stands; so too a quote of two
    paragraphs, which was drawn as text again from its blank line."""
    await page.set_viewport_size(viewport)
    await page.emulate_media(color_scheme=scheme)
    chat, reply_id, gates = await reply_held_before(
        page, server, fake_upstream, QUOTE_TOKENS, [" offset.", " all."]
    )
    tail = page.locator(f"#t{reply_id}")
    quote = tail.locator("blockquote.tail-quote")
    await expect(quote).to_have_text(
        re.compile(r"^Note: a reply .*\sonce\.\s*And every frame carries its\s*$", re.S)
    )
    await expect(quote.locator("p")).to_have_count(2)
    await expect(quote.locator("strong")).to_have_text("Note:")
    await expect(quote.locator("code")).to_have_text("frame")
    assert ">" not in await tail.inner_text()
    streaming = await box_in_reply(chat, reply_id, quote.locator("code"))
    note = await box_in_reply(chat, reply_id, quote.locator("strong"))
    await check_looks(page, tmp_path / f"quote-{viewport['width']}-{scheme}.png")
    await assert_a_reload_draws_it_the_same(chat, tail)

    gates[0].open()
    content = page.locator(f"#c{reply_id}")
    await expect(content.locator("blockquote code")).to_have_text("frame")
    settled = await box_in_reply(chat, reply_id, content.locator("blockquote code"))
    # (within a pixel: the words before it are in other text nodes, a hundredth apart)
    assert abs(settled["x"] - streaming["x"]) < 1 and settled["y"] == streaming["y"]
    settled_note = await box_in_reply(chat, reply_id, content.locator("blockquote strong"))
    assert (settled_note["x"], settled_note["y"]) == (note["x"], note["y"])
    gates[1].open()
    await chat.wait_finished(reply_id)
    await assert_settled_as_rendered(page, reply_id, QUOTE_REPLY, watch)


MARKER_TOKENS = ["Steps", ":", "\n\n", "-", " install", " it", "\n", "-", " run", " it", "."]


async def test_a_next_items_marker_is_not_drawn_before_its_text(page, server, fake_upstream, watch):
    """A list's next item showed its marker as text at the end of the item before it ("install
    it -") for a frame, until its first word came; so did a heading's "##". The line is held
    back until a character after the marker tells what it is."""
    held = [len(MARKER_TOKENS) - 2]  # before " run": the stream stops after its "-"
    (gate,) = gated_stream(fake_upstream, MARKER_TOKENS, held, delay=0.02)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("How?")
    tail = page.locator(f"#t{reply_id}")
    await expect(tail.locator("li")).to_have_text("install it")
    await asyncio.sleep(0.5)  # the "-" came meanwhile (each piece 20 ms after the last)
    assert (await tail.inner_text()).strip() == "install it"
    gate.open()
    await chat.wait_finished(reply_id)
    items = page.locator(f"#c{reply_id} li")
    await expect(items).to_have_text(["install it", "run it."])
    assert watch.console_errors == []


OPENINGS_REPLY = """\
Here is how:

## Getting **started** today

- install *it* first
- run it

After the list comes a closing paragraph, written as one long line of words as models do"""
OPENINGS_TOKENS = re.findall(r"\s*\S+|\s+", OPENINGS_REPLY)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_a_heading_a_lists_first_item_and_the_words_after_a_list_stand_where_they_settle(
    page, server, fake_upstream, watch, viewport, scheme, tmp_path
):
    """A heading's line showed as text ("## Getting **started**") until it ended, a list's
    first item too ("- install *it*") until the next item began, and the paragraph after a
    list in the list's last item until its line ended: each then jumped into its place. Each
    is now drawn from its first characters as it will settle, and does not move when it
    does."""
    await page.set_viewport_size(viewport)
    await page.emulate_media(color_scheme=scheme)
    chat, reply_id, gates = await reply_held_before(
        page, server, fake_upstream, OPENINGS_TOKENS, ["\n\n-", "\n-", " paragraph,"]
    )
    content, tail = page.locator(f"#c{reply_id}"), page.locator(f"#t{reply_id}")

    # In the heading's line: a heading, its bold word formatted, no marks shown.
    heading = tail.locator("h2.tail-heading")
    await expect(heading).to_have_text("Getting started today")
    await expect(heading.locator("strong")).to_have_text("started")
    # The cursor after the text is drawn, not read: it is in no element's name.
    await expect(heading).to_have_accessible_name("Getting started today")
    streaming_heading = await box_in_reply(chat, reply_id, heading.locator("strong"))
    size = await heading.evaluate("h => getComputedStyle(h).fontSize")
    await check_looks(page, tmp_path / f"heading-{viewport['width']}-{scheme}.png")

    # In the list's first item: the heading settled where it stood; the item is a list's.
    gates[0].open()
    item = tail.locator("ul.tail-list > li")
    await expect(item).to_have_text("install it first")
    await expect(item.locator("em")).to_have_text("it")
    settled = await box_in_reply(chat, reply_id, content.locator("h2 strong"))
    assert (settled["x"], settled["y"]) == (streaming_heading["x"], streaming_heading["y"])
    assert await content.locator("h2").evaluate("h => getComputedStyle(h).fontSize") == size
    streaming_item = await box_in_reply(chat, reply_id, item.locator("em"))
    assert "-" not in await tail.inner_text()
    await check_looks(page, tmp_path / f"first-item-{viewport['width']}-{scheme}.png")

    # In the paragraph after the list: the list settled with the first item where it stood,
    # and the paragraph is outside it, in line with the paragraphs.
    gates[1].open()
    await expect(tail).to_have_text(re.compile(r"^After the list comes a closing"))
    await expect(content.locator(":scope > ul > li")).to_have_count(2)
    settled = await box_in_reply(chat, reply_id, content.locator("ul > li em"))
    assert (settled["x"], settled["y"]) == (streaming_item["x"], streaming_item["y"])
    intro = await box_in_reply(chat, reply_id, content.locator(":scope > p").first)
    after = await box_in_reply(chat, reply_id, tail)
    assert after["x"] == intro["x"]
    await check_looks(page, tmp_path / f"after-list-{viewport['width']}-{scheme}.png")

    gates[2].open()
    await chat.wait_finished(reply_id)
    last = await box_in_reply(chat, reply_id, content.locator(":scope > p").last)
    assert (last["x"], last["y"]) == (after["x"], after["y"])
    await assert_settled_as_rendered(page, reply_id, OPENINGS_REPLY, watch)


@pytest.mark.parametrize(
    ("reply", "held", "streaming", "settled"),
    [
        ("## Getting started today\n\nText.", "\n\nText.", "h2.tail-heading", "h2"),
        ("- install it first\n- run it", "\n-", "ul.tail-list", "ul"),
        ("1. install it first\n2. run it", "\n2.", "ol.tail-list", "ol"),
        ("```py\nprint(1)\n```\n\nText.", "\n```", ".code-block", ".code-block"),
        ("| a | b |\n|---|---|\n| 1 | 2 |\n\nText.", "\n\nText.", "table.tail-table", "table"),
    ],
    ids=["heading", "list", "numbered-list", "code", "table"],
)
async def test_a_replys_first_block_does_not_move_when_it_settles(
    page, server, fake_upstream, watch, reply, held, streaming, settled
):
    """The first block of a reply stands at its top while it is written, as it does once it
    settles (the page's first block has no top margin). A heading, a list's first item and a
    code block stood a line lower in the tail, then jumped up."""
    tokens = re.findall(r"\s*\S+|\s+", reply)
    gate = held_stream(fake_upstream, tokens, held, delay=0.02)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("Begin with a block")
    block = page.locator(f"#t{reply_id} > {streaming}")
    await expect(block).to_be_visible()
    before = await box_in_reply(chat, reply_id, block)
    gate.open()
    await chat.wait_finished(reply_id)
    after = await box_in_reply(chat, reply_id, page.locator(f"#c{reply_id} > {settled}"))
    assert (after["x"], after["y"]) == (before["x"], before["y"]), (before, after)
    assert watch.console_errors == []


@pytest.mark.parametrize(
    ("reply", "held", "streaming"),
    [
        ("Intro:\n\nA first line\nthen its next line goes on", " goes", "#t{}"),
        ("Steps:\n\n1. A first line\n   then its next line goes on", " goes", "#t{} li"),
    ],
    ids=["paragraph", "item"],
)
async def test_a_line_end_inside_a_paragraph_joins_its_lines_while_it_is_written(
    page, server, fake_upstream, watch, reply, held, streaming
):
    """A paragraph's (or an item's) line end inside it renders as a space: its lines join.
    The tail drew them on lines of their own (the item's next line indented), then joined
    them as the paragraph settled. They are joined while written, where they settle."""
    tokens = re.findall(r"\s*\S+|\s+", reply)
    gate = held_stream(fake_upstream, tokens, held, delay=0.02)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("Two lines")
    tail = page.locator(streaming.format(reply_id)).first
    await expect(tail).to_contain_text("next line")
    written = await word_in_reply(chat, reply_id, tail, "then")
    first = await word_in_reply(chat, reply_id, tail, "first")
    assert written[1] == first[1]  # on the first line's line
    gate.open()
    await chat.wait_finished(reply_id)
    settled = page.locator(f"#c{reply_id} > :last-child")
    moved = await word_in_reply(chat, reply_id, settled, "then")
    assert abs(moved[0] - written[0]) <= 0.5 and abs(moved[1] - written[1]) <= 0.5
    assert watch.console_errors == []


async def test_indented_code_that_settles_mid_reply_is_framed_with_its_copy_button(
    page, server, fake_upstream, watch
):
    """Indented code gets the fenced code's frame and Copy code button as it settles, while the
    reply streams on, as after a reload. The page framed it only when a page loaded (the block
    swapped in by itself was not looked at), so it had no button until a reload (found by a
    walk-through)."""
    reply = "Intro.\n\n    indented_code()\n    line2\n\nMiddle para.\n\nLast, still being written"
    tokens = re.findall(r"\s*\S+|\s+", reply)
    gate = held_stream(fake_upstream, tokens, " written", delay=0.02)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("Indented code")
    await expect(page.locator(f"#t{reply_id}")).to_contain_text("still being")
    content = chat.reply(reply_id)
    await expect(content.locator(".code-block pre code")).to_have_text("indented_code()\nline2\n")
    await expect(content.locator(".code-block .code-copy")).to_have_count(1)
    gate.open()
    await chat.wait_finished(reply_id)
    await expect(content.locator(".code-block .code-copy")).to_have_count(1)
    await assert_settled_as_rendered(page, reply_id, reply, watch)
    await page.reload()
    await chat.wait_for_socket()
    await expect(content.locator(".code-block .code-copy")).to_have_count(1)
    assert await content.locator("pre").count() == 1


# A model wrapping Chinese lines, then Japanese: line ends inside paragraphs, some between two
# of their characters (drawn as nothing), some beside English (a space)
WRAPPED_CJK = [
    "第一", "行", "\n", "第二行", "\n第", "三行。", "\n", "English", " line", "\n", "中文",
    "结束。", "\n\n", "日本", "\n", "語です", "。\nカ", "タカナ", "\n\n",
    "![图片](https://example.com/a.png)", "\n第", "五段", "\n\n",
    # a list item's and a quote's lines continued, indented (drawn so while they stream)
    "1. 第一步：", "打开文件，", "\n", "   然后", "保存。", "\n\n", "> 引用", "第一行", "\n>",
    "   引用第二行", "\n\n",
    # a blank before a line end, at the end of a piece (dropped), and two (a hard break)
    "前一段 ", "\n后一段", "\n\n", "硬换行  ", "\n下一行",
]  # fmt: skip


async def test_a_line_end_inside_a_code_span_is_kept_while_streaming(page, server):
    """A code span's line end renders as a space (CommonMark), so the page keeps it in the
    text being written, where one outside joins Chinese lines, with the next line's
    indentation. (A span across lines is given up at the line's end while it streams: drawn
    into the tail here, as it is once a later mark closes it.)"""
    chat = ChatPage(page, server)
    await chat.new_conversation()
    shown = await page.evaluate(
        """() => {
            const tail = document.createElement("div");
            tail.className = "streaming-tail";
            tail.innerHTML = "<p>前<code>甲\\n乙</code>后\\n第一\\n  第二</p>";
            document.getElementById("messages").append(tail);
            document.dispatchEvent(new CustomEvent("htmx:afterSettle", { detail: {} }));
            return tail.textContent;
        }"""
    )
    assert shown == "前甲\n乙后第一第二"


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_chinese_lines_a_model_wrapped_read_as_one_sentence_as_they_stream(
    page, server, fake_upstream, viewport, scheme, tmp_path
):
    """A line end inside a paragraph between two Chinese or Japanese characters was drawn as
    a space (Chromium does not apply CSS Text's rule that drops it), in the middle of a
    sentence. It is drawn as nothing, while the text streams too, so that nothing moves as the
    paragraph settles: what the page showed at any moment is the start of the finished reply
    (a line end at its end waits, drawn, for the character after it)."""
    await page.set_viewport_size(viewport)
    await page.emulate_media(color_scheme=scheme)
    fake_upstream.plan = streamed(WRAPPED_CJK, delay=0.12)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("写几行")
    samples = await chat.sample_states(reply_id)
    await chat.wait_finished(reply_id)
    final = (await chat.state(reply_id))["text"]
    assert final.strip() == (  # (an image, here another host's: its line end kept)
        "第一行第二行第三行。\nEnglish line\n中文结束。\n日本語です。カタカナ\n图片\n第五段\n\n"
        "第一步：打开文件，然后保存。\n\n\n引用第一行引用第二行\n\n前一段后一段\n硬换行\n下一行"
    )
    assert len({s["streaming"] for s in samples}) >= len(WRAPPED_CJK) // 2, samples

    # (the text's blocks, not their margins: line ends squeezed, and blanks before one,
    # which draw nothing)
    def lines(text: str) -> str:
        return re.sub(r"[ \t]*\n+", "\n", text)

    for sample in samples:
        shown = lines(sample["streaming"].rstrip())
        assert lines(final).startswith(shown), (sample["streaming"], final)
    await check_looks(page, tmp_path / f"wrapped-cjk-{viewport['width']}-{scheme}.png")
