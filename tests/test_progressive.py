"""Progressive rendering: settled blocks never change, and with the final tail they equal the
one-shot render, however the text is split into deltas."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chat.markdown import render_markdown
from chat.progressive import ProgressiveRenderer, RenderStep, Tail, formatted_html

WORDS = st.sampled_from(
    ["word", "**bold**", "*em*", "`code`", "[link](https://example.com)", "<b>x</b>", "a_b", "1."]
)


def _line(words: list[str]) -> str:
    return " ".join(words)


INLINE = st.lists(WORDS, min_size=1, max_size=5).map(_line)
LANG = st.sampled_from(["", "python", "js", "nosuchlanguage"])
FENCE = st.sampled_from(["```", "~~~", "````"])

BLOCKS = st.one_of(
    INLINE,  # a paragraph
    st.lists(INLINE, min_size=2, max_size=3).map("\n".join),  # a paragraph of lines
    st.tuples(st.integers(1, 4), INLINE).map(lambda t: "#" * t[0] + " " + t[1]),
    INLINE.map(lambda s: s + "\n---"),  # setext heading
    st.just("***"),
    st.lists(INLINE, min_size=1, max_size=3).map(lambda xs: "\n".join("- " + x for x in xs)),
    st.lists(INLINE, min_size=1, max_size=3).map(
        lambda xs: "\n".join(f"{i}. {x}" for i, x in enumerate(xs, 1))
    ),
    st.lists(INLINE, min_size=1, max_size=3).map(lambda xs: "\n\n".join("- " + x for x in xs)),
    INLINE.map(lambda s: f"- {s}\n  - nested {s}\n\n  continued"),
    st.lists(INLINE, min_size=1, max_size=3).map(
        lambda xs: "| a | b |\n|---|---|\n" + "\n".join(f"| {x} | y |" for x in xs)
    ),
    st.lists(INLINE, min_size=1, max_size=3).map(lambda xs: "\n".join("> " + x for x in xs)),
    # a quote's table, after its paragraph or first in it
    st.tuples(st.sampled_from(["> intro\n", ""]), st.lists(INLINE, min_size=1, max_size=3)).map(
        lambda t: t[0] + "> | a | b |\n> |---|---|\n" + "\n".join(f"> | {x} | y |" for x in t[1])
    ),
    st.tuples(FENCE, LANG, st.lists(INLINE, max_size=3)).map(
        lambda t: f"{t[0]}{t[1]}\n" + "\n\n".join(t[2]) + f"\n{t[0]}"
    ),
    st.tuples(FENCE, st.lists(INLINE, max_size=2)).map(
        lambda t: (
            f"{t[0]}\n# not a heading\n\n- not a list\n{t[0][0] * 2}\n"
            + "\n".join(t[1])
            + f"\n{t[0]}"
        )
    ),
    st.lists(INLINE, min_size=1, max_size=2).map(lambda xs: "\n\n".join("    " + x for x in xs)),
    # Steps with code: the fence inside the item, or (indented less than the item's content)
    # a top-level block that ends the list; a tab-indented fence line inside a code block.
    st.tuples(
        st.sampled_from(["1. ", "1.  ", "10. ", "- ", "-   ", "9) "]),
        st.sampled_from(["", " ", "  ", "   ", "    ", "     "]),
        INLINE,
        st.sampled_from(["", "2. ", "- ", "11. "]),
    ).map(lambda t: f"{t[0]}{t[2]}\n{t[1]}```sh\n{t[1]}{t[2]}\n{t[1]}```\n{t[3]}{t[2]}"),
    st.tuples(FENCE, INLINE).map(lambda t: f"{t[0]}\n{t[1]}\n\t{t[0]}\n# in the code\n{t[0]}"),
    # link reference definitions (render as nothing), one with a title on its next lines
    st.sampled_from(
        [
            *("[r]: https://example.com/", "[r]: /u\n'a title\non lines'", "[s]:\n/u"),
            *("[t]: /u 'a title\non lines'", "[u\nv]: /u", "[w]: /u\n(title)"),
            *("[x]: /u 'a\n===\nb'", "[a\\]b]:\n/u", "[Note]: not one\nmore"),
        ]
    ),
)
# Lists item by item: markers, item bodies (more lines, a lazy line, paragraphs, nested
# lists, code, empty) and the gaps between items (a blank line makes the list loose).
ITEM_BODIES = st.one_of(
    INLINE,
    INLINE.map(lambda s: f"{s}\n   {s}"),
    INLINE.map(lambda s: f"{s}\nlazy {s}"),
    INLINE.map(lambda s: f"{s}\n\n   {s}"),
    INLINE.map(lambda s: f"{s}\n   - nested {s}\n   - nested"),
    INLINE.map(lambda s: f"{s}\n   - nested\n\n     {s}"),
    INLINE.map(lambda s: f"{s}\n   ```sh\n   {s}\n\n   ```"),
    INLINE.map(lambda s: f"{s}\n   ```sh\n   {s}\n   ```\n   after *{s}*\n lazy {s}"),
    INLINE.map(lambda s: f"{s}\n\n   ```sh\n   {s}\n   ```\n\n   after *{s}*"),  # (loose)
    INLINE.map(lambda s: f"{s}\n\n   {s}\n   {s}\n\n   - {s}"),  # (a loose item's paragraph)
    INLINE.map(lambda s: f"{s}\n\n   - {s}\n   - {s}\n\n     {s}"),  # (its points)
    INLINE.map(lambda s: f"{s}\n   {s}\nlazy {s}\n   ```sh\n   {s}\n   ```"),
    INLINE.map(lambda s: f"{s}\n   {s}\n   - nested {s}\n   - nested"),
    INLINE.map(lambda s: f"{s}\n \n\n  ```\n  {s}\n  ```"),
    INLINE.map(lambda s: f"{s}\n   > {s}"),
    # a table in it, right after its first line or after a blank one; a pipe line of its text
    INLINE.map(lambda s: f"{s}\n   | a | b |\n   |---|---|\n   | {s} | y |"),
    INLINE.map(lambda s: f"{s}\n\n   | a | b |\n   | - | :-: |\n   | x | {s} |\n   | z |"),
    INLINE.map(lambda s: f"{s}\n   | {s}\n   {s}"),
    st.just(""),
)
LIST_ITEMS = st.tuples(
    st.sampled_from(["- ", "* ", "1. ", "3) "]),
    st.lists(st.tuples(ITEM_BODIES, st.sampled_from(["\n", "\n", "\n\n"])), min_size=1),
    st.booleans(),  # the marker changes at the last item: another list
).map(
    lambda t: "".join(
        (
            ("+ " if t[0] in ("- ", "* ") else "4. ")
            if t[2] and i == len(t[1]) - 1 and i
            else (t[0] if not t[0][0].isdigit() else f"{i + int(t[0][0])}{t[0][1:]}")
        )
        + body
        + gap
        for i, (body, gap) in enumerate(t[1][:8])
    ).rstrip("\n")
)
BLOCKS = st.one_of(BLOCKS, LIST_ITEMS)
# (a blank line, then a blank before the block: a model's token after a blank line, " The")
SEPARATORS = st.sampled_from(["\n\n", "\n", "\n\n\n", "\r\n\r\n", "\n \n", "\n\n ", "\n\n   "])


@st.composite
def documents(draw: st.DrawFn) -> str:
    blocks = draw(st.lists(BLOCKS, min_size=1, max_size=7))
    text = blocks[0]
    for block in blocks[1:]:
        text += draw(SEPARATORS) + block
    if draw(st.booleans()):
        text += "\n"
    if draw(st.booleans()):  # cut off, as an interrupted reply is
        text = text[: draw(st.integers(1, len(text)))]
    return text


@st.composite
def split(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=40)))
    pieces, start = [], 0
    for cut in [*cuts, len(text)]:
        if cut > start:
            pieces.append(text[start:cut])
            start = cut
    return pieces


@dataclass
class Page:
    """The settled blocks as a page has them after each step, and what it was sent."""

    html: str = ""
    sent: list[str] = field(default_factory=list)  # the blocks sent, in order
    redrawn: list[str] = field(default_factory=list)  # lists drawn again
    shown: list[str] = field(default_factory=list)  # after each step, without an open list's end

    def apply(self, step: RenderStep, open_list: str) -> None:
        """Apply a step to a page whose last block is `open_list`, a list still open."""
        if step.list_html:
            assert open_list and self.html.endswith(open_list)
            # Whole items of one list, or one list: what htmx can put in or in place of it
            depth, closed = 0, []
            for tag in re.finditer(r"<(/?)[ou]l\b", step.list_html):
                depth += -1 if tag.group(1) else 1
                assert depth >= 0, step.list_html
                if depth == 0:
                    closed.append(tag.end())
            assert depth == 0, step.list_html
            if step.list_redrawn:  # one list, from its start to its end
                assert step.list_html[:3] in ("<ul", "<ol") and len(closed) == 1, step.list_html
            head = self.html[: -len(open_list)]
            if step.list_redrawn:
                self.html = head + step.list_html
                self.redrawn.append(step.list_html)
            else:
                close = open_list[open_list.rindex("</") :]
                self.html = head + open_list[: -len(close)] + step.list_html + close
                self.sent.append(step.list_html)
        if step.blocks_html:
            self.html += step.blocks_html
            self.sent.append(step.blocks_html)


def stream(pieces: list[str]) -> tuple[Page, str, ProgressiveRenderer]:
    """The pieces fed one by one, and ended; checks at each step that the page as changed
    by the steps is the renderer's own state."""
    renderer, page = ProgressiveRenderer(), Page()
    for piece in pieces:
        open_list = renderer.open_list_html
        page.apply(renderer.feed(piece), open_list)
        assert page.html == renderer.blocks_html
        open_list = renderer.open_list_html
        close = open_list[open_list.rindex("</") :] if open_list else ""
        page.shown.append(page.html.removesuffix(close))
    open_list = renderer.open_list_html
    end, whole = renderer.finish()
    page.apply(end, open_list)
    assert page.html == renderer.blocks_html
    assert not renderer.diverged  # every step said how the page's list changed
    return page, whole, renderer


def fed_by_character(text: str) -> ProgressiveRenderer:
    """A renderer fed `text` one character at a time."""
    renderer = ProgressiveRenderer()
    for character in text:
        renderer.feed(character)
    return renderer


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_settled_blocks_and_the_final_tail_equal_the_one_shot_render(data: st.DataObject) -> None:
    text = data.draw(documents())
    pieces = data.draw(split(text))
    page, whole, renderer = stream(pieces)
    one_shot = render_markdown(text)
    assert whole == one_shot
    if whole != renderer.blocks_html:
        # A reference defined after a block that uses it: the page is drawn again whole
        assert "]:" in text
        return
    assert page.html == one_shot
    # Each block and list item was sent once, and what the page showed stays (a list's end
    # moves with its items), but for a list drawn again when a blank line made it loose.
    for redrawn in page.redrawn:
        assert "<li>\n<p>" in redrawn, redrawn
    if not page.redrawn:  # what the page showed stays as it was
        assert all(one_shot.startswith(shown) for shown in page.shown)
        assert sum(len(piece) for piece in page.sent) <= len(one_shot) + 6 * len(page.sent)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_the_state_at_any_point_shows_every_character_once(data: st.DataObject) -> None:
    text = data.draw(documents())
    renderer = ProgressiveRenderer()
    for piece in data.draw(split(text)):
        renderer.feed(piece)
        tail = renderer.tail
        if tail.kind == "text":
            assert renderer.text[renderer.settled :] == tail.text
        elif tail.kind == "head":  # its line (the delimiter row being written after it not)
            shown = renderer.text[renderer.settled :]  # (after a paragraph's lines, rendered)
            assert shown.startswith(tail.text) or (tail.head_before and f"\n{tail.text}" in shown)
        elif tail.item_list_written or tail.quote_rendered or tail.item_rendered:
            # (lines before its last rendered; the last line's text without its line end:
            # "- word\n   | word\n   word\n" draws "word", after the item's first lines)
            assert renderer.text.rstrip(" \t\n").endswith(tail.text)
        else:
            assert renderer.text.endswith(tail.text)
        assert (
            renderer.text.replace("\r", "")
            == text[: len(renderer.text)].replace("\r\n", "\n").replace("\r", "\n")
            or "\r" in text
        )


@settings(max_examples=300, deadline=None)
@given(text=documents())
def test_fed_line_by_line_the_state_is_that_of_the_text_fed_at_once(text: str) -> None:
    """The lines a block's fast path takes without a parse must be those a parse would leave
    in it: else a block stays unsettled, or a code block shows as text, while it streams."""
    fed_line_by_line_as_at_once(text)


# A label or title that may go on over a heading's underline: fed line by line, the heading
# settles before the line that makes them a definition comes (the page is drawn again whole
# at the end, and the reply saved as the one-shot render), hypothesis: "[\n===\n#x\nx]: /u".
LABEL_OVER_UNDERLINE = re.compile(r"\[(?s:.*)\n {0,3}(=+|-+)[ \t]*\n(?s:.*)\]:")


def fed_line_by_line_as_at_once(text: str) -> ProgressiveRenderer:
    """Feed `text` line by line, checking after each line that the renderer stands where one
    fed the same text at once stands (where the tail starts, and its kind); the renderer."""
    renderer, fed = ProgressiveRenderer(), ""
    for line in re.findall(r"[^\n]*\n|[^\n]+$", text):
        renderer.feed(line)
        fed += line
        at_once = ProgressiveRenderer()
        at_once.feed(fed)
        assert (renderer.settled, renderer.tail.kind) == (at_once.settled, at_once.tail.kind), fed
    return renderer


def test_a_link_reference_definition_leaves_the_tail_once_a_block_follows_it() -> None:
    """A definition renders as nothing. Fed a character at a time, it stayed in the tail's
    text, before the paragraph after it, until that paragraph settled (fed at once, it
    settled with the block before it)."""
    for text in (
        "Intro.\n\n[r]: https://example.com/\nSee [r] now.\n",
        "[r]: https://example.com/\n# Heading\n- item\n",
        # its label with an escaped bracket, on a line or two; its destination on its next line
        "[a\\]b]:\n/u\npara\n",
        "[a\\]b\nc]: /u\npara\n",
        "- a\n- b\n\n[s]:\n/u\npara\n",
    ):
        by_character, at_once = ProgressiveRenderer(), ProgressiveRenderer()
        for character in text:
            by_character.feed(character)
        at_once.feed(text)
        assert by_character.settled == at_once.settled, text
        assert by_character.tail == at_once.tail and "]:" not in by_character.tail.text
        assert by_character.finish()[1] == render_markdown(text)
    # What may yet turn out a definition (whose title goes on over a heading's underline) is
    # held as text; what cannot is not (nor the list before it: it has ended)
    for text, tail in (
        ("[t]: /u 'a\n===\nb'\n", "[t]: /u 'a\n===\nb'\n"),
        ("[u\n===\nv]: /u\n", "[u\n===\nv]: /u\n"),
        ("- a\n- b\n\n[Note]: read this\nand more\n", "[Note]: read this\nand more\n"),
        ("- a\n- b\n\n[s]:\n", "[s]:\n"),
    ):
        by_line, at_once = ProgressiveRenderer(), ProgressiveRenderer()
        for line in text.splitlines(keepends=True):
            by_line.feed(line)
        at_once.feed(text)
        assert by_line.tail == at_once.tail == Tail("text", tail), text
        assert by_line.blocks_html == at_once.blocks_html
        assert by_line.finish()[1] == render_markdown(text)
    # A label over a heading's underline and the lines after it: drawn as those blocks while
    # it streams (it is settled by then), saved as the one-shot render (it saved the heading)
    text = "[u\n--\n/u\nc]: /u\n> q\n(a"
    renderer = fed_by_character(text)
    assert (
        renderer.finish()[1]
        == render_markdown(text)
        == "<blockquote>\n<p>q\n(a</p>\n</blockquote>\n"
    )
    # The next line may still be its title: it stays until that is known
    renderer = ProgressiveRenderer()
    renderer.feed("[r]: /u\n'a title\n")
    assert renderer.tail.text.startswith("[r]: /u")
    renderer.feed("on lines'\nSee [r].\n")
    assert renderer.tail.text == "See [r].\n"
    assert renderer.finish()[1] == render_markdown("[r]: /u\n'a title\non lines'\nSee [r].\n")


# Runs of link reference definitions (and what may join or end them): titles and labels on
# lines of their own, duplicate labels, blank lines, text that uses them, other blocks.
DEFINITIONS = st.sampled_from(
    [
        *("[r]: https://example.com/", "[r]: /u\n'a title\non lines'", "[s]:\n/u"),
        *("[t]: /u 'a title\non lines'", "[u\nv]: /u", "[w]: /u\n(title)", '[y]: /y "t"'),
        *("[x]: /u 'a\n===\nb'", "[a\\]b]:\n/u", "[Note]: not one\nmore", "[z]:  <b c>"),
        *('[q]: /q\n"t', "[p\n[o]: /o", "[n]: /n 'x\n\n'", "   [m]: /m", "    [l]: /l"),
        *("[k]: /k\n[k]: /k2", "See [r] and [s] and [y].", "[r]", "[", "]: /u", "# h"),
        *("---", "- [r]: /u", "> [v]: /v", "| a |\n|---|\n| [r] |"),
    ]
)


@st.composite
def definition_runs(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.one_of(DEFINITIONS, DEFINITIONS, BLOCKS), min_size=1, max_size=12))
    text = parts[0]
    for part in parts[1:]:
        text += draw(st.sampled_from(["\n", "\n", "\n\n", "\n \n"])) + part
    return text + draw(st.sampled_from(["", "\n"]))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_runs_of_definitions_stream_to_the_one_shot_render(data: st.DataObject) -> None:
    """Definitions settle (as nothing) as the next begins: the page and the saved reply are
    still the one-shot render, and fed line by line the renderer stands where it stands fed
    the same text at once (a duplicate label, or a title held before its end, settled less
    fed at once, hypothesis)."""
    text = data.draw(definition_runs())
    page, whole, renderer = stream(data.draw(split(text)))
    assert whole == render_markdown(text)
    if whole == renderer.blocks_html:
        assert page.html == whole
    if not LABEL_OVER_UNDERLINE.search(text):
        fed_line_by_line_as_at_once(text)


def test_definitions_settle_as_the_next_begins() -> None:
    """Definitions alone make no block, so nothing settled and every line parsed them all
    again (quadratic: 400 took 1.6 s, 10 ms a delta at the end). Each now settles, as
    nothing, once the next one begins; the last stays in the tail, where its title may
    follow."""
    # A lone "[" may start a label that goes on over lines: it is held as such, so that fed
    # line by line the renderer stands where it stands fed at once (a second read found it).
    for text in ("[\nb]: /b\n[a]: /a\n", "[\nb]: /b\npara\n", "[a]: /a\n[\nb]: /b\n[c]: /c\n"):
        assert fed_line_by_line_as_at_once(text).finish()[1] == render_markdown(text)
    renderer = ProgressiveRenderer()
    renderer.feed('[a]: /a "A"\n[b]: /b\n\n[a]: /again\n[c]: /c\n')
    assert renderer.tail == Tail("text", "[c]: /c\n")
    renderer.feed("'the title of c'\nSee [a], [b] and [c].\n")
    assert renderer.tail.text == "See [a], [b] and [c].\n"
    assert renderer.finish()[1] == render_markdown(renderer.text)
    assert 'href="/a" title="A"' in renderer.finish()[1]
    assert 'href="/c" title="the title of c"' in render_markdown(renderer.text)
    # A blank line ends the last one too (its title can no longer follow): white space lines
    # after it parsed it again each, and fed at once it settled only once a block followed.
    renderer = ProgressiveRenderer()
    renderer.feed("[r]: /u\n  \n")
    assert renderer.settled == len(renderer.text) and renderer.tail.text == ""
    text = "[r]: https://example.com/\n\n[s]:\n/u"  # hypothesis
    assert fed_line_by_line_as_at_once(text).finish()[1] == render_markdown(text)


@pytest.mark.parametrize(
    "text",
    [
        # a lazy line after a paragraph that a line made a link reference definition: nothing
        # goes on lazily then (a second read)
        "- [a]:\n/u\nb\n",
        "> [a]:\n/u\nb\n",
        "- [a\nb]: /u\nc\n",
        "- a\n- [b]:\n/u\nc\n  ```py\n  x = 1\n  ```\n",
        # a quoted line one quote deeper starts a quote there: indented code, a definition
        ">y\n>>     x\nc\n",
        ">a\n> > \t'\ne\n",
        ">x\n>>  \tx\nx\n",
        "> a\n>> [b]: /u\nc\n",
        # an empty quote takes in a white-space line: the quote after it is another
        ">\n \n>\n",
        # an item with a tab after its marker over a delimiter row stays an item (it was saved
        # as a table)
        "-\n-\t|x\n-|-",
    ],
)
def test_a_line_taken_without_a_parse_is_one_a_parse_leaves_in_the_open_block(text: str) -> None:
    assert fed_line_by_line_as_at_once(text).finish()[1] == render_markdown(text)
    page, whole, renderer = stream([text])
    assert whole == page.html == render_markdown(text)


def test_a_delimiter_row_after_an_items_lazy_line_ends_the_list_as_it_streams() -> None:
    """A line indented to the item's content continued the list without a parse; a table's
    delimiter row there makes the lazy line before it a table's head, outside the list."""
    for first, second in (("1. one\n| h |\n", "   | - |\n"), ("- one\nlazy | x\n", "  --|--\n")):
        by_line, at_once = ProgressiveRenderer(), ProgressiveRenderer()
        by_line.feed(first)
        by_line.feed(second)
        at_once.feed(first + second)
        assert (by_line.settled, by_line.tail) == (at_once.settled, at_once.tail)
        assert by_line.tail.kind == "table" and "<li>one</li>" in by_line.blocks_html
        assert by_line.finish()[1] == render_markdown(first + second)


def test_a_definition_in_rows_rendered_ahead_is_not_taken_as_seen() -> None:
    """The lines after an open table are rendered under its head to see if they are rows;
    a definition among them (the table has ended) was added to the references seen, and the
    tail drew "[w]" as a link, which a renderer given the text at once does not."""
    from chat.fragments import CONTENT, tail_html

    # (once a definition has settled: a copy of the env shared the references then)
    first, second = "[r]: /u\n\n| a |\n|---|\n| 1 |\n", "    code\n[w]: /u\n(t"
    by_piece, at_once = ProgressiveRenderer(), ProgressiveRenderer()
    by_piece.feed(first)
    by_piece.feed(second)
    at_once.feed(first + second)
    assert tail_html(CONTENT, 5, by_piece.tail) == tail_html(CONTENT, 5, at_once.tail)
    assert "<a " not in tail_html(CONTENT, 5, by_piece.tail)


def test_a_tab_indented_fence_line_does_not_close_a_code_block() -> None:
    """A tab indents four columns: "\t```" is code. Parsed with the opening line (one frame, a
    reload, a continuation) it closed the block, and the line after it showed (and was saved)
    as a heading."""
    first, second = "```go\ns := `\n\t```\n", "`\n# not a heading\n```\n"
    page, whole, _ = stream([first, second])
    assert "<h1>" not in page.html
    assert page.html == whole == render_markdown(first + second)


def test_a_code_block_under_a_numbered_step_is_code_as_it_streams() -> None:
    """A fence indented less than its item's text ends the list: a top-level code block. The
    list's fast path took every indented line as the item's, so it streamed as raw text."""
    for text in [
        "1. Install it:\n  ```bash\n  pip install chatsite\n",
        "10. Build it:\n   ```sh\n   make\n",
        "-   Run it:\n  ```sh\n  make run\n",
    ]:
        renderer = ProgressiveRenderer()
        for line in text.splitlines(keepends=True):
            renderer.feed(line)
        assert renderer.tail.kind == "code", text
        assert "<ol" in renderer.blocks_html or "<ul" in renderer.blocks_html


def test_a_rule_with_a_tab_after_list_items_settles_the_list_as_it_streams() -> None:
    """ "- -\t-" is a thematic break, not an item: the list before it is complete."""
    renderer = ProgressiveRenderer()
    for line in ["- a\n", "- -\t-\n"]:
        renderer.feed(line)
    at_once = ProgressiveRenderer()
    at_once.feed("- a\n- -\t-\n")
    assert renderer.settled == at_once.settled == len("- a\n- -\t-\n")


def test_blocks_settle_while_the_text_streams() -> None:
    renderer = ProgressiveRenderer()
    steps = [
        renderer.feed(piece)
        for piece in ["## Plan\n", "\n- one\n- two\n", "\nSome text", " here.\n\n| a |\n|---|\n"]
    ]
    assert "<h2>Plan</h2>" in steps[0].blocks_html  # a heading settles when its line ends
    # An item that another follows settles; the last one is the tail (a list may go on after
    # a blank line).
    assert steps[1].blocks_html == "<ul>\n<li>one</li>\n</ul>\n"
    # A line after a blank line that the list cannot take: the list is done as it begins
    assert steps[2].list_html == "<li>two</li>\n" and steps[2].blocks_html == ""
    assert not steps[2].list_redrawn and steps[2].tail_replaced
    assert "<p>Some text here.</p>" in steps[3].blocks_html  # a blank line ends a paragraph
    # A table whose head came is drawn as one in the tail (its row being written is empty)
    assert renderer.tail == Tail(
        "table", "", table=render_markdown("| a |\n|---|")[:-9], cells=("",), aligns=("",)
    )


def test_a_list_settles_item_by_item_as_each_next_item_begins() -> None:
    """A top-level list was one block: a numbered answer showed as raw text ("1. **Install**")
    until the whole list ended. Each item now settles, sent once, as the next one begins; the
    last one is the tail."""
    pieces = [
        "Steps:\n\n1. Install **chatsite**\n",
        "2. Run",  # the next item has begun: the one before it settles
        ' it:\n   ```python\n   print("hi")\n   ```\n',
        "3. Log in",
        " as *demo*\n",
        "\nDone.\n",
    ]
    renderer = ProgressiveRenderer()
    steps, tails = [], []
    for piece in pieces:
        steps.append(renderer.feed(piece))
        tails.append(renderer.tail)
    assert steps[0].blocks_html == "<p>Steps:</p>\n"
    assert steps[1].blocks_html == "<ol>\n<li>Install <strong>chatsite</strong></li>\n</ol>\n"
    # The open item is the tail: the list's next item, its text as written after its marker.
    assert steps[1].tail_replaced and tails[1] == Tail("item", "Run", number="2")
    assert tails[2] == Tail("item", 'Run it:\n   ```python\n   print("hi")\n   ```\n', number="2")
    assert steps[2].list_html == steps[2].blocks_html == ""  # an item's own lines settle nothing
    assert steps[3].list_html.startswith('<li>Run it:<div class="code-block">')
    assert '<span class="' in steps[3].list_html  # its code, highlighted
    assert not steps[3].list_redrawn and tails[3] == Tail("item", "Log in", number="3")
    assert steps[4].list_html == ""
    assert steps[5].list_html == "<li>Log in as <em>demo</em></li>\n"  # the list is done
    assert not steps[5].list_redrawn and steps[5].blocks_html == ""
    end, whole = renderer.finish()
    assert end.blocks_html == "<p>Done.</p>\n"
    assert whole == renderer.blocks_html == render_markdown("".join(pieces))


def test_a_list_that_a_blank_line_makes_loose_is_drawn_again_once() -> None:
    renderer = ProgressiveRenderer()
    for piece in ["- first\n", "- second\n"]:
        renderer.feed(piece)
    assert renderer.open_list_html == "<ul>\n<li>first</li>\n</ul>\n"
    step = renderer.feed("\n- third\n")  # a blank line between items: the list is loose
    assert step.list_redrawn
    assert step.list_html == "<ul>\n<li>\n<p>first</p>\n</li>\n<li>\n<p>second</p>\n</li>\n</ul>\n"
    step = renderer.feed("- fourth\n")
    assert not step.list_redrawn and step.list_html == "<li>\n<p>third</p>\n</li>\n"
    end, whole = renderer.finish()
    assert end.list_html == "<li>\n<p>fourth</p>\n</li>\n" and not end.list_redrawn
    assert whole == render_markdown("- first\n- second\n\n- third\n- fourth\n")


def test_lists_stream_as_they_render_with_a_reference_or_blank_lines_between_items() -> None:
    """Found by a second read: a link reference after a list ended it, but the list's last
    item was taken to go on, and the next list's first item was added to it (the page nested
    one list in the other); a loose item without a paragraph of its own, and a line of
    non-breaking spaces (not blank to markdown), made the list look tight, then loose (or
    the other way round), drawn again when it ended."""
    for pieces in [
        ["- a\n", "- b\n", "\n", "[1]: https://example.com/\n", "- c", "\n", "\nDone.\n"],
        ["- a\n", "- b\n", "\n", "[1]: https://example.com/\n", "- c", "\n- d\n\nSee [r].\n"],
        ["- # A\n", "\n", "  # B\n", "- c\n", "- d\n", "\n", "end\n"],
        ["- # one\n\n- # two\n- three\n", "\nend"],
        ["- a\n", "\u00a0\n", "- b\n", "- c\n"],
        ["1. a\n", "2. b\n", "\u0663", ". c"],  # not a digit to markdown: b's own line
    ]:
        page, whole, _ = stream(pieces)
        assert page.html == whole == render_markdown("".join(pieces)), pieces
        assert page.redrawn == [], pieces


def test_a_line_that_may_become_an_item_settles_nothing_before_it_is_one() -> None:
    """A nested item, an item's own line and a number that is not a marker leave the item
    open; a rule after items ends the list."""
    for line in ["  - nested", "  more of it", "3.14 is pi", "-", "- "]:
        renderer = ProgressiveRenderer()
        renderer.feed("- a\n")
        renderer.feed("- b\n")
        step = renderer.feed(line)
        tail = renderer.tail
        assert step.list_html == "" and tail.kind == "item", line
        if line == "  - nested":  # the item's first line, then the list nested in it
            assert (tail.item_intro, tail.item_list, tail.text) == ("b", "ul", "nested")
            continue
        assert tail.text + renderer.held == "b\n" + line, line  # a lone marker is held back
    renderer = ProgressiveRenderer()
    for piece in ["- a\n", "- b\n", "- -", " -\n", "after"]:
        renderer.feed(piece)
    end, whole = renderer.finish()
    assert whole == renderer.blocks_html == render_markdown("- a\n- b\n- - -\nafter")


def test_an_open_code_fence_is_a_code_block_from_its_first_line() -> None:
    renderer = ProgressiveRenderer()
    assert "<p>Intro.</p>" in renderer.feed("Intro.\n\n```py").blocks_html
    assert renderer.tail.kind == "text"
    step = renderer.feed("thon\nprint(1)\n")
    assert step.tail_replaced
    assert renderer.tail.kind == "code" and renderer.tail.language == "python"
    assert renderer.tail.text == "print(1)\n"
    step = renderer.feed("\n# not a heading\n")
    assert not step.tail_replaced and step.appended == "\n# not a heading\n"
    step = renderer.feed("```\nafter")
    assert step.tail_replaced
    assert '<div class="code-lang">python</div>' in step.blocks_html
    assert '<span class="nb">print</span>' in step.blocks_html  # highlighted once closed
    assert renderer.tail.kind == "text" and renderer.tail.text == "after"


def test_a_reply_cut_inside_a_fence_saves_a_closed_code_block() -> None:
    renderer = ProgressiveRenderer()
    renderer.feed("```python\nx = 1\n")
    end, whole = renderer.finish()
    assert whole == render_markdown("```python\nx = 1\n")
    assert whole.count("<pre>") == 1 and "</pre>" in end.blocks_html


def test_a_reference_defined_later_is_fixed_by_the_final_render() -> None:
    renderer = ProgressiveRenderer()
    settled = renderer.feed("See [the docs][d].\n\nMore.\n").blocks_html
    assert "[the docs][d]" in settled  # unknown while streaming
    renderer.feed("\n[d]: https://example.com\n")
    _, whole = renderer.finish()
    assert whole == render_markdown("See [the docs][d].\n\nMore.\n\n[d]: https://example.com\n")
    assert 'href="https://example.com"' in whole


def test_crlf_split_between_deltas_is_one_line_end() -> None:
    renderer = ProgressiveRenderer()
    for piece in ["# A\r", "\nb\r", "\r", "\nc"]:
        renderer.feed(piece)
    assert renderer.text == "# A\nb\n\nc"
    assert renderer.blocks_html == "<h1>A</h1>\n<p>b</p>\n"


def test_hostile_html_is_escaped_in_settled_blocks() -> None:
    renderer = ProgressiveRenderer()
    step = renderer.feed(
        '<script>alert(1)</script>\n\n![x](https://evil.example/x.png)\n\n<a hx-get="/x">y</a>\n\nz'
    )
    assert "<script" not in step.blocks_html
    assert not re.search(r"<[^>]*hx-get", step.blocks_html)  # escaped text, not an attribute
    assert "<img" not in step.blocks_html or "evil.example" not in step.blocks_html


def growth(run: Callable[[int], float], size: int) -> float:
    """How much longer `run` takes for four times the size (best of three each: CPU time of
    this process, so other work on the machine hardly counts)."""
    return min(run(size * 4) for _ in range(3)) / min(run(size) for _ in range(3))


def test_a_giant_code_block_costs_time_linear_in_its_size() -> None:
    """An open fence is scanned line by line, not parsed again on every delta."""

    def feed_code(lines: int) -> float:
        renderer = ProgressiveRenderer()
        renderer.feed("```python\n")
        started = time.process_time()
        for i in range(lines):
            renderer.feed(f"value_{i} = {i} * 2\n")
        return time.process_time() - started

    assert growth(feed_code, 2_000) < 11  # linear: ~4 (up to 9 when busy)


def test_a_giant_paragraph_costs_time_linear_in_its_size() -> None:
    """Lines that only continue the open paragraph are not parsed again."""

    def feed_lines(lines: int) -> float:
        renderer = ProgressiveRenderer()
        renderer.feed("# Heading\n\n")
        started = time.process_time()
        for i in range(lines):
            renderer.feed(f"word{i} goes on, and on, in one long paragraph\n")
        return time.process_time() - started

    assert growth(feed_lines, 1_000) < 11  # linear: ~4 (up to 9 when busy)


def test_long_tables_lists_and_quotes_cost_time_linear_in_their_size() -> None:
    """Rows, items and quoted lines that can only continue the open block are not parsed
    again on every line."""
    shapes = {
        "table": ("| a | b |\n|---|---|\n", "| row {i} | value {i} |\n"),
        # rows that do not start with a pipe were parsed again with the whole table
        "table without outer pipes": ("a | b\n--|--\n", "row {i} | value {i}\n"),
        # blocks that might have turned out link reference definitions were parsed again
        "table with a bracket": ("[a | b\n|---|---|\n", "| row {i} | value {i} |\n"),
        "paragraph after a definition": ("[r]: /u\n(a remark\n", "goes on {i} and on\n"),
        "paragraph like a definition": ("[Note]: read this\n", "goes on {i} and on\n"),
        # link reference definitions alone made no block, so nothing settled: every line
        # parsed them all again
        "definitions": ("", '[ref{i}]: https://example.com/{i} "Title {i}"\n'),
        "definitions and blank lines": ("", "[ref{i}]: /u/{i}\n\n"),
        "list": ("", "- item {i} with **some** words\n  and a second line\n"),
        "numbered": ("", "{i}. item with words\n"),
        "quote": ("", "> quoted line {i} goes on\n"),
        # lines that start no block, but start with a mark, a hash or a number, and lazy
        # lines of an item's or a quote's paragraph, were parsed again with the whole block
        "paragraph of marks": ("", "**Line {i}:** `code` and #{i}\n"),
        "paragraph of indented lines": ("Text\n", "      indented {i}\n\tand a tab\n"),
        "lazy lines of an item": ("1. Step\n", "lazy line {i}\n  indented {i}\n"),
        "lazy lines of a nested item": ("- a\n  - b\n", "lazy {i}\n[l{i}]: /u\n"),
        "lazy lines of a quote": ("> Quote\n", "lazy line {i}\n> **quoted** {i}\n"),
        "lazy lines of a quoted item": ("> - item\n", "lazy {i}\n\tx | y {i}\n"),
        "indented code": ("", "    code line {i}\n\tcode {i}\n"),
        # rows without a delimiter row are a paragraph; blank lines in indented code and in a
        # loose item, white space after definitions, and a quote in a quote, were parsed
        # again with the whole block
        "rows of a paragraph": ("Text\n", "| cell {i} | cell |\n  | indented | {i} |\n"),
        # tables right after a paragraph's line, and a paragraph of lines with pipes
        "tables after paragraphs": ("", "Intro {i}:\n| a | b |\n|---|---|\n| {i} | 2 |\n\n"),
        "a paragraph's pipe lines": ("Text\n| a |\n", "line {i}\n| cell {i} | cell |\n"),
        "indented code with blank lines": ("", "    code line {i}\n\n  \n"),
        "a loose item's paragraphs": ("1. Step\n", "\n   paragraph {i}\n   \t and a tab\n"),
        "definitions and white space": ("[r]: /u\n", "  \n"),
        "a quote in a quote": ("> Quote\n", ">> inner {i}\nlazy {i}\n> > more\n"),
        "code in an item": ("1. Step:\n   ```sh\n", "   code line {i} **x**\n\n"),
        # an item's first paragraph, looked at for its code or its points after it
        "an item's paragraph": ("1. Step\n", "   line {i} of **it**\n"),
        "an item's paragraph of lazy lines": ("- Step\n", "line {i} of it\n"),
        # (a second read: each new paragraph rendered those before it again; a blank line
        # with a tab drew the quote as text, then as the quote; an item's blank lines were
        # looked at again for its code at each line)
        "a quote's paragraphs": ("", "> para {i} **b**\n>\n"),
        "a quote's blank lines with a tab": ("> a\n", ">\t\n> b {i}\n"),
        "an item's blank lines": ("1. Step\n", "   \n"),
    }
    for name, (head, line) in shapes.items():

        def feed(lines: int, head: str = head, line: str = line) -> float:
            renderer = ProgressiveRenderer()
            renderer.feed(head)
            started = time.process_time()
            for i in range(1, lines + 1):
                renderer.feed(line.format(i=i))
                renderer.tail  # noqa: B018  (read after each delta, as a stream's frames are)
            return time.process_time() - started

        assert growth(feed, 300) < 11, name  # linear: ~4 (up to 9 when busy)


@pytest.mark.parametrize("head", ["> a\n> - ", "- a\n  - b\n    - "])
def test_a_line_with_marks_in_a_block_drawn_as_it_renders_costs_time_linear_in_it(
    head: str,
) -> None:
    """The line being written of a quote's point, or of a point's point, with marks: each
    delta drew the whole line anew, formatted (a second read: 2,000 characters of "*a "
    took 2.2 s, 18 times 500's), and sent it whole. Drawn formatted up to 400 characters."""

    def feed(size: int) -> float:
        text = head + "*a " * (size // 3)
        renderer = ProgressiveRenderer()
        started = time.process_time()
        for i in range(0, len(text), 4):
            renderer.feed(text[i : i + 4])
            renderer.tail  # noqa: B018  (read after each delta, as a stream's frames are)
        return time.process_time() - started

    assert growth(feed, 450) < 11  # linear: ~4; quadratic: ~16


@pytest.mark.parametrize(
    ("head", "run"),
    [
        ("- a\n", " "),  # a blank line under an item (a regular expression backtracked)
        ("Intro\n\n", "- "),  # a list's first item or a rule, perhaps
        ("Intro\n\n", "-"),
        ("Intro\n\n- ", " "),
        ("Intro\n\n#", " "),  # a heading, perhaps
        ("Intro\n\n## ", "word "),  # a heading being written
        ("Intro\n\n- ", "word "),  # a list's first item being written
        ("- a\n\n", " "),  # a line that may end the list
        ("Intro\n\n> ", "word "),  # a quote being written
        ("Intro\n\n> |", "-"),  # a quote's line that may yet start text
        ("Intro\n\n|", " cell |"),  # a table's head being written
        ("Intro\n\n| a |\n", "-"),  # its delimiter row, perhaps
        ("Intro\n|", " cell |"),  # a table's head after a paragraph's line
        ("Intro\n| a |\n", "-"),
        ("1. Step:\n   ```\n   ", "x = 1; "),  # an item's code line
        ("1. Step:\n   ```\n", " "),  # blanks that may yet start an item's code line
        # (a second read: the formatted words were joined again at every delta that read
        # the tail after one was drawn, as escapes and CJK marks are, one after another)
        ("Intro\n\n", "\\中"),
        ("Intro\n\n", "**中**的"),
        # (a second read: a line after a loose step's blank line that may yet be a rule was
        # matched whole again at each delta, a point's next line too)
        ("1. **T**\n\n   ", "-"),
        ("1. **T**\n\n   ", "* "),
        ("- a\n  - **T**\n\n    ", "-"),
        ("1. **T**\n   - a\n   ", "_"),
        # a point's code line, and a quote's point, drawn as they render so far; with marks
        # (a second read: each delta drew the whole line anew)
        ("- a\n  - b\n    ```\n    ", "x = 1; "),
        ("> a\n> - ", "word "),
        ("> a\n> - ", "*a "),
        ("- a\n  - b\n    - ", "**b** `c` "),
        # hard line breaks: many, and a long run of blanks before one
        ("Intro\n\n", "a **b**  \n"),
        ("Intro\n\n", "a `b`\\\n"),
        ("Intro\n\nword", " "),
        # an autolink or an entity perhaps being written (a second read: a "<" before a run
        # without blanks, a blob, was matched again from the "<" at each delta)
        ("Intro\n\nx <", "a"),
        ("Intro\n\nx <http:", "a"),
        ("Intro\n\nx <a@", "b"),
        ("Intro\n\n", "&a "),
        ("Intro\n\n", "<"),
    ],
)
def test_one_long_line_costs_time_linear_in_its_length(head: str, run: str) -> None:
    """A long run of one character on one line (a model stuck in a loop), fed a few
    characters at a time: a blank line of 200,000 spaces under a list item took 185 s of
    the event loop (each line's match backtracked), a first line of "- " or of blanks after
    "#" 26 s and 266 s (a second read: each feed looked at the whole line again)."""

    def feed(size: int) -> float:
        text = head + run * (size // len(run)) + "\nAfter"
        renderer = ProgressiveRenderer()
        started = time.process_time()
        for i in range(0, len(text), 4):
            renderer.feed(text[i : i + 4])
            renderer.tail  # noqa: B018  (read after each delta, as a stream's frames are)
        renderer.finish()
        return time.process_time() - started

    assert growth(feed, 10_000) < 11  # linear: ~4 (up to 9 when busy); quadratic: ~16


def test_lines_that_no_shape_knows_cost_time_linear_in_the_tail() -> None:
    """A tail whose lines the shapes above do not know is parsed whole at every line: past a
    budget it is parsed again only when it has grown by a quarter, so a reply of such lines
    (a quote's list with headings and nested quotes, which a prompt can ask for) does not
    take the event loop for seconds. What it renders does not change."""
    lines = "1 | 2 {i}\n> # h {i}\n>> qq {i}\n"

    def feed(count: int) -> float:
        renderer = ProgressiveRenderer()
        renderer.feed("> - i\n")
        started = time.process_time()
        for i in range(count):
            renderer.feed(lines.format(i=i))
        return time.process_time() - started

    assert growth(feed, 300) < 11  # linear: ~4 (up to 9 when busy); quadratic: ~16
    text = "> - i\n" + "".join(lines.format(i=i) for i in range(1_000)) + "\n# Next\n\ntext"
    page, whole, renderer = stream(re.findall(r"[^\n]*\n|[^\n]+$", text))
    assert whole == page.html == render_markdown(text)
    # The first blank line after such a tail is parsed at once: the blocks after it are
    # drawn as they come (a second read: they stayed text until the tail grew by a quarter).
    renderer = ProgressiveRenderer()
    for line in re.findall(r"[^\n]*\n", text[: text.index("# Next\n") + 7]):
        renderer.feed(line)
    assert renderer.blocks_html.endswith("<h1>Next</h1>\n") and renderer.tail.text == ""


def test_a_table_ends_where_markdown_it_stops_adding_empty_cells_to_short_rows() -> None:
    """markdown-it pads a short row with empty cells up to its table's columns, and ends the
    table at the row that takes those it added beyond 65,536 (a few bytes must not make
    megabytes). The table drawn row by row ends there too: each step draws it as a renderer
    given the text so far at once (which parses the whole table), the table settles at that
    row, and the rest is the tail's text. It drew the row past the cap in the table; then it
    counted as markdown-it does not: a row split at a vertical tab, a NEL after the last pipe
    trimmed (markdown-it keeps it: a cell)."""
    from chat.fragments import CONTENT, tail_html

    for columns, row in ((100, "| r{}\vx |\x85\n"),):
        head = f"|{'|'.join(f'h{i}' for i in range(columns))}|\n|{'-|' * columns}\n"
        text = head + "".join(row.format(i) for i in range(70_000 // columns)) + "after\n"
        rows = render_markdown(text).split("</table>")[0].count("<tr>") - 1
        assert 60_000 // columns < rows < 70_000 // columns  # markdown-it's cap ends the table
        renderer, fed = ProgressiveRenderer(), ""
        for start in range(0, len(text), 7):
            piece = text[start : start + 7]
            renderer.feed(piece)
            fed += piece
            # at the row that passes the cap, at the row after it, at the end
            if "\n" in piece and fed.count("\n") in (2 + rows + 1, 2 + rows + 2, text.count("\n")):
                fresh = ProgressiveRenderer()
                fresh.feed(fed)
                assert fresh.blocks_html == renderer.blocks_html, fed[-40:]
                assert tail_html(CONTENT, 5, fresh.tail) == tail_html(CONTENT, 5, renderer.tail)
        assert renderer.tail.kind == "text"
        assert renderer.tail.text.startswith(row.format(rows)), renderer.tail.text[:40]
        assert renderer.blocks_html.count("<tr>") == 1 + rows
        assert renderer.finish()[1] == render_markdown(text)


def test_a_lists_open_item_is_drawn_as_its_next_item_and_its_text_goes_into_it() -> None:
    from chat.fragments import CONTENT, text_step

    renderer = ProgressiveRenderer()
    renderer.feed("7. seven\n")
    step = renderer.feed("8. <b>eight")
    frame = text_step(CONTENT, 5, step, renderer.tail)
    assert '<ol start="7">\n<li>seven</li>\n</ol>\n' in frame
    assert (
        '<div id="t5" hx-swap-oob="innerHTML"><ol start="8" class="tail-item"><li>'
        '<span id="x5"><span>&lt;</span>b&gt;eight</span></li></ol></div>'
    ) in frame  # (a "<" that opens no autolink: drawn as text as soon as that is known)
    step = renderer.feed(" and")
    assert text_step(CONTENT, 5, step, renderer.tail) == (
        '<span id="x5" hx-swap-oob="beforeend"> and</span>'
    )
    renderer = ProgressiveRenderer()
    renderer.feed("- a\n")
    step = renderer.feed("- b")
    assert '<ul class="tail-item"><li><span id="x5">b</span></li></ul>' in text_step(
        CONTENT, 5, step, renderer.tail
    )


def test_a_lists_open_item_is_numbered_as_markdown_numbers_it() -> None:
    """Written "1." each (a common habit), the item being written showed "1." and became "2."
    as it settled."""
    for text, number in [("1. a\n1. b", "2"), ("3. a\n1. b\n1. c", "5"), ("007. a\n1. b", "8")]:
        renderer = fed_by_character(text)
        assert renderer.tail == Tail("item", text[-1], number=number), text


def test_the_page_model_puts_an_items_text_in_the_tail_after_the_whole_message_was_drawn() -> None:
    """A whole message drawn (a Continue on a reply cut mid-list) indexed the item's text
    element apart from its tail, and later text went to that copy."""
    from chat.fragments import CONTENT, tail_html, text_step
    from tests.live import PageModel, text_of

    renderer = ProgressiveRenderer()
    renderer.feed("- a\n- b")
    page = PageModel()
    tail = tail_html(CONTENT, 5, renderer.tail)
    page.apply(
        f'<article id="m5" hx-swap-oob="true"><div id="c5">{renderer.blocks_html}</div>'
        f'<div id="t5">{tail}</div></article>'
    )
    for piece in [" more", "\n- c", " and"]:
        page.apply(text_step(CONTENT, 5, renderer.feed(piece), renderer.tail))
    assert text_of(page.elements["t5"]) == "c and"
    assert text_of(page.elements["c5"]) == "\na\nb more\n\n"


# --- Inline formatting of the open tail -------------------------------------------------------

INLINE_WORDS = st.sampled_from(
    [
        "word",
        "**bold**",
        "**two words**",
        "*em*",
        "_em_",
        "~~gone~~",
        "`code`",
        "`a b`",
        "``x ` y``",
        "[link](https://example.com)",
        "[a link](https://example.com 'a title')",
        "![img](/static/x.png)",
        "snake_case",
        "a * b",
        "**open",
        "close**",
        "*a **b** c*",
        "x\\*y",
        "[open",
        "&amp;",
        "<b>x</b>",
        "foo**bar**baz",
        "foo__bar__",
        "`open",
        "1.",
        "~",
        "***both***",
        "**bold `code` in it**",
        "**[a link](/x) in bold**:",
        "*em **strong** em*",
        "`a*b_c`",
        "**a &amp; b**",
        "**a &",
        "[text](/p_a_t*h*)",
        "[x](<y z>)",
        "[open](/no-end",
        "<https://example.com/_a_>",
        "**tail\\",
        "x**y**z",
        "__under__",
        "~~a ~ b~~",
        "** nb**",
        "a*b*c",
        "*a*.",
        "使用**FastAPI**框架",
        "这是**非常重要**的一步。",
        "（**注意**）",
        "**注意：**请",
        "「**重要。**」です",
        "~~删除：~~文字",
        "これは*とても*です",
        "中文`code`中文",
        "**不**",
        "用**开",
        '**"quoted"**',
        "**.env**",
        "*(optional)*",
        "**/*.js",
        "\\[",
        "\\]",
        "\\(x^2\\)",
        "\\frac{a}{b}",
        "a\\",
        "\\\\",
        "C:\\Users\\x_y",
        # links with titles, written or being written
        '[docs](/d "The *docs*")',
        "[x](/u 'it')",
        "[y](/u (p))",
        '[z](/u "open',
        '"T")',
    ]
)
INLINE_LINE = st.lists(INLINE_WORDS, min_size=1, max_size=8).map(" ".join)
INLINE_BLOCKS = st.one_of(
    INLINE_LINE,
    st.lists(INLINE_WORDS, min_size=1, max_size=6).map("".join),  # (as CJK text: no blanks)
    st.lists(INLINE_LINE, min_size=2, max_size=3).map("\n".join),
    st.lists(INLINE_LINE, min_size=2, max_size=3).map("  \n".join),  # hard line breaks
    st.lists(INLINE_LINE, min_size=2, max_size=3).map("\\\n".join),
    st.lists(INLINE_LINE, min_size=1, max_size=3).map(
        lambda xs: "\n".join(f"{i}. {x}" for i, x in enumerate(xs, 1))
    ),
    st.lists(INLINE_LINE, min_size=1, max_size=3).map(lambda xs: "\n".join("- " + x for x in xs)),
    INLINE_LINE.map(lambda s: "# " + s),
    INLINE_LINE.map(lambda s: "> " + s),
    INLINE_LINE.map(lambda s: "    " + s),
    INLINE_LINE.map(lambda s: "```\n" + s + "\n```"),
)


@st.composite
def inline_documents(draw: st.DrawFn) -> str:
    blocks = draw(st.lists(INLINE_BLOCKS, min_size=1, max_size=5))
    return "".join(block + draw(SEPARATORS) for block in blocks[:-1]) + blocks[-1]


def _pieces(formatted: str) -> list[str]:
    """The formatted words in a tail's drawn start (each in a `<span>` of its own)."""
    found, depth, start = [], 0, 0
    for tag in re.finditer(r"<(/?)span>", formatted):
        if not tag.group(1):
            depth += 1
            if depth == 1:
                start = tag.end()
        else:
            depth -= 1
            if depth == 0:
                found.append(formatted[start : tag.start()])
    return found


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_tails_words_are_drawn_formatted_as_they_will_render(data: st.DataObject) -> None:
    """However the text is split: the page, changed step by step by the socket's fragments,
    draws the tail as the renderer says (a snapshot would); the tail drawn is the same as a
    renderer given the whole text at once draws it (a page loaded mid-stream); and the words a
    paragraph's tail drew formatted are in the paragraph's render once it settles, in order."""
    from chat.fragments import CONTENT, tail_html, text_step
    from tests.live import PageModel, text_of

    text = data.draw(inline_documents())
    pieces = data.draw(split(text))
    renderer, page = ProgressiveRenderer(), PageModel()
    page.apply(
        '<article id="m5" hx-swap-oob="true"><div id="c5"></div><div id="t5"></div></article>'
    )
    fed, drawn_pieces = "", {}
    for piece in pieces:
        step = renderer.feed(piece)
        fed += piece
        page.apply(text_step(CONTENT, 5, step, renderer.tail))
        tail = renderer.tail
        drawn = tail_html(CONTENT, 5, tail)
        assert page.elements["t5"] == drawn, (fed, step)
        fresh = ProgressiveRenderer()
        fresh.feed(fed)
        assert tail_html(CONTENT, 5, fresh.tail) == drawn, fed
        if tail.kind != "code":
            drawn_pieces[(renderer.settled, tail.kind)] = _pieces(tail.formatted)
        # What the page shows of the tail is its text, marks left out only where formatted.
        if tail.kind == "text" and tail.pending_from is None and not tail.formatted:
            assert text_of(page.elements["t5"]) == tail.text
    # The words drawn formatted are so in the whole text's render, in the order drawn. (Not
    # a hard line break drawn as its line ended: at the paragraph's end it renders as nothing,
    # and a break at a block's end shows nothing either.)
    whole = render_markdown(text)
    for words in drawn_pieces.values():
        position = 0
        for word in (word for word in words if word != "<br>\n"):
            found = whole.find(word, position)
            assert found >= 0, (word, whole)
            position = found + len(word)


def test_words_after_a_mark_on_an_indented_line_stay_text() -> None:
    """A mark on a line indented four spaces is left as text (code, perhaps); in an item's
    second paragraph it is not code, and it pairs with a mark after it. The words after it
    were drawn formatted with the next mark ("`code`"), which renders as text (hypothesis)."""
    text = "1. word\n\n    `open\n`code` word"
    renderer = ProgressiveRenderer()
    renderer.feed(text)
    tail = renderer.tail  # (the item's second paragraph, after its first)
    assert tail.kind == "item" and tail.item_paragraph and tail.text == text[text.index("`") :]
    assert renderer.tail.formatted == ""
    assert "<code>open </code>code` word" in render_markdown(text)


def test_a_paragraphs_marks_are_drawn_formatted_as_they_close() -> None:
    """Bold, code and links are drawn formatted from their first word, as they will render if
    their marks close where the text ends (they showed their marks as text, "**pip install",
    then lost them at the space after the closing mark): the text after a mark goes in a
    pending span, added to where its words are being written, and the span is drawn
    formatted in its place, once, at the space after its marks closed."""
    from chat.fragments import CONTENT, text_step

    renderer = ProgressiveRenderer()
    pieces = ["Run ", "**pip", " install", "**", " now, ", "`x", "`", " or ", "[docs", "](/d", ")"]
    frames = [text_step(CONTENT, 5, renderer.feed(p), renderer.tail) for p in [*pieces, " ok"]]
    assert frames[0] == '<span id="t5" hx-swap-oob="beforeend">Run </span>'
    # A mark opens a pending span, drawn as the words will render
    assert frames[1] == (
        '<span id="t5" hx-swap-oob="beforeend"><span id="w5"><strong>pip</strong></span></span>'
    )
    # Words are added where they are being written, inside the bold, and nothing else
    assert frames[2] == '<span hx-swap-oob="beforeend:#w5 > :last-child"> install</span>'
    assert frames[3] == ""  # the closing mark changes nothing drawn
    # Closed, at the white space after it: drawn formatted in the span's place, once.
    assert frames[4] == (
        '<span hx-swap-oob="outerHTML:#w5"><strong>pip install</strong></span>'
        '<span id="t5" hx-swap-oob="beforeend"> now, </span>'
    )
    assert frames[5].endswith('<span id="w5"><code>x</code></span></span>')
    assert frames[6] == ""
    # A link's text is drawn as the link's once its destination begins (not drawn)
    assert frames[8].endswith('<span id="w5">[docs</span></span>')
    assert frames[9] == (
        '<span id="w5" hx-swap-oob="innerHTML">'
        '<a rel="noopener noreferrer nofollow">docs</a></span>'
    )
    assert frames[10] == ""
    assert '<a href="/d"' in frames[11]
    tail = renderer.tail
    assert tail.formatted == (
        "Run <span><strong>pip install</strong></span> now, <span><code>x</code></span> or "
        '<span><a href="/d" rel="noopener noreferrer nofollow">docs</a></span>'
    )
    assert tail.text[tail.raw_from :] == " ok" and tail.pending_from is None


# A model's answer with the marks it writes most, fed in word-sized tokens
MARKED_ANSWER = (
    "To install it, run `pip install chatsite` and then **set `REDIS_URL`** before you "
    'start. See [the deployment guide](https://example.com/docs/deploy_guide "Deploying chatsite") '
    "for *more "
    "details*, or ***ask***. Use ~~old~~ new flags: `--fast`, `--quiet`.\n\n"
    "- **Cache**: checked first (`get_or_set`).\n"
    "- **Database**: read on a miss; the result is stored.\n"
)


@pytest.mark.parametrize(
    "text",
    [
        "**bold\u2003 more",  # markdown-it's white space before a closing mark
        "a *it\u3000b",
        "| **b\u3000 | c |\n|---|---|\n| *d\u202f | e |",
        "*__b __c- d",  # punctuation that makes a closing mark open too
        "[a](https://x.com/![b) c",  # an image's marks in a destination
        "Link [here](https://ex.com/path_(1)) ok",  # parentheses in a destination
        "See [the docs](/docs/ \"The docs\") and [x](/u (t)) or [y](/z 'q') end",  # titles
        '[a](/u "t" x) [b](/u "t\\"u") [c](/u  "t"  ) [d](/u "t\n2")',  # none, escaped, blanks
        "**a &amp b** and **c &am",
        "x *_ y",  # a mark whose next character says it is drawn as text
        "x ~_ y",
        "a * b",
        "x *\\ y",
    ],
)
def test_a_span_is_drawn_the_same_fed_at_once_or_piece_by_piece(text: str) -> None:
    """A second read found these drawn otherwise a character at a time than at once (the
    page then differed from a snapshot of the same text)."""
    tails_on_a_page(text, list(text))
    tails_on_a_page(text, re.findall(r"\s*(?:\w+|[^\w\s]+)|\s+", text))


def test_a_models_marks_never_show_as_text_while_they_stream() -> None:
    """Fed as a model sends it, a token a feed: what the page shows of the reply never has a
    mark of a span that closes, nor a link's destination; it only grows, never losing what it
    showed (the marks showed, then went as each span closed; a link's "[" still goes as its
    destination begins); and a span's words are added to it as they come, the span drawn
    again only as the link's destination begins."""
    from chat.fragments import CONTENT, text_step
    from tests.live import PageModel, text_of

    renderer, page = ProgressiveRenderer(), PageModel()
    page.apply(
        '<article id="m5" hx-swap-oob="true"><div id="c5"></div><div id="t5"></div></article>'
    )
    final = text_of(render_markdown(MARKED_ANSWER))
    final_text = re.sub(r"\s+|\[", "", final)
    shown, redrawn = "", 0
    for token in re.findall(r"\s*(?:\w+|[^\w\s]+)", MARKED_ANSWER):
        frame = text_step(CONTENT, 5, renderer.feed(token), renderer.tail)
        page.apply(frame)
        redrawn += 'id="w5" hx-swap-oob="innerHTML"' in frame
        # (a link's "[" shows until its destination begins: it may be no link)
        now = re.sub(r"\s+|\[", "", text_of(page.elements["c5"] + page.elements["t5"]))
        assert not re.search(r"\*\*|`|~~|\]\(|https://", now), (token, now)
        assert final_text.startswith(now), (token, now, final_text)
        assert now.startswith(shown), (token, shown, now)
        shown = now
    assert redrawn == 1  # as the link's destination began; its words grew in place


IMAGE_ANSWER = (
    "The service has three parts ![the architecture, **three** boxes]"
    '(https://example.com/img/arch.png "Architecture") and **the steps** after it, with '
    "`make deploy` at the end ![logo](/static/logo.png) and *more* words.\n\nNext paragraph."
)


def _shown_with_images(html_text: str) -> str:
    """The text a page shows, an image of this site's as its `alt` text (another host's is a
    link with that text)."""
    from tests.live import text_of

    return text_of(re.sub(r'<img [^>]*?alt="([^"]*)"[^>]*>', r"\1", html_text))


def test_an_image_and_the_words_after_it_are_drawn_as_they_will_render() -> None:
    """An image in a paragraph is drawn as a link with its text once its destination begins
    (the destination not drawn), and the words after it formatted as they come: fed as a
    model sends it, a
    token a feed, what the page shows never has a mark that closes nor a destination, and
    only grows. (A second read found the image and every word after it in its paragraph
    drawn as their source, "![a](https://..." and the bolds' stars, until it settled.)"""
    from chat.fragments import CONTENT, text_step
    from tests.live import PageModel

    renderer, page = ProgressiveRenderer(), PageModel()
    page.apply(
        '<article id="m5" hx-swap-oob="true"><div id="c5"></div><div id="t5"></div></article>'
    )
    final = _shown_with_images(render_markdown(IMAGE_ANSWER))
    assert "the architecture, three boxes" in final and "logo" in final
    final_text = re.sub(r"\s+", "", final)
    shown = ""
    for token in re.findall(r"\s*(?:\w+|[^\w\s]+)", IMAGE_ANSWER):
        page.apply(text_step(CONTENT, 5, renderer.feed(token), renderer.tail))
        # (an image's "![" shows until its destination begins: it may be no image)
        now = _shown_with_images(page.elements["c5"] + page.elements["t5"])
        now = re.sub(r"\s+", "", now.replace("![", ""))
        assert not re.search(r"\*|`|\]\(|https://|/static", now), (token, now)
        assert final_text.startswith(now), (token, now, final_text)
        assert now.startswith(shown), (token, shown, now)
        shown = now
    end, whole = renderer.finish()
    page.apply(text_step(CONTENT, 5, end, renderer.tail))
    assert whole == render_markdown(IMAGE_ANSWER)
    assert re.sub(r"\s+", "", _shown_with_images(page.elements["c5"])) == final_text


def test_an_images_held_mark_shows_when_the_text_it_ends_is_all_there_is_for_now() -> None:
    """An image's "!" waits for the character after it; where that is all the text there
    is for now, it shows (a second read): a continuation's saved text ("Great job!" showed
    without its "!" until the model's first new token), thinking that the answer follows
    (without it until the reply ended), text that a tool call follows."""
    from chat.streaming.coalescer import Frame
    from chat.streaming.generation import ReplyRenderer
    from tests.live import PageModel, text_of

    assert "Great job!</p>" in ReplyRenderer(7, "Great job!", "").snapshot()
    view, page = ReplyRenderer(7, "", ""), PageModel()
    page.apply('<article id="m7" hx-swap-oob="true">' + view.snapshot() + "</article>")
    for frame in [
        Frame(0, "", 0, "Think hard!", None),
        Frame(0, "Let me look!", 11, "", None),
        Frame(12, "", 11, "", [{"id": "c", "name": "search", "arguments": "{}"}]),
    ]:
        page.apply(view.frame(frame)[1])
    shown = text_of("".join(page.elements.values()))
    assert "Think hard!" in shown and "Let me look!" in shown, shown
    snapshot = ReplyRenderer(7, "", "")
    snapshot.frame(Frame(0, "Let me look![image](/x.png)", 0, "", None))
    assert "<img " in snapshot.content.finish()[1]


def test_a_paragraph_whose_first_token_starts_with_a_blank_is_formatted_as_it_streams() -> None:
    """A model's token after a blank line often starts with a blank (" To", " The"): the
    paragraph it begins was drawn as its source, its bolds' stars and code spans' backticks
    shown, until it settled, then jumped to the render (a tail that starts with a blank was
    taken for indented code). Up to three blanks: the paragraph's words are formatted as
    they come, as with none; four make code, drawn as text."""
    from chat.fragments import CONTENT, text_step
    from tests.live import PageModel, text_of

    answer = "Intro.\n\n" + " " + MARKED_ANSWER.split("\n\n")[0]
    renderer, page = ProgressiveRenderer(), PageModel()
    page.apply(
        '<article id="m5" hx-swap-oob="true"><div id="c5"></div><div id="t5"></div></article>'
    )
    final = re.sub(r"\s+|\[", "", text_of(render_markdown(answer)))
    shown = ""
    for token in re.findall(r"\s*(?:\w+|[^\w\s]+)", answer):
        page.apply(text_step(CONTENT, 5, renderer.feed(token), renderer.tail))
        now = re.sub(r"\s+|\[", "", text_of(page.elements["c5"] + page.elements["t5"]))
        assert not re.search(r"\*\*|`|~~|\]\(|https://", now), (token, now)
        assert final.startswith(now), (token, now, final)
        assert now.startswith(shown), (token, shown, now)
        shown = now
    for blanks in (" ", "   "):
        renderer = fed_by_character(f"Intro.\n\n{blanks}Use **bold** and `x` now")
        assert renderer.tail.formatted.count("<strong>bold</strong>") == 1, blanks
    renderer = fed_by_character("Intro.\n\n    Use **bold** and `x` now")  # (code)
    assert renderer.tail.formatted == ""


def test_a_span_is_drawn_formatted_as_its_marks_will_close() -> None:
    """What the pending span shows for the text so far: its words as they will render, an
    end that may yet be a closing mark left out, a bracket that no "]" closed as text, a
    destination not shown; text where a mark is left open however it ends."""
    cases = {
        "a **b": "<strong>b</strong>",
        "a **b*": "<strong>b</strong>",  # (the first half of its closing mark)
        "a **b `c": "<strong>b <code>c</code></strong>",
        "a ***b": "<em><strong>b</strong></em>",
        "a *b **c": "<em>b <strong>c</strong></em>",
        "a ~~b": "<s>b</s>",
        "a ``b ` c": "<code>b ` c</code>",
        "a [b": "[b",
        "a **see [the": "<strong>see [the</strong>",
        "a [b](https://ex": '<a rel="noopener noreferrer nofollow">b</a>',
        "a **[b](/c": '<strong><a rel="noopener noreferrer nofollow">b</a></strong>',
        "a **b &amp": "<strong>b &amp;amp</strong>",
        "a **b\\": "<strong>b</strong>",
        "a **b\u3000": "<strong>b</strong>",  # (markdown-it's white space waits too)
        "a [b](https://ex.com/p_(1": '<a rel="noopener noreferrer nofollow">b</a>',
        "a **`c": "<strong><code>c</code></strong>",
        # An image whose destination is being written: a link with its text, as another
        # host's renders, the destination not shown
        "a ![b": "![b",
        "a ![b *c*](https://ex.com/x.p": '<a class="image-link" rel="noopener noreferrer '
        'nofollow">b c</a>',
        "a **![b](/c": '<strong><a class="image-link" rel="noopener noreferrer nofollow">b</a>'
        "</strong>",
        "a ![](https://ex": '<a class="image-link" rel="noopener noreferrer nofollow">image</a>',
        "a [![b](https://ex.com/x.png)](https://ex": '<a rel="noopener noreferrer nofollow">'
        '<span class="image-link">b</span></a>',
    }
    for text, drawn in cases.items():
        renderer = ProgressiveRenderer()
        renderer.feed(text)
        tail = renderer.tail
        assert tail.pending_from is not None and tail.pending_html == drawn, (text, tail)
        by_character = fed_by_character(text)
        assert by_character.tail.pending_html == drawn, (text, by_character.tail)
    # Left as text: marks left open whatever follows, a span past the line's end; marks
    # that seldom close (in a word, after a parenthesis, before punctuation; an
    # underscore's), which would draw the rest of their line formatted until it ended
    for text in [
        "a **b\nc",
        "a **b*c",
        "2**10 is",
        "f(*args",
        "ls *.txt",
        "_x",
        "find **/*.py",
        "a *-b",
        "使用_x",
    ]:
        renderer = ProgressiveRenderer()
        renderer.feed(text)
        tail = renderer.tail
        assert tail.pending_html is None, (text, tail)


def test_marks_after_cjk_text_and_before_punctuation_are_drawn_as_they_will_close() -> None:
    """Chinese and Japanese text has no blanks: a mark after one of its characters opens a
    span drawn as it will render, and the span settles at the character after its closing
    mark (it showed its marks until the paragraph ended). A double mark before punctuation
    ('**"Save"**', "**.env**") and a single one before a quote or a parenthesis are drawn
    so too."""
    cases = {
        "使用**FastAPI": "<strong>FastAPI</strong>",
        "（**注意": "<strong>注意</strong>",
        "これは*とても": "<em>とても</em>",
        'Check **"Add': '<strong>"Add</strong>',
        "Edit **.env": "<strong>.env</strong>",
        "pass **--force": "<strong>--force</strong>",
        "an *(optional": "<em>(optional</em>",
    }
    for text, drawn in cases.items():
        for renderer in (ProgressiveRenderer(), fed_by_character(text)):
            if not renderer.text:
                renderer.feed(text)
            tail = renderer.tail
            assert tail.pending_from is not None and tail.pending_html == drawn, (text, tail)
    renderer = fed_by_character("在项目中使用**FastAPI**框架时，这是**非常重要**的一步")
    tail = renderer.tail
    assert tail.pending_from is None, tail
    assert formatted_html(tail, "w5") == (
        "在项目中使用<span><strong>FastAPI</strong>框</span>架时，这是"
        "<span><strong>非常重要</strong>的</span>一步"
    )


def test_bold_closed_after_cjk_punctuation_is_drawn_bold_as_it_streams() -> None:
    """Chinese and Japanese bold that ends in full-width punctuation right before the next
    word ("**注意：**请", CommonMark's CJK-friendly amendment) is drawn bold from its first
    character to the end, its stars never shown: it was drawn bold while open, then as text
    with its stars once they closed, and it settled so."""
    from chat.fragments import CONTENT, tail_html

    for text in [
        "**注意：**请确认配置文件。**步骤一：**运行命令",
        "1. **安装依赖：**运行 `pip install`\n2. **启动服务：**访问页面",
        "これは**「重要」**です。~~削除：~~文字",
        # (after a variation selector, an ideographic one, a letter before a CJK bracket)
        "大塚\ufe00**(U+585A)**です、葛\U000e0100**(U+845B)**です",
        "Git**（注：不是GitHub）**是的，\u201c\ufe01**(注)**です",
    ]:
        for pieces in [list(text), [text[i : i + 3] for i in range(0, len(text), 3)]]:
            for tail in tails_on_a_page(text, pieces):
                assert "**" not in tail_html(CONTENT, 5, tail), (text, tail)
        assert "**" not in render_markdown(text) and "~~" not in render_markdown(text)


def test_a_backslash_is_drawn_as_it_renders_from_the_character_after_it() -> None:
    """An escape ("\\[", "\\*") is drawn as the mark it escapes as soon as that comes, and a
    backslash before anything else as the backslash it is: display math ("\\[" on a line of
    its own, then "\\frac...") showed its backslashes, and the rest of its paragraph as text,
    until the paragraph ended."""
    for text, formatted in {
        "a \\*b\\* c": "a <span>*</span>b<span>*</span> c",
        "\\[\n\\frac{d}{dx} x^n": "<span>[</span>\n<span>\\</span>frac{d}{dx} x^n",
        "x \\(y\\) z": "x <span>(</span>y<span>)</span> z",
    }.items():
        for renderer in (ProgressiveRenderer(), fed_by_character(text)):
            if not renderer.text:
                renderer.feed(text)
            tail = renderer.tail
            assert formatted_html(tail, "w5") == formatted and tail.pending_from is None, (
                text,
                tail,
            )


def test_marks_that_cannot_close_do_not_hold_the_text_back() -> None:
    """A mark left open stays text in its pending span until the paragraph settles (a span
    that reaches the next line, or 400 characters, stays so); marks that markdown never pairs
    ("snake_case", "a * b", a lone "~") are drawn as the text they are."""
    cases = {
        "use snake_case here ": "use snake<span>_case</span> here ",
        "a * b c ": "a <span>* b</span> c ",
        "x ~ y ": "x <span>~</span> y ",
    }
    for text, formatted in cases.items():
        renderer = fed_by_character(text)
        tail = renderer.tail
        assert formatted_html(tail, "w5") == formatted and tail.pending_from is None, tail
    renderer = ProgressiveRenderer()
    renderer.feed("an **open mark " + "word " * 100)
    tail = renderer.tail
    assert tail.pending_from == 3 and tail.formatted == "", tail
    renderer = ProgressiveRenderer()
    renderer.feed("an **open\nmark** then **b** ")
    assert renderer.tail.pending_from == 3  # stuck: it reached the next line


def test_a_lists_open_item_is_drawn_formatted_too() -> None:
    from chat.fragments import CONTENT, tail_html

    renderer = ProgressiveRenderer()
    renderer.feed("1. **Install** it\n2. **Run**")
    renderer.feed(" it")
    assert tail_html(CONTENT, 5, renderer.tail) == (
        '<ol start="2" class="tail-item"><li><span id="x5"><span><strong>Run</strong></span>'
        " it</span></li></ol>"
    )


def test_a_continuations_held_paragraph_goes_on_as_text() -> None:
    """A continuation's page shows the paragraph it was cut at rendered, then text: what
    follows it is appended as text, to the tail (no pending span the page does not have)."""
    from chat.fragments import CONTENT, text_step

    renderer = ProgressiveRenderer()
    renderer.feed("Cut **here")
    renderer.hold_formatting()
    step = renderer.feed("** and `x` on")
    assert text_step(CONTENT, 5, step, renderer.tail) == (
        '<span id="t5" hx-swap-oob="beforeend">** and `x` on</span>'
    )


def _drawn_pieces_are_in_the_render(text: str) -> list[str]:
    renderer = fed_by_character(text)
    words = _pieces(renderer.tail.formatted)
    whole = render_markdown(text)
    assert all(word in whole for word in words), (words, whole)
    fresh = ProgressiveRenderer()
    fresh.feed(text)
    assert formatted_html(fresh.tail, "w") == formatted_html(renderer.tail, "w")
    return words


def test_words_are_not_drawn_formatted_where_the_paragraph_renders_them_otherwise() -> None:
    """A second read found these: "_" then "*" between spaces were taken for marks that
    cannot pair ("a _* b c_ d" is an emphasis); a backslash before a line end (a hard line
    break) was drawn as a backslash; an autolink longer than the words looked back at had
    its "_a_" drawn as an emphasis."""
    assert _drawn_pieces_are_in_the_render("a _* b c_ d") == []
    assert _drawn_pieces_are_in_the_render("a *_ b c* d") == []
    assert "\\" not in "".join(_drawn_pieces_are_in_the_render("x *a*\\\nb c"))
    # (the autolink is drawn as its link once whole)
    long_link = _drawn_pieces_are_in_the_render("see <https://x.com/" + "p" * 200 + "/_a_/> more")
    assert [piece[:24] for piece in long_link] == ['<a href="https://x.com/p']
    assert "<em>" not in long_link[0]
    # An escape, split from its mark, is drawn as a renderer given the whole text draws it;
    # so is a reply that starts with a mark (its check read the last character received).
    assert _drawn_pieces_are_in_the_render("x\\*y and **z** w")[-1] == "<strong>z</strong>"
    for text in ["\\a b_", "\\\tx y*", "\\aa <http://a.b/>*"]:
        _drawn_pieces_are_in_the_render(text)
    # A line indented as code (an empty item, then code) is left as text (hypothesis).
    assert _drawn_pieces_are_in_the_render("1.\n\n    **bold** word") == []


def test_the_words_after_a_second_star_between_blanks_are_drawn_formatted() -> None:
    """A star between blanks opens nothing ("a * b"). The word before a second one had been
    drawn with the first, so the second was rendered alone ("* c", its star open at the
    text's start): the rest of the paragraph stayed text, its code spans' and bolds' marks
    shown until it settled ("the area is π * r * r", "2 * 3 * 4")."""
    drawn = _drawn_pieces_are_in_the_render("The area is π * r * r, in `x` or **b** ok")
    assert drawn[-2:] == ["<code>x</code>", "<strong>b</strong>"]
    assert _drawn_pieces_are_in_the_render("2 * 3 * 4 is `24` ok")[-1] == "<code>24</code>"
    assert _drawn_pieces_are_in_the_render("**a** * b and `c` d")[-1] == "<code>c</code>"


def test_a_mark_after_a_parenthesis_or_quote_after_a_blank_is_drawn_as_it_will_close() -> None:
    """The marks of "(**optional**)" and "(*e.g.*" showed as text until they closed, as those of
    "f(*args" (which seldom close) do."""
    for text, drawn in {
        "Use X (**recommended": "<strong>recommended</strong>",
        "(*e.g.": "<em>e.g.</em>",
        'say "*hi': "<em>hi</em>",
        "a \u201c**b": "<strong>b</strong>",
    }.items():
        assert fed_by_character(text).tail.pending_html == drawn, text
    assert fed_by_character("f(*args").tail.pending_html is None
    assert _drawn_pieces_are_in_the_render("Use X (**recommended**) now")[-1] == (
        "<strong>recommended</strong>)"
    )
    # A second read found these drawn formatted to their line's end, then as text: a mark
    # after such a parenthesis or quote is taken so only before a word.
    for text in (
        'the "*" wildcard matches any name here',
        'the "**" operator raises a number to a power here',
        "use the '*' glob and the '**' one",
        "by (**) we get the bound, and the rest follows.",
    ):
        renderer = ProgressiveRenderer()
        for character in text:
            renderer.feed(character)
            drawn = (renderer.tail.pending_html or "") + renderer.tail.formatted
            assert "<em>" not in drawn and "<strong>" not in drawn, (text, drawn)


# Prose with a mark that opens an emphasis and never closes, then marks that close
SELDOM_CLOSED = [
    "match files with *.py and then run `pytest` with **verbose** output",
    "2**10 is 1024, so `x` is **big**",
    "the _private helper and `foo` are **internal**",
    "call f(*args) then `g` and **h** ok",
    "match *.py and *.txt with `find` **fast**",
    "- match *.py then `pytest` with **verbose** output",
    "> quote *.py and `x` **bold** line",
    "the _private helper\nand `foo` are **internal**",
]


@pytest.mark.parametrize("text", SELDOM_CLOSED)
def test_the_words_after_a_mark_that_never_closes_are_drawn_formatted(text: str) -> None:
    """A star or an underscore that opens an emphasis in prose but never closes ("*.py",
    "2**10", "_private") left the rest of its line (its paragraph, from the next line on)
    drawn as its source, code spans' backticks and bolds' stars shown, until the paragraph
    settled, when it jumped to the formatted render. The mark is drawn as the text it stays,
    the words after it formatted as their marks close, as the render has them."""
    from chat.fragments import CONTENT, tail_html
    from tests.live import text_of

    final = re.sub(r"\s+", "", text_of(render_markdown(text)))
    for pieces in [list(text), re.findall(r"\s*(?:\w+|[^\w\s]+)|\s+", text)]:
        for tail in tails_on_a_page(text, pieces):
            shown = re.sub(r"\s+", "", text_of(tail_html(CONTENT, 5, tail)))
            # never a mark the render does not show, but for one being written at the end
            assert final.startswith(shown.rstrip("*`")), (text, shown)
    words = _drawn_pieces_are_in_the_render(text + " ")
    assert words[-1] == "<strong>" + re.findall(r"\*\*(\w+)\*\*", text)[-1] + "</strong>"
    assert "<code>" in "".join(words)


@pytest.mark.parametrize(
    "text",
    [
        "_a `b` c_ then `d` ok",  # an underscore given up on, closed after a code span
        "*.py `x` y* and **z** w",
        "2**10 `x` y** and `z` w",
        "_a **b_ c** `d` e",  # its closing mark inside a bold's words: no bold drawn
        "_a `b_ c` d_ e",  # a closing mark in a code span closes nothing
    ],
)
def test_a_mark_given_up_on_that_closes_after_all_is_drawn_as_it_renders(text: str) -> None:
    """A mark drawn as text that a later mark closes after all: the tail is drawn again from
    it, and its words drawn as they render, by character, at random places and at once."""
    tails_on_a_page(text, list(text))
    tails_on_a_page(text, re.findall(r"\s*(?:\w+|[^\w\s]+)|\s+", text))
    _drawn_pieces_are_in_the_render(text)
    _drawn_pieces_are_in_the_render(text + " ")


@pytest.mark.parametrize(
    "text",
    [
        "see _the `x` flag_[1] ok",  # its closing mark right before another construct's
        "a _b `c` d_`e` f",
        "2**10 `x` y**`z` w",
        "see _the `x` flag_&nbsp;ok",
        "see _the `x` flag_\\. ok",
    ],
)
def test_a_mark_given_up_on_is_closed_by_a_mark_before_another_constructs(text: str) -> None:
    """A second read found these: a mark given up on whose closing mark came right before
    another construct's mark (a reference's bracket, a code span's backtick, an entity, an
    escape) was never taken back: the closing mark was itself given up on at once, both
    drawn as text, their words unformatted, until the paragraph settled and jumped."""
    from chat.fragments import CONTENT, tail_html
    from tests.live import text_of

    final = re.sub(r"\s+", "", text_of(render_markdown(text)))
    for pieces in [list(text), re.findall(r"\s*(?:\w+|[^\w\s]+)|\s+", text), [text]]:
        tail = tails_on_a_page(text + " ", [*pieces, " "])[-1]
        assert re.sub(r"\s+", "", text_of(tail_html(CONTENT, 5, tail))) == final, pieces
    assert "<em>" in "".join(_drawn_pieces_are_in_the_render(text + " ")) or "**" in text


def test_a_long_paragraph_of_marks_given_up_on_is_drawn_formatted_to_its_end() -> None:
    """A second read found this: only four marks were given up on in a paragraph, those long
    behind, which nothing could close any more, counted; from the fifth on the paragraph's
    words showed their code spans' backticks and bolds' stars until it settled, then jumped."""
    from chat.fragments import CONTENT, tail_html
    from tests.live import text_of

    pad = "and some more words to pad this out so that the marks are far apart from each other"
    text = " ".join(f"match *.py{i} then `run{i}` {pad}" for i in range(8)) + " **end** ok"
    final = re.sub(r"\s+", "", text_of(render_markdown(text)))
    for pieces in [list(text + " "), re.findall(r"\S*\s*", text + " ")]:
        tail = tails_on_a_page(text + " ", pieces)[-1]
        assert re.sub(r"\s+", "", text_of(tail_html(CONTENT, 5, tail))) == final
    assert _drawn_pieces_are_in_the_render(text + " ")[-1] == "<strong>end</strong>"


def test_a_mark_given_up_on_moves_its_text_out_of_the_pending_span() -> None:
    """Given up on, a mark's pending span sends only what changes: its text, as text, and
    the words after it formatted go before the span, which shows the next pending span's
    words, or goes (the tail was drawn again whole, once for each such mark); the tail is
    drawn again only where that is shorter, a mark near its paragraph's start."""
    from chat.fragments import CONTENT, text_step

    lead = "Run the tests of every file in the project that matches "
    renderer = ProgressiveRenderer()
    pieces = [lead, "*.py ", "then ", "`pytest` ", "ok ", "2**10 ", "is ", "`x` ", "**big"]
    frames = [text_step(CONTENT, 5, renderer.feed(p), renderer.tail) for p in pieces]
    assert frames[1] == '<span id="t5" hx-swap-oob="beforeend"><span id="w5">*.py </span></span>'
    assert frames[2] == '<span id="w5" hx-swap-oob="beforeend">then </span>'
    assert frames[3] == (
        '<span hx-swap-oob="beforebegin:#w5">*.py then <span><code>pytest</code></span> </span>'
        '<span id="w5" hx-swap-oob="delete"></span>'
    )
    assert frames[4] == '<span id="t5" hx-swap-oob="beforeend">ok </span>'
    renderer = ProgressiveRenderer()
    frames = [
        text_step(CONTENT, 5, renderer.feed(p), renderer.tail) for p in [lead, "*.py ", "`b` **c"]
    ]
    assert frames[2] == (
        '<span hx-swap-oob="beforebegin:#w5">*.py <span><code>b</code></span> </span>'
        '<span id="w5" hx-swap-oob="innerHTML"><strong>c</strong></span>'
    )
    renderer = ProgressiveRenderer()
    frames = [text_step(CONTENT, 5, renderer.feed(p), renderer.tail) for p in ["a *.py ", "`b` "]]
    assert frames[1] == (
        '<div id="t5" hx-swap-oob="innerHTML">a *.py <span><code>b</code></span> </div>'
    )


@pytest.mark.parametrize("pieces", ["words", "characters"])
def test_the_bytes_sent_for_marks_given_up_on_grow_with_the_marks_not_the_tail(
    pieces: str,
) -> None:
    """A paragraph with k marks given up on, after a long start: its frames take a few dozen
    bytes more for each mark than without it (its words since the mark sent again, in a
    frame of their own), not the tail drawn again for each."""
    from chat.fragments import CONTENT, text_step

    lead = "some words before the marks " * 60

    def sent(k: int, mark: str) -> int:
        words = "".join(f"match {mark}.py{i} and then `run{i}` ok " for i in range(k))
        text = lead + words + "end"
        renderer, total = ProgressiveRenderer(), 0
        tokens = list(text) if pieces == "characters" else re.findall(r"\S*\s*", text)
        for token in tokens:
            total += len(text_step(CONTENT, 5, renderer.feed(token), renderer.tail))
        assert renderer.tail.formatted.count("<code>") == k  # (each mark given up on)
        return total

    extra = [(sent(k, "*") - sent(k, "")) / k for k in range(1, 5)]  # for each mark
    assert all(0 < cost < 120 for cost in extra), extra
    assert max(extra) - min(extra) < 5, extra


@pytest.mark.parametrize("pieces", ["words", "characters"])
def test_a_mark_that_closed_after_it_was_given_up_on_is_not_given_up_on_again(
    pieces: str,
) -> None:
    """An emphasis of words around a code span ("_use the `x` flag_"), given up on at the
    code span and taken back when it closed, drew the tail again whole each time: a paragraph
    of many sent bytes growing with the square of its length (2.17 MB for 3.8 KB, fed by
    character). Once such a mark has closed, the same mark is taken for one that closes in
    this text: its spans wait for their closing mark, as before marks were given up on."""
    from chat.fragments import CONTENT, text_step

    def sent(k: int) -> int:
        text = "".join(f"_use{i} the `x{i}` flag_ and more words here. " for i in range(k))
        renderer, total = ProgressiveRenderer(), 0
        tokens = list(text) if pieces == "characters" else re.findall(r"\S*\s*", text)
        for token in tokens:
            total += len(text_step(CONTENT, 5, renderer.feed(token), renderer.tail))
        assert renderer.tail.formatted.count("</code> flag</em>") == k  # (drawn formatted)
        return total

    assert sent(80) < 2.2 * sent(40), (sent(40), sent(80))
    for text in ["_use the `x` flag_ and _the `y` flag_ ok", "*.py `x` y* and *.txt `z` w* ok"]:
        tails_on_a_page(text, list(text))
        _drawn_pieces_are_in_the_render(text)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_prose_with_marks_that_seldom_close_is_drawn_as_it_renders(data: st.DataObject) -> None:
    """Words with marks that seldom close, and marks that may close them, fed at random
    splits: the page draws each step as a renderer given the text at once does, and the
    words drawn formatted are in the render, in order."""
    words = data.draw(
        st.lists(
            st.sampled_from(
                [
                    *("*.py", "2**10", "_private", "f(*args)", "**/*.js", "x*", "y_", "z**"),
                    *("`code`", "**bold**", "*em*", "_em_", "word", "a_b", "[l](/u)", "~~s~~"),
                    *("`a*b`", "**b_**", "\n", "(*e.g.*)", "3*4", "x~~"),
                ]
            ),
            min_size=1,
            max_size=10,
        )
    )
    text = " ".join(words).replace(" \n ", "\n")
    pieces = data.draw(split(text))
    tails_on_a_page(text, pieces)
    renderer = ProgressiveRenderer()
    for piece in pieces:
        renderer.feed(piece)
    whole, position = render_markdown(text), 0
    for word in _pieces(renderer.tail.formatted):
        if word != "<br>\n":
            found = whole.find(word, position)
            assert found >= 0, (word, whole, text)
            position = found + len(word)


def test_brackets_and_escapes_do_not_hold_back_what_follows() -> None:
    """Closed brackets that no link follows ("[1]", "arr[0]", "- [ ] task") and escaped
    marks are text: the marks after them are still formatted as they close."""
    assert _drawn_pieces_are_in_the_render("See [1] for **a** b")[-1] == "<strong>a</strong>"
    assert _drawn_pieces_are_in_the_render("arr[0] is `x` y")[-1] == "<code>x</code>"
    assert _drawn_pieces_are_in_the_render("a \\*b **c** d")[-1] == "<strong>c</strong>"


def test_a_pending_span_is_tried_a_bounded_number_of_times() -> None:
    """Each cut tried renders the pending span's words again: a span whose marks do not close
    after a dozen tries stays text until its paragraph settles (a line of "[" or of
    unpaired marks cost seconds of the event loop)."""
    text = "``a" + " b`" * 30 + " c``"
    renderer = fed_by_character(text + " ")
    assert renderer.tail.pending_from == 0 and renderer.tail.formatted == ""
    assert "<code>" in render_markdown(text)  # it did close, after the tries


# Tables as models write them, and what may follow one: cells with marks, escaped pipes, code
# with pipes, rows short or long of cells, rows without pipes, and the block after it.
CELLS = st.one_of(
    INLINE_WORDS,
    st.sampled_from(["a \\| b", "`x | y`", "", " ", "1 s", "**x|y**", "long " * 220]),
)
ROW_EDGES = st.sampled_from([("| ", " |"), ("", ""), ("|", "|"), ("  | ", "")])
TABLE_ENDS = st.sampled_from(
    [
        *("", "\n", "\n\n", "\n\nDone.", "\n# Next", "\n- item", "\nplain line", "\n```\ncode"),
        *("\n> q", "\n---", "\n    indented", "\n***\n", "\n1. one", "\n~~~\nx"),
        *("\n#x | y", "\n1 | 2", "\n- a | b", "\n  \tcode", "\n```x`"),
    ]
)


@st.composite
def table_documents(draw: st.DrawFn) -> str:
    columns = draw(st.integers(1, 3))
    start, end = draw(ROW_EDGES)
    head = start + " | ".join(f"h{i}" for i in range(columns)) + end
    rule = (
        start
        + " | ".join(draw(st.sampled_from(["---", ":--", "--:", ":-:"])) for _ in range(columns))
        + end
    )
    rows = [
        draw(ROW_EDGES)[0]
        + " | ".join(draw(st.lists(CELLS, min_size=1, max_size=columns + 1)))
        + draw(ROW_EDGES)[1]
        for _ in range(draw(st.integers(0, 4)))
    ]
    intro = draw(
        st.sampled_from(["", "Intro **words**:\n\n", "- an item\n\n", "1. step\n", "Intro:\n"])
    )
    text = intro + "\n".join([head, rule, *rows]) + draw(TABLE_ENDS)
    if draw(st.booleans()):  # cut off, as an interrupted reply is
        text = text[: draw(st.integers(1, len(text)))]
    return text


def _rows(html: str) -> list[str]:
    return re.findall(r"<tr>\n<td[ >].*?</tr>\n", html, re.S)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_tables_rows_are_drawn_as_their_lines_end_and_its_row_being_written_cell_by_cell(
    data: st.DataObject,
) -> None:
    """A table streamed as text until it ended (a blank line), then jumped into a table. Its
    head and each row whose line ended are drawn as the table will render, and the row being
    written in cells as its text comes. However the text is split: the page, changed by the
    socket's fragments, is the renderer's drawing of its state (a snapshot's), which is that
    of a renderer given the text at once; the rows drawn are those of the text's render; the
    blocks and the final tail are the one-shot render."""
    text = data.draw(table_documents())
    whole = render_markdown(text)
    for tail in tails_on_a_page(text, data.draw(split(text))):
        if tail.kind == "table":
            assert tail.table.startswith("<table>\n<thead>") and "<th" in tail.table
            rows = _rows(tail.table)
            position = 0
            for row in rows:  # the rows drawn are the table's, in order
                found = whole.find(row, position)
                assert found >= 0, (row, whole)
                position = found + len(row)


def tails_on_a_page(text: str, pieces: list[str]) -> list[Tail]:
    """`text` fed in `pieces`, each step's fragments applied to a model page, which must show
    after each the renderer's drawing of its state, that of a renderer given the text so far
    at once, and at the end the one-shot render. The tail after each piece."""
    from chat.fragments import CONTENT, tail_html, text_end, text_step
    from tests.live import PageModel

    renderer, page = ProgressiveRenderer(), PageModel()
    page.apply(
        '<article id="m5" hx-swap-oob="true"><div id="c5"></div><div id="t5"></div></article>'
    )
    fed, tails = "", []
    for piece in pieces:
        step = renderer.feed(piece)
        fed += piece
        tail = renderer.tail
        tails.append(tail)
        page.apply(text_step(CONTENT, 5, step, tail))
        drawn = tail_html(CONTENT, 5, tail)
        assert page.elements["t5"] == drawn, (fed, step)
        assert page.elements["c5"] == renderer.blocks_html, fed
        fresh = ProgressiveRenderer()
        fresh.feed(fed)
        assert tail_html(CONTENT, 5, fresh.tail) == drawn, fed
    end, whole = renderer.finish()
    if whole == renderer.blocks_html and not renderer.diverged:
        page.apply(text_end(CONTENT, 5, end))
        assert page.elements["c5"] == render_markdown(text)
        assert "t5" not in page.elements
    else:  # (a reference defined after its use: the message is drawn whole again, once)
        assert whole == render_markdown(text)
    return tails


TABLES_IN_BLOCKS = [
    # a step's first line, then a table (tight, then loose), and the step after it
    "1. Compare the options:\n   | Option | Cost |\n   |---|:-:|\n   | A | 1 |\n   | B | 2 |\n"
    "2. Pick one\n",
    "Intro.\n\n- **Pricing**\n\n  | Plan | Price |\n  | --- | --- |\n  | Free | 0 |\n\n"
    "- **Limits**: none\n\nAfter.",
    # a quote's paragraph, then a table; a quote that starts with one; a table in an item
    # nested in a step
    "> Compare the options:\n> | Option | Cost |\n> |---|---|\n> | A | - |\n\nNext.",
    "> | a | b |\n> |---|---|\n> | 1 | 2 |\n> | 3 | 4 |\n\nNext.",
    "1. Steps:\n   - Check:\n     | a | b |\n     |---|---|\n     | 1 | 2 |\n2. Done",
    # a pipe line that is no table's head: the item's text, once its next line shows it
    "1. Use a | b to pipe\n   it on\n   | or this\n2. Done",
    # a line after the table that the item or the quote cannot take (a second read: the
    # block was drawn as text, pipes and all, for that line, then as the table again)
    "- a\n  | x |\n  |---|\n  | 1 |\nlazy\n- b",
    "> | x |\n> |---|\n> | 1 |\nlazy\n\nb",
    "1. a\n   | x |\n   |---|\n   | 1 |\n Note",
    # a quote in a quote
    ">> | a |\n>> |---|\n>> | 1 |\n\nNext.",
]


@pytest.mark.parametrize("text", TABLES_IN_BLOCKS)
def test_a_table_in_a_lists_item_or_a_quote_is_drawn_as_it_will_render(text: str) -> None:
    """A table in a list's item or in a quote is drawn as it renders while it is written:
    its head once its delimiter row ends, each row as its line ends, the row being written
    not drawn; never its pipes as text. They showed as the item's or the paragraph's text
    ("Compare the options: | Option | Cost | |---|---|"), then jumped into a table as the
    item or the quote settled (a quote's row being written showed its pipes in the table's
    first cell). What the page shows only grows, as the whole text's render has it."""
    tokens = re.findall(r"\s*\S+|\s+", text)
    for pieces in (list(text), tokens):
        tails_on_a_page(text, pieces)
        for shown in shown_only_grows(text, pieces):
            if "a | b to" not in text:
                assert "|" not in shown and "---" not in shown, shown


def test_a_table_in_a_lists_item_gains_its_rows_without_the_item_sent_again() -> None:
    """A table in a list's item being written gains each row as its line ends, and only
    that row is sent: the item was rendered and sent again whole at each row (a 55-row table
    sent 106 KB, against 39 KB at the top level). Its head, a row with marks, two rows in
    one piece; the page is the renderer's drawing throughout (`tails_on_a_page`)."""
    from chat.fragments import CONTENT, text_step

    rows = "".join(f"   | option {i} **bold** | {i}0 |\n" for i in range(12))
    text = f"1. Compare the options:\n   | Option | Cost |\n   |---|---:|\n{rows}2. Next\n"
    pairs = re.findall(r"(?:[^\n]*\n){1,2}|[^\n]+", text)  # (two lines a piece)
    for pieces in (list(text), re.findall(r"\s*\S+|\s+", text), pairs):
        tails_on_a_page(text, pieces)
        renderer, frames = ProgressiveRenderer(), []
        for piece in pieces:
            step = renderer.feed(piece)
            if "2." in renderer.text:
                break  # (the item settles into the list: sent once, as a block)
            frames.append(text_step(CONTENT, 5, step, renderer.tail))
            assert not step.tail_replaced or "option 1 " not in renderer.text, piece
        for i in range(11):  # (the last row's line ends as the next item begins)
            assert sum(f"option {i} <strong>" in frame for frame in frames) == 1, i
        assert sum("Compare the options" in frame for frame in frames) <= 2  # (its line, its head)
        assert sum(map(len, frames)) < 4_000, sum(map(len, frames))


def shown_only_grows(text: str, pieces: list[str]) -> list[str]:
    """`text` fed in `pieces` to a model page: what it shows (its text, without white space)
    after each piece, which only grows, as the whole text's render has it."""
    from chat.fragments import CONTENT, text_step
    from tests.live import PageModel, text_of

    final = re.sub(r"\s+", "", text_of(render_markdown(text)))
    renderer, page = ProgressiveRenderer(), PageModel()
    page.apply(
        '<article id="m5" hx-swap-oob="true"><div id="c5"></div><div id="t5"></div></article>'
    )
    shown, fed, all_shown = "", "", []
    for piece in pieces:
        page.apply(text_step(CONTENT, 5, renderer.feed(piece), renderer.tail))
        fed += piece
        now = re.sub(r"\s+", "", text_of(page.elements["c5"] + page.elements["t5"]))
        assert final.startswith(now), (fed, now, final)
        assert now.startswith(shown), (fed, shown, now)
        shown = now
        all_shown.append(now)
    return all_shown


QUOTE_LINES = st.one_of(
    INLINE.map(lambda s: "> " + s),
    INLINE.map(lambda s: ">" + s),
    INLINE.map(lambda s: "   >  " + s),
    st.sampled_from(
        [">", "> - an item", "> # heading", "> > nested", ">     code", "lazy line", "> 2024 x"]
    ),
    st.sampled_from(["> | a |", "> [label]: /u", "> **Note:** x", "> 1. one", "> ```"]),
)


@st.composite
def quote_documents(draw: st.DrawFn) -> str:
    intro = draw(st.sampled_from(["", "Intro **words**:\n\n", "- an item\n\n", "Text\n"]))
    lines = draw(st.lists(QUOTE_LINES, min_size=1, max_size=5))
    end = draw(st.sampled_from(["", "\n", "\n\nAfter.", "\n- a list", "\n\n> again"]))
    text = intro + "\n".join(lines) + end
    if draw(st.booleans()):  # cut off, as an interrupted reply is
        text = text[: draw(st.integers(1, len(text)))]
    return text


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_quote_of_paragraphs_is_drawn_as_the_quote_while_it_streams(
    data: st.DataObject,
) -> None:
    """A quote streamed as text, its markers too ("> **Note:** ..."), until it settled: then
    it moved in by the quote's margin and its markers went. A quote of paragraphs is drawn
    as the quote from its first line's first character, its lines' markers not drawn;
    however the text is split, the page is what a renderer given the text at once draws."""
    text = data.draw(quote_documents())
    for tail in tails_on_a_page(text, data.draw(split(text))):
        if tail.kind == "quote":  # no line's marker drawn (">" in a formatted word is text)
            assert not re.search(r"\n {0,3}&gt;", formatted_html(tail, "w")), tail


def test_a_quotes_text_is_drawn_in_the_quote_without_its_markers() -> None:
    from chat.fragments import CONTENT, tail_html

    renderer = fed_by_character("Intro\n\n> **Note:** this is\n> important `code`\n> and mo")
    tail = renderer.tail
    assert tail.kind == "quote"
    assert tail_html(CONTENT, 5, tail) == (
        '<blockquote class="tail-quote"><p><span id="x5"><span><strong>Note:</strong></span>'
        " this is\nimportant <span><code>code</code></span>\nand mo</span></p></blockquote>"
    )
    for text in ["> a\n> - b", "> a\nlazy", "> a\n>\n> - b", "> > a", ">     code"]:
        tail = fed_by_character(text).tail  # no quote of paragraphs: drawn rendered so far
        assert tail.kind == "quote" and tail.quote_rendered is not None, text
    assert fed_by_character(">").tail == Tail("text", "")  # its marker held back
    # A line whose start may yet be text does not draw the quote as text meanwhile (a second
    # read: ">  c", "> |x" and "> =x" drew the whole quote again as text, then as the quote,
    # at every such line); a label may start one ("> [!NOTE]").
    for text in ["> a b\n>  c d", "> a\n> | x", "> a\n> =x", "   > a\n   >    x", "> [!NOTE]\n> b"]:
        renderer, kinds = ProgressiveRenderer(), []
        for character in text:
            renderer.feed(character)
            kinds.append(renderer.tail.kind)
        assert kinds[kinds.index("quote") :] == ["quote"] * (len(kinds) - kinds.index("quote"))


def test_a_quote_of_paragraphs_is_drawn_as_the_quote_its_paragraphs_before_its_last_rendered() -> (
    None
):
    """A quote of two paragraphs ("> **Tip:** ...", ">", "> ...", as models write notes) was
    drawn as text again from its blank line, its markers too, until it settled. Its
    paragraphs before its last are drawn rendered, its last as its text comes; the quote
    is drawn anew once as each paragraph begins, never as text."""
    from chat.fragments import CONTENT, tail_html, text_end, text_step
    from tests.live import PageModel

    text = "Intro.\n\n> **Tip:** first\n> one.\n>\n>  \n> Second `two`,\n> and more.\n>\n> Third.\n\nAfter."
    for pieces in (re.findall(r"\s*\S+|\s+", text), list(text)):
        renderer, page, kinds, redrawn = ProgressiveRenderer(), PageModel(), [], 0
        page.apply(
            '<article id="m5" hx-swap-oob="true"><div id="c5"></div><div id="t5"></div></article>'
        )
        for piece in pieces:
            step = renderer.feed(piece)
            page.apply(text_step(CONTENT, 5, step, renderer.tail))
            assert page.elements["t5"] == tail_html(CONTENT, 5, renderer.tail)
            if renderer.text.startswith("Intro.\n\n>") and "Third.\n\n" not in renderer.text:
                kinds.append(renderer.tail.kind)
                redrawn += step.tail_replaced
            if renderer.text.endswith("> and mo"):
                drawn = tail_html(CONTENT, 5, renderer.tail)
                assert drawn.startswith(
                    '<blockquote class="tail-quote"><p><strong>Tip:</strong> first\none.</p>\n'
                    '<p><span id="x5">Second <span><code>two</code>'
                ), drawn
                assert drawn.endswith("\nand mo</span></p></blockquote>"), drawn
        assert set(kinds) == {"quote"}, kinds
        assert redrawn <= 3  # (as it began, and as each paragraph after the first began)
        page.apply(text_end(CONTENT, 5, renderer.finish()[0]))
        assert page.elements["c5"] == render_markdown(text)


def test_a_tables_head_is_drawn_as_its_head_from_its_first_pipe() -> None:
    """A table's first line showed as text ("| plan | **price** |"), its delimiter row too,
    until that row's line ended: then the table took their place. The tail's first line that
    starts with a pipe is drawn as a table's head while it is written and while the line after
    it may be its delimiter row: its cells added to as they come (each that ended rendered),
    the delimiter row not drawn, and nothing drawn again until the table opens."""
    from chat.fragments import CONTENT, tail_html, text_step

    text = "Plans:\n\n| plan | **price** | seats |\n|---|--:|---|\n| Free | 0 | 1 |\n"
    renderer = ProgressiveRenderer()
    renderer.feed("Plans:\n\n")
    kinds, frames = [], []
    for character in text[len("Plans:\n\n") :]:
        step = renderer.feed(character)
        tail = renderer.tail
        kinds.append(tail.kind)
        if tail.kind == "head" and len(kinds) > 1 and kinds[-2] == "head":
            assert not step.tail_replaced, renderer.text  # only added to, cell by cell
            frames.append(text_step(CONTENT, 5, step, tail))
    head_end = text.index("|---|--:|---|\n") + len("|---|--:|---|\n") - len("Plans:\n\n")
    assert kinds[: head_end - 1] == ["head"] * (head_end - 1) and kinds[head_end - 1] == "table"
    sent = re.sub(r'<(?:[^>"]|"[^"]*")*>', "", "".join(frames))
    # Nothing sent twice: a cell's marks are never drawn, and its words go where they render
    assert sent == "planpriceseats", sent
    renderer = ProgressiveRenderer()
    renderer.feed(text[: text.index("|--:")])  # in the delimiter row
    tail = renderer.tail
    assert tail.kind == "head" and tail.cells[:4] == ("plan", "<strong>price</strong>", "seats", "")
    assert not {"|", "-"} & set(re.sub(r"<[^>]+>", "", tail_html(CONTENT, 5, tail)))
    page, whole, _ = stream(list(text))
    assert whole == page.html == render_markdown(text)
    # A second line that no delimiter row starts: text again; a first line too long, text.
    assert fed_by_character("| a | b |\nc").tail.kind == "text"
    assert fed_by_character("| a | b |\n|-x").tail.kind == "text"
    assert fed_by_character("|" + "a" * 1_001).tail.kind == "text"
    assert fed_by_character("- a\n\n| b").tail.kind == "head"  # after a list: it ends it
    # in a paragraph: after its lines, rendered (see the test below)
    assert fed_by_character("Text\n| b").tail.head_before == "<p>Text</p>\n"
    cells = fed_by_character("|" + "|".join("abcdefghi")).tail.cells  # more cells than drawn
    assert cells[:9] == tuple("abcdefghi") and len(cells) == 16
    # a wide head is drawn again a few times, not every eight cells (a second read: 999 pipes
    # fed one at a time sent 584 KB)
    renderer, redrawn = ProgressiveRenderer(), 0
    for character in "|" * 999:
        redrawn += renderer.feed(character).tail_replaced
    assert len(renderer.tail.cells) == 1024 and redrawn <= 8
    # a cell's HTML is that of the references known for its head (a second read: a head
    # drawn before "[r]" was defined drew its cells so again, fed line by line)
    pieces = ["| [r] | x\n", "foo\n", "\n", "[r]: /u\n", "\n", "| [r] | y\n"]
    renderer = ProgressiveRenderer()
    for piece in pieces:
        renderer.feed(piece)
    tail = renderer.tail
    assert tail.kind == "head" and tail.cells[0].startswith("<a ") and tail.cells[1] == "y"


# A paragraph's lines, then a table's head right after them (no blank line between): the
# table interrupts the paragraph. No line of them starts with a "-": a delimiter row does.
PARAGRAPH_LINES = st.sampled_from(
    [
        *("Here is a comparison:", "Intro **words**:", "See `x | y` and *more*:", "a | b"),
        *("[link](https://example.com) and <b>x</b>", " indented", "2024 was", "ends  "),
    ]
)

SHORT_CELLS = CELLS.filter(lambda cell: len(cell) < 100)  # (a head of its line's length at most)
HEAD_CELLS = SHORT_CELLS.filter(lambda cell: cell.strip() and "|" not in cell.replace("\\|", ""))


@st.composite
def paragraph_table_documents(draw: st.DrawFn) -> str:
    before = draw(st.sampled_from(["", "# Plans\n\n", "Before.\n\n", "- an item\n\n"]))
    lines = draw(st.lists(PARAGRAPH_LINES, min_size=1, max_size=3))
    columns = draw(st.integers(1, 3))
    start, end = draw(st.sampled_from([("| ", " |"), ("|", "|"), ("  | ", "")]))
    cells = st.lists(HEAD_CELLS, min_size=columns, max_size=columns)
    head = start + " | ".join(draw(cells)) + end
    rule = (
        start
        + " | ".join(draw(st.sampled_from(["---", ":--", "--:", ":-:"])) for _ in range(columns))
        + end
    )
    rows = [
        "| " + " | ".join(draw(st.lists(SHORT_CELLS, min_size=1, max_size=columns))) + " |"
        for _ in range(draw(st.integers(0, 2)))
    ]
    text = before + "\n".join([*lines, head, rule, *rows]) + draw(TABLE_ENDS)
    if draw(st.booleans()):  # cut off, as an interrupted reply is
        text = text[: draw(st.integers(1, len(text)))]
    return text


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_tables_head_right_after_a_paragraphs_lines_is_drawn_as_its_head(
    data: st.DataObject,
) -> None:
    """A table right after a paragraph's line, with no blank line between ("Here is a
    comparison:" then "| A | B |"), as models often write it: markdown-it lets a table
    interrupt a paragraph. Its head and its delimiter row were drawn as the paragraph's text
    until that row's line ended: then the paragraph took its shape and the table jumped in
    after it. The line that starts with a pipe is drawn as the table's head being written, as
    after a blank line, the paragraph's lines before it as the paragraph they render to (as
    they settle once the table opens); the delimiter row is never drawn. However the text is
    split, the page is what a renderer given the text at once draws, and the paragraph drawn
    before the head is in the render."""
    from chat.fragments import CONTENT, tail_html

    text = data.draw(paragraph_table_documents())
    whole = render_markdown(text)
    for pieces in (list(text), data.draw(split(text))):
        for tail in tails_on_a_page(text, pieces):
            if tail.kind == "table":
                break  # (what follows the table may start with a "-")
            drawn = re.sub(r"<[^>]+>", "", tail_html(CONTENT, 5, tail))
            # the delimiter row, never (no other line starts so)
            assert not re.search(r"(?m)^[ \t]*\|?[ \t]*:?-", drawn), (text, pieces, drawn)
            if tail.head_before and "<table>" in whole:
                assert f"{tail.head_before}<table>" in whole, (text, tail)


def test_a_pipe_line_after_a_paragraphs_line_is_drawn_as_a_head_then_as_text_if_none() -> None:
    """The paragraph's line before a table's head drawn after it is drawn rendered, in the
    frame that begins the head; the head's cells are added to as they come, and the table
    opens under the paragraph as it settles, which the page showed so already. A pipe line
    that no delimiter row follows is drawn as the paragraph's text again; only the
    paragraph's first is drawn as a head (each drew the paragraph again: a paragraph of
    pipe lines would send itself at each)."""
    from chat.fragments import CONTENT, tail_html, text_step

    intro = "Here is a **comparison**:\n"
    text = intro + "| A | `B` |\n|---|--:|\n| 1 | 2 |\n"
    renderer = ProgressiveRenderer()
    kinds, frames, drawn = [], [], ""
    for character in text:
        step = renderer.feed(character)
        tail = renderer.tail
        kinds.append(tail.kind)
        frames.append(text_step(CONTENT, 5, step, tail))
        if tail.kind == "table" and kinds[-2] == "head":  # the paragraph stays as it was drawn
            assert renderer.blocks_html == drawn, renderer.text
            assert tail_html(CONTENT, 5, tail).startswith("<table")
        drawn = tail_html(CONTENT, 5, tail).split("<table")[0]  # (before the head: the paragraph)
    head_end = text.index("--:|\n") + len("--:|\n")
    assert kinds == ["text"] * len(intro) + ["head"] * (head_end - 1 - len(intro)) + ["table"] * (
        len(text) - head_end + 1
    )
    begun = frames[len(intro)]  # the tail drawn again: the paragraph rendered, then the head
    paragraph = "<p>Here is a <strong>comparison</strong>:</p>\n"
    assert f'<div id="t5" hx-swap-oob="innerHTML">{paragraph}<table' in begun
    # the paragraph is sent once as it begins, once as it settles; the head cell by cell
    assert sum("Here is a" in frame for frame in frames) == 2
    sent = re.sub(r'<(?:[^>"]|"[^"]*")*>', "", "".join(frames[len(intro) + 1 : head_end - 1]))
    assert sent == "AB", sent
    renderer = ProgressiveRenderer()
    renderer.feed(text[: text.index("--:")])  # in the delimiter row
    tail = renderer.tail
    assert tail.kind == "head" and tail.cells[:2] == ("A", "<code>B</code>")
    assert tail.head_before == paragraph
    page, whole, _ = stream(list(text))
    assert whole == page.html == render_markdown(text)
    # no delimiter row under it: the paragraph's text again, drawn formatted
    for after in ("| A | B |\nmore", "| A | B |\n|---|\n", "| A | B |\n- x"):
        tail = fed_by_character(intro + after).tail
        assert tail.kind in ("text", "item") and not tail.head_before, after
    html = formatted_html(fed_by_character(intro + "| A | B |\nmore").tail, "w")
    assert "<strong>comparison</strong>" in html and html.endswith("\n| A | B |\nmore")
    # only the paragraph's first pipe line; not its first line; not after a long paragraph
    assert fed_by_character(intro + "| A |\nmore\n| B").tail.kind == "text"
    assert fed_by_character("| A |\nmore\n| B").tail.kind == "text"
    assert fed_by_character("a" * 5_000 + "\n| B").tail.kind == "text"
    # a paragraph of pipe lines that make no table is sent about once, not once a line
    text = intro + "| cell | cell |\n" * 60 + "end"
    renderer, frames = ProgressiveRenderer(), []
    for character in text:
        step = renderer.feed(character)
        frames.append(text_step(CONTENT, 5, step, renderer.tail))
    sent = re.sub(r'<(?:[^>"]|"[^"]*")*>', "", "".join(frames))
    assert len(sent) < 3 * len(text), len(sent)


def test_a_line_that_starts_another_block_ends_the_table_as_soon_as_it_is_sure_to() -> None:
    """A line after a table's rows that starts another block (a heading, a list, a quote, a
    fence, an indented line) was drawn as the table's row being written, in its cells, until
    its line ended: then it jumped out of the table. The table now ends, drawn whole, as
    soon as the line is sure to start a block whatever follows it; the line that may still
    be a row stays one."""
    table = "| a | b |\n|---|---|\n| 1 | 2 |\n"
    for line, sure_after in (
        # (a line that is only a block's marker so far is held back: not drawn at all)
        ("## Next\n", "## N"),
        ("- a | b\n", "- a"),
        ("12. item\n", "12. i"),
        ("> quote\n", "> q"),
        ("~~~\ncode\n~~~\n", "~~~\n"),
        ("    code\n", "    c"),
        ("```py\nx\n```\n", "```py\n"),  # "```py`" would be a row
        ("---\n", "---\n"),  # "--- x" would be a row
        ("#x | y\n", None),  # rows
        ("1 | 2\n", None),
        ("*** x\n", None),
    ):
        text = table + line
        renderer = ProgressiveRenderer()
        renderer.feed(table)
        ended_after = None
        for end in range(len(table) + 1, len(text) + 1):
            renderer.feed(text[end - 1])
            if renderer.tail.kind != "table" and ended_after is None:
                ended_after = text[len(table) : end]
                assert renderer.blocks_html.startswith(render_markdown(table)), line
                tail = renderer.tail  # the line, or the block it settled as at its end
                assert tail.kind == "code" or ended_after.endswith(tail.text), line
        assert ended_after == sure_after, line
        assert renderer.finish()[1] == render_markdown(text)


def test_a_heading_with_a_pipe_waits_for_the_next_line_which_may_make_it_a_tables_head() -> None:
    """markdown-it makes "## Plan | Cost" over a delimiter row a table (its first cell
    "## Plan"). The heading settled as its line ended, the delimiter row and the rows after it
    a paragraph, and so the reply was saved, unlike its one-shot render. A heading with a pipe
    now waits for the next line; so does a code fence's opening line with one (it opened a
    code block, a second read found)."""
    for text in (
        "## Plan | Cost\n|---|---|\n| a | b |\n",
        "``` | x |\n|---|---|\n",
        "# h\nx\n``` | x |\n--|--\n# h\n```\n2) y",
        "``` | x |\ncode\n```\n",
        "Intro\n\n# A | B\n--|--\nx | y\n\nafter\n",
        "## A | B\npara\n",
        "## A | B\n\npara\n",
    ):
        for pieces in (text.splitlines(keepends=True), list(text)):
            page, whole, renderer = stream(pieces)
            assert whole == renderer.blocks_html == page.html == render_markdown(text), text
            assert all(whole.startswith(shown) for shown in page.shown), text
    renderer = ProgressiveRenderer()
    renderer.feed("## A | B\n")
    assert renderer.tail == Tail("text", "## A | B\n")
    renderer.feed("para\n")
    assert renderer.blocks_html == "<h2>A | B</h2>\n"


def test_an_items_line_over_a_delimiter_row_stays_an_item_of_its_list() -> None:
    """At the top level "- a | b" over a delimiter row is a table (markdown-it's table rule
    comes before its list rule); as the next item of a list it is an item, the delimiter row
    its lazy line. The open item, parsed from its own line, ended the list and drew a table
    with "- a" in its head, and the reply was saved so."""
    for text in (
        "- nested\n- a | b\n|---|---|\n",
        "1. x\n2. a | b\n--|--\n| 1 | 2 |\n\npara\n",
        "- x\n- a | b\n|---|---|\n\n| h | i |\n|---|---|\n| 1 | 2 |\n",
    ):
        for pieces in ([text], text.splitlines(keepends=True), list(text)):
            page, whole, renderer = stream(pieces)
            assert whole == renderer.blocks_html == page.html == render_markdown(text), text


# Lines of every kind of block, and of what may end or continue one, in any order: the
# structured documents above miss what their order never puts together (a heading with a
# pipe over a delimiter row, an item over one, hypothesis).
SOUP_LINES = st.sampled_from(
    [
        *("## Plan | Cost", "# h", "#", "#x | y", "para text", "a | b", "| a | b |", "|---|---|"),
        *("--|--", ":-:|--:", "   |---|", "| - |", "|", "---", "===", "***", "* * *", "- item"),
        *("- a | b", "+ plus", "  - nested", "1. one", "2) two", "1 | 2", "> quote", "> a | b"),
        *("   > q", "```", "```py", "~~~", "    code", "\tcode", "[r]: /u", "[r]", "'title'"),
        *("*em* **b**", "`x | y`", "| **a** | `b` |", "a \\| b", "<div>", "", "", "  "),
        *("``` | x |", "[", "x]: /u"),
        # lines that start no block, however indented: a paragraph's, or an item's or a
        # quote's lazy line
        *("**Note:** x", "#tag", "`x` y", "2024 was", "_a_ b", "=x", "  lazy", "    deep"),
        *("\tdeep", "  > q", ">\tx", "- > q", "> - i", "  - sub", "      deeper", "1) x"),
        *(">> qq", "> > q", "  | c | d |", "\t- x", " \t", "[r]: /u 'title'"),
        *("- [a]:", "/u", ">>     x", ">> [b]: /u", "-\t|x", ">", "> 'title", "- (x"),
    ]
)


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_a_soup_of_lines_streams_to_the_one_shot_render(data: st.DataObject) -> None:
    text = "\n".join(data.draw(st.lists(SOUP_LINES, min_size=1, max_size=9)))
    text += data.draw(st.sampled_from(["", "\n"]))
    page, whole, renderer = stream(data.draw(split(text)))
    assert whole == render_markdown(text)
    if whole == renderer.blocks_html and not page.redrawn:
        assert all(whole.startswith(shown) for shown in page.shown)
    if not LABEL_OVER_UNDERLINE.search(text):
        fed_line_by_line_as_at_once(text)


@pytest.mark.parametrize(
    ("row", "cells"),
    [
        ("| **a** | b", ("<strong>a</strong>", "b")),  # ended, then being written
        ("**a** | b |", ("<strong>a</strong>", "b")),  # no pipe before the first cell
        ("| a \\| **b** |", ("a | <strong>b</strong>", "")),  # an escaped pipe is text
        ("| a | b | c | d", ("a", "b")),  # cells past the table's are not drawn
        ("| `x` ", ("<code>x</code>", "")),  # no pipe after it: as it will render, so far
        ("\xa0| a | **b** |", ("a", "<strong>b</strong>")),  # markdown-it's white space
        ("| a\u3000| \u2003b", ("a", "b")),
    ],
)
def test_a_cell_of_the_row_being_written_is_drawn_rendered_once_a_pipe_ends_it(
    row: str, cells: tuple[str, ...]
) -> None:
    renderer = ProgressiveRenderer()
    renderer.feed("| h | i |\n|---|---|\n" + row)
    assert renderer.tail.kind == "table" and renderer.tail.cells == cells


def test_a_table_is_drawn_row_by_row_with_its_row_being_written_in_cells() -> None:
    from chat.fragments import CONTENT, text_step

    renderer = ProgressiveRenderer()
    renderer.feed("Sizes:\n\n| name | size |\n|---|--:|\n")
    tail = renderer.tail
    assert tail.kind == "table" and tail.cells == ("", "") and tail.aligns == ("", "align-right")
    assert tail.table == (
        '<table>\n<thead>\n<tr>\n<th>name</th>\n<th class="align-right">size</th>\n</tr>\n</thead>\n'
    )
    step = renderer.feed("| a & b")
    assert renderer.tail.cells == ("a &amp; b", "")  # as written while the cell is open
    assert step.row_cells == ((1, "a &amp; b"),) and not step.row_redrawn
    assert text_step(CONTENT, 5, step, renderer.tail) == (
        '<span hx-swap-oob="beforeend:#z5 > tr > :nth-child(1)">a &amp; b</span>'
    )
    # A mark in it: the cell is drawn as it will render if the mark closes where it ends
    # (it showed "`a & b" until its pipe came), the closing mark waiting for what follows
    step = renderer.feed(" `c`")
    assert renderer.tail.cells == ("a &amp; b <code>c</code>", "")
    assert step.row_cells == ((1, " <code>c</code>"),)
    step = renderer.feed(" | 1 ")
    # A pipe ended the first cell: it is drawn as the table will render it, at once, not at
    # the line's end; the blanks after a cell's text show once more text follows.
    assert renderer.tail.cells == ("a &amp; b <code>c</code>", "1")
    assert step.cells_set == () and step.row_cells == ((2, "1"),)
    assert text_step(CONTENT, 5, step, renderer.tail) == (
        '<span hx-swap-oob="beforeend:#z5 > tr > :nth-child(2)">1</span>'
    )
    step = renderer.feed("0 |\n| b")
    # the row's line ended: drawn rendered, in a body of its own; the next row begins
    assert (
        step.rows_html == "<tbody>\n<tr>\n<td>a &amp; b <code>c</code></td>\n"
        '<td class="align-right">1 0</td>\n</tr>\n</tbody>\n'
    )
    assert step.row_redrawn and renderer.tail.cells == ("b", "")
    assert text_step(CONTENT, 5, step, renderer.tail) == (
        '<table hx-swap-oob="beforebegin:#z5">' + step.rows_html + "</table>"
        '<span hx-swap-oob="innerHTML:#z5 > tr > :nth-child(1)">b</span>'
        '<span hx-swap-oob="innerHTML:#z5 > tr > :nth-child(2)"></span>'
    )
    step = renderer.feed(" | 2 |\n\nDone")  # a blank line ends the table: rendered whole
    assert step.tail_replaced and renderer.tail == Tail("text", "Done")
    assert step.blocks_html == render_markdown(
        "| name | size |\n|---|--:|\n| a & b `c` | 1 0 |\n| b | 2 |"
    )


def test_a_tables_cells_being_written_are_drawn_as_their_marks_will_close() -> None:
    """A cell being written, in the head or a row, showed its marks as text ("`--fast",
    "*optional") until its pipe came: it is drawn as it will render if they close where it
    ends, a code span as code from its first character."""
    renderer = ProgressiveRenderer()
    renderer.feed("| `--fa")
    assert renderer.tail.kind == "head" and renderer.tail.cells[0] == "<code>--fa</code>"
    renderer.feed("st` | **Def")
    assert renderer.tail.cells[:2] == ("<code>--fast</code>", "<strong>Def</strong>")
    renderer.feed("ault** |\n|---|---|\n| x | [the do")
    assert renderer.tail.kind == "table" and renderer.tail.cells == ("x", "[the do")
    renderer.feed("cs](https://exa")
    assert renderer.tail.cells[1] == '<a rel="noopener noreferrer nofollow">the docs</a>'
    renderer.feed("mple.com) |")
    assert renderer.tail.cells[1].startswith('<a href="https://example.com"')


@pytest.mark.parametrize(
    "cell", ["2*3 is six", "f(*args) here", "_private names", "*.py files", "a **b** and 2**10"]
)
def test_a_cells_mark_that_seldom_closes_is_drawn_as_text_until_its_pipe(cell: str) -> None:
    """A cell's mark that seldom closes (in a word, after a parenthesis, before punctuation,
    any underscore's) drew the rest of the cell formatted until its pipe came, then snapped
    back to text ("2*3" showed "2" and an italic "3 is six"). It is drawn as text, as a
    paragraph's such mark is; what closed before it stays formatted."""
    renderer = ProgressiveRenderer()
    renderer.feed("| a | b |\n|---|---|\n| ")
    for character in cell:
        renderer.feed(character)
        drawn = renderer.tail.cells[0]
        assert "<em>" not in drawn and "<strong>" not in drawn.replace("<strong>b</strong>", "")
    renderer.feed(" |")
    assert renderer.tail.cells[0] == render_markdown(cell)[3:-5]  # as it renders once ended
    renderer = ProgressiveRenderer()
    for character in f"| x | {cell}":  # a head's cell too
        renderer.feed(character)
        assert "<em>" not in renderer.tail.cells[-1]


def test_a_tables_row_being_written_is_escaped_text() -> None:
    from chat.fragments import CONTENT, tail_html, text_step

    renderer = ProgressiveRenderer()
    renderer.feed("| a | b |\n|---|---|\n| <img src=x onerror=alert(1)>")
    step = renderer.feed(" | <script>x</script>")
    frame = text_step(CONTENT, 5, step, renderer.tail) + tail_html(CONTENT, 5, renderer.tail)
    assert "<img" not in frame and "<script" not in frame
    assert "&lt;img src=x onerror=alert(1)&gt;" in frame and "&lt;script&gt;x" in frame


def drawn_again_at_last(before: str, pieces: list[str]) -> tuple[ProgressiveRenderer, RenderStep]:
    """A renderer fed `before`, then `pieces`: its tail stays text, drawn as it comes, until
    the last piece, whose step draws it again (returned)."""
    renderer = ProgressiveRenderer()
    renderer.feed(before)
    for piece in pieces[:-1]:
        assert not renderer.feed(piece).tail_replaced
        assert renderer.tail.kind == "text", renderer.text
    step = renderer.feed(pieces[-1])
    assert step.tail_replaced
    return renderer, step


def test_a_lists_first_item_is_drawn_as_its_list_from_its_first_character() -> None:
    """A list's first item showed as text ("1. Install", its marker too) until the next item
    began, then jumped into a list. It is drawn as the list (its text as written) from its
    marker and first character on, for all its lines, where it will settle."""
    from chat.fragments import CONTENT, text_step

    renderer, step = drawn_again_at_last("Steps:\n\n", ["1", ".", " ", "I"])
    assert renderer.tail == Tail("item", "I", number="1", opens=True)
    assert '<div id="t5" hx-swap-oob="innerHTML"><ol start="1" class="tail-list"><li>' in (
        text_step(CONTENT, 5, step, renderer.tail)
    )
    step = renderer.feed("nstall **it**\n   more")
    assert not step.tail_replaced and step.blocks_html == ""
    assert renderer.tail == Tail("item", "Install **it**\n   more", number="1", opens=True)
    assert '<span id="x5" hx-swap-oob="beforeend">' in text_step(CONTENT, 5, step, renderer.tail)
    step = renderer.feed("\n2. R")  # the next item: the first settles in the list
    assert step.tail_replaced
    assert step.blocks_html == "<ol>\n<li>Install <strong>it</strong>\nmore</li>\n</ol>\n"
    assert renderer.tail == Tail("item", "R", number="2")
    renderer = fed_by_character("Intro\n\n7) seven")
    assert renderer.tail == Tail("item", "seven", number="7", opens=True)
    # Not (yet) a list's first item: a rule it may turn into, a table's head (a pipe), text
    for text in ["- -", "* * ", "-a", "1.5 kg", "- ", "    - code", "\t- x"]:
        renderer = fed_by_character(text)
        assert renderer.tail.kind == "text", text
    # A marker and a tab: the item's text is code, and its marks stay text (a second read's
    # fuzzer: "**b**" was drawn bold)
    renderer = fed_by_character("10. \t**b** x")
    assert renderer.tail.kind == "text" and renderer.tail.formatted == ""
    # A pipe (a second read: the item turned text at it, a code span's "ls | grep" say): it
    # stays an item until a delimiter row under it makes it a table's head.
    renderer = ProgressiveRenderer()
    renderer.feed("- Run `ls")
    for piece in [" | grep x` to list", "\n|-", "--|---|", "\n"]:
        step = renderer.feed(piece)
        if renderer.text.count("\n") < 2:
            assert not step.tail_replaced and renderer.tail.kind == "item", renderer.text
    assert step.tail_replaced and renderer.tail.kind == "table"


ANSWER = """## Getting started

Install it first:

1. Download the package
2. Run the installer
   - on Linux, with `sudo`
10. Restart

```python
print("hello")
# a comment
```

---

* one
+ two

~~~
code
~~~

### Done
"""
# As a model's tokens come: a marker, a number, a fence's backticks are tokens of their own
MODEL_TOKENS = re.compile(r"\n+| ?\w+| ?[^\w\s]+| +")
LONE_MARKER = re.compile(r" *(?:[-+*_ ]+|[0-9]+[.)]?|#{1,6}|`{1,}\w*|~{1,}\w*)[ \t]*")


@pytest.mark.parametrize("by", ["token", "character"])
def test_a_line_that_is_only_a_blocks_marker_so_far_is_not_drawn(by: str) -> None:
    """A list item's marker ("-", "2."), a heading's ("##") and a code fence's lines ("```py",
    its closing "```") showed as text for a frame, at the end of the text before them, until
    the character after them told what they are; then the item, the heading, the code frame
    took their place. Such a line is held back until then, so it is first drawn as what it
    is. A line that turns out text is drawn as soon as it does ("#tag", "2024 was", "-5")."""
    pieces = MODEL_TOKENS.findall(ANSWER) if by == "token" else list(ANSWER)
    assert "".join(pieces) == ANSWER
    renderer = ProgressiveRenderer()
    for piece in pieces:
        renderer.feed(piece)
        tail = renderer.tail
        last_line = tail.text[tail.text.rfind("\n") + 1 :]
        if tail.kind != "table" and last_line.strip():
            assert not LONE_MARKER.fullmatch(last_line), (renderer.text, tail)
    page, whole, _ = stream(pieces)
    assert whole == page.html == render_markdown(ANSWER)
    for text, drawn in [("#tag", "#tag"), ("2024 was", "2024 was"), ("-5", "-5"), ("x\n- ", "x\n")]:
        assert fed_by_character(text).tail.text == drawn, text


def test_a_heading_is_drawn_as_one_while_its_line_is_written() -> None:
    """A heading's line showed as text ("## Getting started", its marks too) until it ended,
    then jumped into a heading. From its marker, a blank and a first character it is drawn as
    the heading, its words formatted as their marks close."""
    from chat.fragments import CONTENT, text_step

    renderer, step = drawn_again_at_last("Intro.\n\n", ["#", "#", " ", "G"])
    assert renderer.tail == Tail("heading", "G", level=2)
    assert text_step(CONTENT, 5, step, renderer.tail) == (
        '<div id="t5" hx-swap-oob="innerHTML"><h2 class="tail-heading"><span id="x5">G</span>'
        "</h2></div>"
    )
    step = renderer.feed("etting **started** ")
    assert not step.tail_replaced and renderer.tail.text == "Getting **started** "
    assert "<strong>started</strong>" in text_step(CONTENT, 5, step, renderer.tail)
    step = renderer.feed("now\n")  # its line ended: it settles
    assert (
        step.tail_replaced and step.blocks_html == "<h2>Getting <strong>started</strong> now</h2>\n"
    )
    assert renderer.tail == Tail("text", "")
    for text in ["#tag", "####### seven", "#", "## ", "    ## code", "## A | B\n"]:
        renderer = fed_by_character(text)
        assert renderer.tail.kind == "text", text


def assert_the_list_settles_as_the_line_begins(before: str, line: str) -> None:
    """`before` then `line`, fed at once, as the two, and a character at a time: the list
    before the line is settled (rendered as it will be), the line is the tail, and the page
    ends as the one-shot render."""
    text = before + line
    for pieces in ([text], [before, line], list(text)):
        renderer = ProgressiveRenderer()
        for piece in pieces:
            renderer.feed(piece)
        assert renderer.text[renderer.settled :] + renderer.held == line, pieces
        assert renderer.blocks_html == render_markdown(before), pieces
        page, whole, _ = stream(pieces)
        assert whole == page.html == render_markdown(text), pieces


@pytest.mark.parametrize(
    ("before", "line"),
    [
        ("- a\n- b\n\n", "After the list."),
        ("- a\n- b\n\n", "**Note:** x"),
        ("- a\n- b\n\n", "## Next"),
        ("- a\n- b\n\n", "> quoted"),
        ("- a\n- b\n\n", "```sh\nx"),  # its opening line held back until it ends
        ("- a\n- b\n\n", "* another list"),
        ("- a\n- b\n\n", "1. a numbered list"),
        ("- a\n- b\n\n", "--- a rule"),
        ("- a\n- b\n\n", " x, indented less than the item"),
        ("1. a\n2. b\n\n", "After the list."),
        ("1. a\n2. b\n\n", "- a bullet list"),
        ("1. a\n2. b\n\n", "2024 was a year"),  # a number and no delimiter: no item
        ("1. a\n2. b\n\n", "3) another list"),
        ("1. a\n2. b\n\n", "3.5 times"),
        ("1. a\n\n", "After a one-item list."),
        ("- a\n  - nested\n\n", "After the lists."),
        ("Intro\n\n- a\n\n\n", "After two blank lines."),
        ("- a\n- b\n \t\n", "After a blank line of blanks."),
    ],
)
def test_a_line_after_a_blank_line_that_the_list_cannot_take_ends_it_as_it_begins(
    before: str, line: str
) -> None:
    """The words after a list went into its last item (drawn indented under its marker) until
    their line ended, then jumped out of it: a paragraph after a list is most often one long
    line. A line after a blank line that the list cannot take ends it from its first
    characters on: the list settles and the line is the tail."""
    assert_the_list_settles_as_the_line_begins(before, line)


@pytest.mark.parametrize(
    ("before", "line"),
    [
        ("- a\n- b\n\n", "  more of b"),  # indented into the item
        ("- a\n- b\n\n", "- c"),  # its next item
        ("- a\n- b\n\n", "-"),
        ("1. a\n2. b\n\n", "3. c"),
        ("1. a\n2. b\n\n", "2024"),  # a number under a numbered list waits for more
        ("1. a\n2. b\n\n", "3."),
        ("- a\n- b\n", "lazy, no blank line"),  # a lazy line of the item's paragraph
        ("- a\n- b\n\n", "\tx"),
    ],
)
def test_a_line_the_list_may_take_leaves_it_open(before: str, line: str) -> None:
    renderer = fed_by_character(before + line)
    tail = renderer.tail
    text = tail.text + renderer.held  # (a lone marker is held back)
    assert tail.kind == "item" and (text.endswith(line) or line.endswith(text)), line


@pytest.mark.parametrize(
    "text",
    [
        "**Ada Lovelace**  \n12 St James's Square  \nLondon\\\nSW1Y **4JH** `now`",
        "- a  \n  b\\\n  **c** d",  # in an item
        "> a  \n> b\\\n> **c** d",  # in a quote
        "*The maples blush,*\\\n*the geese write,*  \n**and** `every` leaf",  # marks before
    ],
)
def test_a_hard_line_break_is_drawn_as_the_break_as_its_line_ends(text: str) -> None:
    """An address's or a poem's lines ran on as one line ("Ada Lovelace 12 St James's
    Square") until the paragraph settled and broke them; after a backslash's break, the
    words' marks showed as text ("**4JH**") until then. Each break is drawn as the break
    (what markdown-it renders) from its line's end, and the words after it formatted."""
    breaks = text.count("  \n") + text.count("\\\n")
    for pieces in (list(text), re.findall(r"\s*\S+|\s+", text), [text]):
        tail = tails_on_a_page(text, pieces)[-1]
        drawn = formatted_html(tail, "w5")
        assert drawn.count("<br>\n") == breaks, (pieces, drawn)
        assert "\\" not in drawn and "*" not in drawn and "`" not in drawn, drawn
        assert drawn.count("<strong>") == text.count("**") // 2, drawn


@pytest.mark.parametrize(
    ("text", "drawn"),
    [
        ("a  \n\nb", "b"),  # at a paragraph's end, the spaces are nothing: no break
        ("a\\\n\nb", "b"),  # nor a backslash, which is text there
        ("a \nb", "a \nb"),  # one space: no break
        ("a\t\nb", "a\t\nb"),  # nor a tab
        ("    a  \n    b", None),  # code: as it is
    ],
)
def test_what_is_no_hard_line_break_is_not_drawn_as_one(text: str, drawn: str | None) -> None:
    from chat.fragments import CONTENT, tail_html

    tail = tails_on_a_page(text, list(text))[-1]
    if drawn is not None:
        assert formatted_html(tail, "w5") == drawn
    assert "<br>" not in tail_html(CONTENT, 5, tail)


@pytest.mark.parametrize(
    "text",
    [
        "- a\n  \n  b",  # a blank line of an item
        "> a\n>   \n> b",  # a quote's blank line
        ">  \nabc def ghi\n",  # an empty quote's line, then a paragraph
        "> -   \nword more\n",  # an empty item's line
    ],
)
def test_a_line_of_blanks_draws_no_line_break(text: str) -> None:
    """A second read: two spaces at the end of a line with no text (blanks, a quote's or an
    item's marker) were drawn as a line break, which markdown never renders there."""
    from chat.fragments import CONTENT, tail_html

    for tail in tails_on_a_page(text, list(text)):
        assert "<br>" not in tail_html(CONTENT, 5, tail), tail


def test_a_title_that_no_quote_closes_hides_no_more_than_a_title() -> None:
    """A second read: a link's title being written is drawn as the link, its title not; one
    that no quote closed hid the words after it, up to 400 characters."""
    from chat.fragments import CONTENT, tail_html

    text = 'See [docs](/u "Docs) for more ' + "words " * 20
    drawn = tail_html(CONTENT, 5, tails_on_a_page(text, list(text))[-1])
    assert "for more words words" in drawn, drawn


@pytest.mark.parametrize(
    ("before", "line"),
    [
        ("1. **Install** it\n", "  - run `pip install`"),  # two spaces under "1. "
        ("1. Install\n   - pip\n", "  - then"),  # under its own nested points
        ("10. Install\n", "   - pip"),  # three under "10. "
        ("- Install\n", "2. Use it"),  # another kind of list, any number
        ("- Install\n", "+ other"),  # another bullet
        ("1. Install\n", "1) other"),  # another delimiter
        ("1. Install\n", "## Next"),
        ("1. Install\n", " > a note"),
    ],
)
def test_a_block_right_after_an_items_text_indented_less_ends_the_list_as_it_begins(
    before: str, line: str
) -> None:
    """Two-space points under "1. Step" (models write them so) are no points of the step: its
    text is three in, so they start a list of their own after the numbered one. They were
    drawn as the step's text ("Install it - run pip install") until their line ended, then
    jumped out of it; so was a heading, a quote or another list's item right after an item's
    text. Such a line ends the list from its marker and first character on: the list
    settles, and the line is the tail, drawn as its block."""
    assert_the_list_settles_as_the_line_begins(before, line)
    text = before + line + " and more\n"
    tails_on_a_page(text, list(text))


@pytest.mark.parametrize(
    "text",
    [
        "1. Install\n   - pip",  # indented to the step's text: its points
        "1. Install\n  more of it",  # a lazy line
        "1. Install\n  #tag",  # no heading
        "1. Install\n  -x",  # no item
        "1. Install\n 2. Use",  # the next step
        "- Install\n - Use",  # the next point
    ],
)
def test_a_line_right_after_an_items_text_that_it_may_take_leaves_the_list_open(
    text: str,
) -> None:
    renderer = fed_by_character(text)
    # (the next item settles the one before, and the list stays open)
    assert renderer.blocks_html == renderer.open_list_html, text
    assert renderer.tail.kind == "item", text
    tails_on_a_page(text, list(text))


@pytest.mark.parametrize(
    ("line", "kind", "drawn"),
    [
        ("- install it", "item", "install it"),
        ("* install it", "item", "install it"),
        ("1. install it", "item", "install it"),
        ("## Install", "heading", "Install"),
        ("> install it", "quote", "install it"),
    ],
)
def test_a_block_right_after_a_paragraphs_line_ends_the_paragraph_as_it_begins(
    line: str, kind: str, drawn: str
) -> None:
    """A list, a heading or a quote on the line right after a paragraph's (no blank line
    between, as models often write "Steps:\n- ...") was drawn as the paragraph's text
    ("Steps: - install it") until its line ended, then jumped into its block. It ends the
    paragraph from its marker and first character on: the paragraph settles, and the line is
    the tail, drawn as its block."""
    before = "Steps to **take**:\n"
    text = before + line
    for pieces in ([text], [before, line], list(text), [before[:-1], "\n" + line]):
        renderer = ProgressiveRenderer()
        for piece in pieces:
            renderer.feed(piece)
        assert renderer.blocks_html == render_markdown(before), pieces
        tail = renderer.tail
        assert tail.kind == kind and tail.text == drawn, (pieces, tail)
        page, whole, _ = stream(pieces)
        assert whole == page.html == render_markdown(text), pieces


@pytest.mark.parametrize(
    "line",
    ["2. not a list", "-5 degrees", "#5 is next", "    - indented: the paragraph's", "- ", "1."],
)
def test_a_line_that_starts_no_block_goes_on_with_the_paragraph(line: str) -> None:
    renderer = fed_by_character("Steps to take:\n" + line)
    assert renderer.blocks_html == "" and renderer.tail.kind == "text", renderer.tail


@settings(max_examples=1000, deadline=None)
@given(
    mark=st.sampled_from(["`", "*", "**", "_", "__"]),
    words=st.text(st.sampled_from("ab1é <>&\"'\\*_`\t"), min_size=1, max_size=12),
    before=st.sampled_from(["", "x ", "word\t", "(", "a", "**b** ", "1*", "1* ", "*a "]),
)
def test_words_drawn_without_a_render_are_drawn_as_the_render_draws_them(
    mark: str, words: str, before: str
) -> None:
    """An open code span or emphasis of plain words is drawn without a render (most spans, as
    their first word comes): exactly as markdown-it renders it with its marks closed."""
    from chat.markdown import render_words
    from chat.progressive import _HELD_END, _SIMPLY_OPEN, _closed, drawn_as_closed

    piece, preceding = mark + words, before[-1:] or " "

    def render(closed: str) -> str | None:
        whole, prefix = render_words(before + closed, {}), render_words(before, {})
        if whole is None or prefix is None or not whole.startswith(prefix):
            return None
        return whole[len(prefix) :]

    if render_words(before, {}) is None:
        return  # (a pending span after such a word is drawn as text)
    drawn = drawn_as_closed(piece, preceding, render)
    core = piece.rstrip(_HELD_END)
    if not _SIMPLY_OPEN.fullmatch(core) or not preceding.isspace():
        return
    closed, closing, _, _ = _closed(core, preceding)
    assert drawn is not None and drawn.html == render(closed + closing), (piece, before)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_document_is_drawn_on_the_page_as_the_renderer_draws_it(data: st.DataObject) -> None:
    """Any document (lists with code, quotes, tables, headings...) split anyhow: the page,
    changed by the socket's fragments, is the renderer's drawing after each step, which is
    that of a renderer given the text so far at once; it ends as the one-shot render."""
    text = data.draw(documents())
    # (A definition after a block that uses it: the reply is drawn again whole at its end)
    assume("]:" not in text)
    tails_on_a_page(text, data.draw(split(text)))


STEPS_WITH_CODE = (
    "Steps:\n\n1. **Install** it:\n   ```bash\n   pip install chatsite\n\n   chatsite --help\n"
    "   ```\n2. Run it:\n   ```\n   chatsite serve\n"
)

# (as most models write them: a blank line before and after each step's code)
LOOSE_STEPS_WITH_CODE = (
    "Steps:\n\n1. **Install** it:\n\n   ```bash\n   pip install chatsite\n\n   chatsite --help\n"
    "   ```\n\n2. Run it:\n\n   ```\n   chatsite serve\n"
)


@pytest.mark.parametrize("steps", [STEPS_WITH_CODE, LOOSE_STEPS_WITH_CODE], ids=["tight", "loose"])
def test_a_code_block_in_a_lists_item_is_drawn_as_code_while_it_is_written(steps: str) -> None:
    """A list's item with a code block after its first line (as models write steps) showed
    the block as the item's text, its fences too ("```bash"), until the next item settled
    it. The block is drawn as the code block from its first line, the item's first line
    rendered before it; its code added as it comes, without the item's indentation; once it
    closes, rendered (highlighted) as the item will render it, which settles in place. So
    too after a blank line (a loose list's step)."""
    from chat.fragments import CONTENT, tail_html, text_end, text_step
    from tests.live import PageModel, text_of

    renderer, page = ProgressiveRenderer(), PageModel()
    page.apply(
        '<article id="m5" hx-swap-oob="true"><div id="c5"></div><div id="t5"></div></article>'
    )
    shown = []
    for token in re.findall(r"\s*(?:\w+|[^\w\s]+)|\s+", steps):
        page.apply(text_step(CONTENT, 5, renderer.feed(token), renderer.tail))
        assert page.elements["t5"] == tail_html(CONTENT, 5, renderer.tail)
        shown.append(text_of(page.elements["t5"]))
    assert not any("```" in text for text in shown), shown  # a fence never shows
    tail = renderer.tail
    assert tail.kind == "item" and tail.item_intro == "Run it:" and tail.item_block == ""
    assert tail.item_code == "chatsite serve\n"
    drawn = tail_html(CONTENT, 5, tail)
    assert '<code id="x5">chatsite serve\n</code>' in drawn
    # The first item's block, closed, was drawn as it settled: highlighted, in the list
    first = render_markdown(steps.split("2.")[0])
    assert (
        '<code class="language-bash">' in first and first.split("<li>")[1] in (page.elements["c5"])
    )
    page.apply(text_end(CONTENT, 5, renderer.finish()[0]))
    assert page.elements["c5"] == render_markdown(steps)
    fresh = ProgressiveRenderer()
    fresh.feed(steps[:-5])
    assert fresh.tail.item_code == "chatsite s"  # (a renderer given the text at once)


@pytest.mark.parametrize(
    "text",
    [
        "1. Run:\n   ```\n   x\nnot indented",  # the item ends: its code is no block of it
        "1. Run:\n   ```\n   x\n   ```\n  less indented",  # a line that ends the list
        "1. # Heading\n   ```\n   x",  # a first line that is no paragraph
        "1. Run:\n\n```\n   x",  # a blank line, then a block that ends the list
        "1. Run:\n ```\n x",  # indented less than the item's text
    ],
)
def test_an_item_whose_code_block_is_not_simply_its_second_line_is_drawn_as_text(
    text: str,
) -> None:
    renderer = fed_by_character(text)
    tail = renderer.tail
    assert tail.kind != "item" or tail.item_intro is None, tail


@pytest.mark.parametrize(
    ("text", "intro"),
    [
        (
            "1. Install the CLI first.\n   Then run:\n   ```bash\n   pip install x\n   ```\n2. Next",
            "Install the CLI first.\nThen run:",
        ),
        (
            "- **Setup** it\nlazily, then:\n  ```\n  make\n  ```\n- Next",
            "<strong>Setup</strong> it\nlazily, then:",
        ),
    ],
)
def test_an_items_code_after_lines_of_text_is_drawn_as_code_while_it_is_written(
    text: str, intro: str
) -> None:
    """A step's code after two lines of its text (its first line, then a word on it) showed
    as the step's text, its fences too, until the next step began: only a block right after
    the first line was drawn as code. The step's first paragraph is drawn rendered, then its
    code as it comes."""
    from chat.fragments import CONTENT, tail_html
    from tests.live import text_of

    for pieces in (re.findall(r"\s*\S+|\s+", text), list(text)):
        tails = tails_on_a_page(text, pieces)
        assert not any("```" in text_of(tail_html(CONTENT, 5, tail)) for tail in tails)
        coded = [tail for tail in tails if tail.item_intro is not None]
        assert coded and all(tail.item_intro == intro for tail in coded), coded
        assert "make\n" in coded[-1].item_code or "pip install x\n" in coded[-1].item_code


def test_an_items_points_after_lines_of_text_are_drawn_as_its_list() -> None:
    """A step's points after a second line of its text ("1. **Setup**", "   Do this
    first.", "   - ...") showed as its text, their markers too, until the next step began."""
    text = "1. **Setup**\n   Do this first.\n   - sub a\n   - sub **b**\n2. Next"
    for pieces in (re.findall(r"\s*\S+|\s+", text), list(text)):
        tails = tails_on_a_page(text, pieces)
        listed = [tail for tail in tails if tail.item_list]
        assert listed[0].item_intro == "<strong>Setup</strong>\nDo this first."
        assert listed[-1].item_list_items == "<li>sub a</li>\n"
        assert not any(re.search(r"(^|\n) *- ", tail.text) for tail in tails), tails
        # (the points' markers: no tail's text, drawn from its point being written, has one)


LOOSE_STEPS = (
    "Here is how:\n\n1. **Install it**\n\n   Run the *installer* and wait; it takes\n"
    "   a minute.\n\n2. **Eat**\n\n   - an `apple`\n   - a pear\n\n3. **Rest**\n\n   Done."
)


def test_a_loose_steps_paragraph_and_points_are_drawn_under_its_first_line() -> None:
    """A loose step ("1. **Install it**", a blank line, then its text or its points, as
    ChatGPT writes steps) drew its text on its title's line, and its points as that text,
    markers too, until the next step began: then the text moved under the title. They are
    drawn under the title, rendered as a paragraph, as they are written."""
    for pieces in (re.findall(r"\s*\S+|\s+", LOOSE_STEPS), list(LOOSE_STEPS)):
        tails = tails_on_a_page(LOOSE_STEPS, pieces)
        for tail in tails:
            if tail.kind == "item" and re.search(r"\S\n\n +\S", tail.text):
                raise AssertionError(tail)  # (two paragraphs drawn as one's text)
        paragraphs = [tail for tail in tails if tail.item_paragraph]
        assert {tail.item_intro for tail in paragraphs} == {
            "<strong>Install it</strong>",
            "<strong>Rest</strong>",
        }
        assert paragraphs[0].text == "R" or paragraphs[0].text.startswith("Run")
        assert any(
            tail.text == "Run the *installer* and wait; it takes\n   a minute."
            for tail in paragraphs
        )
        points = [tail for tail in tails if tail.item_list]
        assert points and all(
            tail.item_intro == "<strong>Eat</strong>" and tail.item_loose for tail in points
        )
        assert not any(re.search(r"(^|\n) *- ", tail.text) for tail in tails), tails


def test_a_loose_steps_paragraph_is_drawn_as_its_paragraph() -> None:
    from chat.fragments import CONTENT, tail_html

    renderer = fed_by_character("1. **Title**\n\n   Its *text")
    assert tail_html(CONTENT, 5, renderer.tail) == (
        '<ol start="1" class="tail-list"><li><p><strong>Title</strong></p>'
        '<p class="tail-paragraph"><span id="x5">Its <span id="w5"><em>text</em></span></span>'
        "</p></li></ol>"
    )
    renderer = fed_by_character("- **Eat**\n\n  - an apple")
    assert tail_html(CONTENT, 5, renderer.tail) == (
        '<ul class="tail-list"><li><p><strong>Eat</strong></p><ul class="tail-sublist">'
        '<li id="z5"><span id="x5">an apple</span></li></ul></li></ul>'
    )


POINT_WITH_CODE = (
    "1. **Set up**\n   - Create a venv:\n     ```bash\n     python -m venv .venv\n"
    "     source .venv/bin/activate\n     ```\n   - Then install it\n2. Run it"
)
DEEP_OUTLINE = (
    "* **Frontend**\n    * Framework:\n        * React with `hooks`\n        * Vue\n"
    "    * Styling\n* **Backend**\n    * Django"
)


@pytest.mark.parametrize("text", [POINT_WITH_CODE, DEEP_OUTLINE], ids=["code", "deeper"])
def test_a_points_code_and_a_list_nested_in_a_point_are_drawn_rendered_while_written(
    text: str,
) -> None:
    """A step's point with its code ("- Create a venv:", then a fence), or with points of
    its own (a third level, as Gemini's outlines go), showed as the point's text, fences and
    markers too, until the next step began. Its lines are drawn rendered as each line's
    text begins, and that line's text where it renders as it comes (in the code, in the
    deeper point)."""
    from chat.fragments import CONTENT, tail_html
    from tests.live import text_of

    for pieces in (re.findall(r"\s*\S+|\s+", text), list(text)):
        tails = tails_on_a_page(text, pieces)
        shown = [text_of(tail_html(CONTENT, 5, tail)) for tail in tails]
        assert not any("```" in drawn for drawn in shown), shown
        assert not any(re.search(r"(^|\n) *[-*] ", drawn) for drawn in shown), shown
        rendered = [tail.item_list_written for tail in tails if tail.item_list_written]
        assert rendered, tails
        if text == POINT_WITH_CODE:
            assert any('<code class="language-bash">' in before for before, _ in rendered)
            assert any(tail.text == "source .venv/bin/activate" for tail in tails)
        else:
            assert any("<li>React with <code>hooks</code></li>" in b for b, _ in rendered)


def test_a_points_line_being_written_is_drawn_where_it_renders() -> None:
    from chat.fragments import CONTENT, tail_html

    # (a code span's "\\|" is no cell's escaped pipe: drawn as it renders, a second read)
    renderer = fed_by_character("> - a\n> - `a \\| b` x")
    assert renderer.tail.line_html == "<code>a \\| b</code> x"

    renderer = fed_by_character("- a\n  - Run:\n    ```sh\n    make all\n    make ins")
    drawn = tail_html(CONTENT, 5, renderer.tail)
    assert (
        '<li id="z5">Run:<div class="code-block"><div class="code-lang">sh</div><pre>'
        '<code class="language-sh">make<span class="w"> </span>all\n'
        '<span id="x5" class="tail-line">make ins</span>\n</code></pre>' in drawn
    ), drawn
    renderer = fed_by_character("- a\n  - b\n    - c and *d")
    drawn = tail_html(CONTENT, 5, renderer.tail)
    # (its words drawn as they will render if their marks close where the text ends)
    assert (
        '<li id="z5">b\n<ul>\n<li><span id="x5" class="tail-line">c and <em>d</em></span>' in drawn
    )


@pytest.mark.parametrize(
    "text",
    [
        "1. Run:\n   - a\n\n   Then the step's text",  # a paragraph after the list
    ],
)
def test_a_points_lines_that_render_as_no_point_are_drawn_as_its_text(text: str) -> None:
    renderer = fed_by_character(text)
    assert renderer.tail.item_list and renderer.tail.item_list_written is None


@pytest.mark.parametrize(
    "text",
    [
        "1. Run:\n   - a\n   - b\n" + "     more of b\n" * 300,
        "> - a\n" + "> - more\n" * 100 + "\nAfter",
        "1. Compare:\n   | a | b |\n   |---|---|\n" + "   | row | 1 |\n" * 100 + "2. Next",
        "> | a | b |\n> |---|---|\n" + ("> | " + "long row " * 30 + "| 1 |\n") * 20,
        # past 2,000 characters in a line's middle (a second read: that line, drawn as it was
        # written, went from the page)
        "> Note:\n>\n"
        + "".join(
            f"> - point {i} with quite a few more words to make it long enough\n" for i in range(40)
        )
        + "\nAfter",
    ],
)
def test_a_block_drawn_as_it_renders_so_far_that_grows_long_stays_as_it_was_drawn(
    text: str,
) -> None:
    """A step's point, a quote or an item with a table drawn as it renders so far, each line
    rendering it again, past 60 lines or 2,000 characters: it stays drawn as it rendered
    then, its lines after not drawn until it settles (it was drawn as text from then on, its
    markers and pipes too, then jumped to the render once more)."""
    lines = re.findall(r"[^\n]*\n|[^\n]+$", text)
    shown_only_grows(text, list(text))
    tails = tails_on_a_page(text, lines)
    drawings = [
        tail.item_list_written or tail.quote_rendered or tail.item_rendered for tail in tails
    ]
    last = max(i for i, drawn in enumerate(drawings) if drawn is not None)
    assert last >= len(lines) - 3  # (drawn until it settles)
    for drawn in drawings[70:]:
        if drawn is not None:
            assert drawn == drawings[last]
            assert drawn[0].count("<li>") + drawn[0].count("<tr>") <= 61, drawn
            assert "|" not in re.sub(r"<[^>]+>", "", drawn[0] + drawn[1])


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        # a tab on the blank line before a loose step's points: drawn as text for good, where
        # a renderer given the text at once drew the points (a second read)
        ("- a\n\n\t\n  * b", ["- a\n\n\t", "\n  * b"]),
        ("1. **Title**\n\n \t\n   - point", ["1. **Title**\n\n \t", "\n   - point"]),
        # a tab on a blank line after an item's code: the item drawn as text for good
        ("- a\n  ```\n  x\n  ```\n\t\n", "characters"),
        # a step's points, one settling as the next has its second line in the same piece
        # a line that starts as a fence's but is none (a backtick after it), or is longer
        # than a held line: the drawing of its start stayed as the line grew
        ("> - a\n> - ```x`y` z", ["> - a\n> - ```x", "`y` z"]),
        ("1. S\n   - a\n     - ```x`y`", ["1. S\n   - a\n     - ```x", "`y`"]),
        ("> x\n>\n> ````\n> ```a`b` more code here\n> ````\n", "characters"),
        ("> - x\n>\n> ~~~\n> ```" + "a" * 100 + "\n> ~~~\n", "characters"),
        # a line drawn formatted, then as its text once it is long
        ("> - a\n> - " + "*a " * 150 + "\n> - b", "characters"),
        (
            "1. word\n   - [link](https://example.com)\n     more\n   - word\n     more\n",
            ["1. word\n   - [link](https://example.com)\n     more\n", "   - word\n     more\n"],
        ),
    ],
)
def test_a_steps_blank_line_with_a_tab_waits(text: str, pieces: str | list[str]) -> None:
    """Found by a second read: fed piece by piece, the page differed from what a renderer
    given the text at once draws."""
    if pieces == "characters":
        pieces = list(text)
    tails_on_a_page(text, pieces)  # (it checks each step against a renderer fed at once)


QUOTE_OF_BLOCKS = (
    "Intro\n\n> **Note:**\n> - first *point*\n> - second\n>\n> ```sh\n> make\n> ```\n"
    "> > and a *quote* in it\n\nAfter"
)


def test_a_quote_holding_a_list_or_code_is_drawn_as_the_quote_while_it_is_written() -> None:
    """A note with points or code ("> **Note:**", "> - ...") was drawn as the quote, then as
    text, its markers too, from its first point on, then as the quote again as it settled.
    It is drawn as it renders so far, each line's text where it renders as it comes."""
    from chat.fragments import CONTENT, tail_html
    from tests.live import text_of

    for pieces in (re.findall(r"\s*\S+|\s+", QUOTE_OF_BLOCKS), list(QUOTE_OF_BLOCKS)):
        tails = tails_on_a_page(QUOTE_OF_BLOCKS, pieces)
        quoted = [tail for tail in tails if tail.kind == "quote"]
        shown = [text_of(tail_html(CONTENT, 5, tail)) for tail in quoted]
        assert not any(re.search(r"(^|\n) *(>|- |```)", drawn) for drawn in shown), shown
        rendered = [tail.quote_rendered for tail in quoted if tail.quote_rendered]
        assert any("<li>first <em>point</em></li>" in before for before, _ in rendered)
        assert any('<code class="language-sh">' in before for before, _ in rendered)
        assert any(tail.text == "and a *quote* in it" for tail in quoted)


@pytest.mark.parametrize(
    "text",
    [
        "1. Title\n\n   | a | b |\n   |---|---|\n",  # a table in the item
        "1. Title\n\n   [x]: /u\n",  # a definition, perhaps
        "1. Title\n\n       indented code\n",
        "1. # Heading\n\n   text",  # a first line that is no paragraph
        "1. Title\n\n   -1 is less than 0",  # (a line starting so: not known to be text)
        "1. Title\n\n\ttabbed",
    ],
)
def test_a_loose_items_line_that_may_be_another_block_is_drawn_as_before(text: str) -> None:
    for pieces in (list(text), [text]):
        renderer = ProgressiveRenderer()
        for piece in pieces:
            renderer.feed(piece)
        assert not renderer.tail.item_paragraph, renderer.tail


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        # a line of the item's first paragraph that may yet be a table's delimiter row, then
        # points: the points were drawn as text for good (a renderer given the text at once
        # drew the nested list)
        ("- Options:\n  | a | b |\n  - first point\n  - second", "tokens"),
        ("1. a\n|b\n   - x", "characters"),
        # a blank line with a tab in an item's code: the item was drawn as text for good as
        # the tab came (it is the code's blank line once it ends)
        ("1. Run:\n\n   ```sh\n   make\n\t\n   make install\n   ```\n2. Next", "characters"),
        ("- a\n  ```\n\t\n", ["- a\n  ```\n", "\t", "\n"]),
    ],
)
def test_a_line_being_written_that_may_yet_go_either_way_waits(
    text: str, pieces: str | list[str]
) -> None:
    """Found by a second read: fed piece by piece, the page differed from what a renderer
    given the text at once draws."""
    if pieces == "tokens":
        pieces = re.findall(r"\s*\S+|\s+|\|", text)
    elif pieces == "characters":
        pieces = list(text)
    tails_on_a_page(text, list(pieces))


def test_words_after_cjk_formatted_words_and_a_backslash_in_an_autolink_stay_text() -> None:
    """Found by a second read: a span right after words formatted at a CJK character was
    rendered without that character (the flanking rules then differ: drawn as text, rendered
    bold, or the other way round); a backslash in an autolink was drawn as an escape, and the
    words after it formatted, where the paragraph renders one link."""
    from chat.fragments import CONTENT, tail_html

    for text, shown in {
        "这是**重要**的**「概念」**。然后": "<strong>「概念」</strong>",
        '使用**a**和**"b"**。然后': '<strong>"b"</strong>',
        "中*a*中_b_。后": "_b_",
        "see <https://x.com/a\\b/_c_/> more": "\\b/_c_/",
        "see <https://x.com/\\*a*> more": "\\*a*",
    }.items():
        for renderer in (fed_by_character(text), ProgressiveRenderer()):
            if not renderer.text:
                renderer.feed(text)
            assert shown in tail_html(CONTENT, 5, renderer.tail), text


def test_a_quotes_blank_line_with_a_tab_keeps_it_drawn_as_the_quote() -> None:
    renderer, kinds = ProgressiveRenderer(), []
    for character in "> a\n>\t\n> b":
        renderer.feed(character)
        kinds.append(renderer.tail.kind)
    assert kinds[kinds.index("quote") :] == ["quote"] * (len(kinds) - kinds.index("quote"))


def test_an_items_text_after_its_code_block_is_drawn_after_the_block() -> None:
    """Text after an item's code block (a step's command, then a word on what it does) drew
    the whole item as text again, the block's fences too, until the item settled. It is drawn
    after the rendered block, as the item's text, formatted as it comes; the block is not sent
    again."""
    from chat.fragments import CONTENT, tail_html, text_end, text_step
    from tests.live import PageModel, text_of

    text = (
        "Steps:\n\n1. Run:\n   ```sh\n   pip install x\n   ```\n   Then check the **output**"
        " here,\n   and `x --help`.\n2. Next"
    )
    for tokens in (re.findall(r"\s*\S+|\s+", text), list(text)):
        renderer, page = ProgressiveRenderer(), PageModel()
        page.apply(
            '<article id="m5" hx-swap-oob="true"><div id="c5"></div><div id="t5"></div></article>'
        )
        frames = []
        for token in tokens:
            frames.append(text_step(CONTENT, 5, renderer.feed(token), renderer.tail))
            page.apply(frames[-1])
            assert page.elements["t5"] == tail_html(CONTENT, 5, renderer.tail)
            assert "```" not in text_of(page.elements["t5"])
            tail = renderer.tail
            if tail.text.startswith("Then check the **output** here"):
                assert tail.item_after and '<code class="language-sh">' in tail.item_block
                assert page.elements["t5"].count("<strong>output</strong>") == 1
        # The rendered block was sent once in the tail, and once as the item settled
        block = '<code class="language-sh">'
        assert sum(frame.count(block) for frame in frames) == 2
        page.apply(text_end(CONTENT, 5, renderer.finish()[0]))
        assert page.elements["c5"] == render_markdown(text)


STEPS_WITH_POINTS = (
    "Steps:\n\n1. **Install** it:\n   - Run `pip install chatsite` first\n   - Check the"
    " *version*\n2. Configure it\n   1. Open [the file](https://example.com/f)\n"
    "   2. Set **debug**\n"
)


def test_a_list_nested_in_a_lists_item_is_drawn_as_a_list_while_it_is_written() -> None:
    """A list's item whose second line begins a list nested in it (a step, then its points,
    as models write them) showed that list as the item's text, its markers too ("- Run"),
    until the next item settled it. It is drawn as the nested list from its first item's
    first character, the item's first line rendered before it; each of its items added,
    rendered, as the next begins (nothing sent twice), the one being written formatted as it
    comes; the item settles in place."""
    from chat.fragments import CONTENT, tail_html, text_end, text_step
    from tests.live import PageModel, text_of

    renderer, page = ProgressiveRenderer(), PageModel()
    page.apply(
        '<article id="m5" hx-swap-oob="true"><div id="c5"></div><div id="t5"></div></article>'
    )
    shown, frames, nested = [], [], []
    for token in re.findall(r"\s*(?:\w+|[^\w\s]+)|\s+", STEPS_WITH_POINTS):
        frame = text_step(CONTENT, 5, renderer.feed(token), renderer.tail)
        frames.append(frame)
        page.apply(frame)
        assert page.elements["t5"] == tail_html(CONTENT, 5, renderer.tail)
        shown.append(text_of(page.elements["t5"]))
        if renderer.tail.item_list:
            nested.append(renderer.tail)
    assert not any(re.search(r"(?m)^ *(?:[-*]|\d\.) ", text) for text in shown), shown
    assert not any(mark in text for text in shown for mark in ("**", "`", "](")), shown
    # Both items' lists were drawn as such, bulleted, then numbered, items added as they
    # settled
    assert {tail.item_list for tail in nested} == {"ul", "ol"}
    first = [tail for tail in nested if tail.item_list == "ul"]
    assert first[0].item_intro == "<strong>Install</strong> it:" and first[0].text == "Run"
    assert first[-1].item_list_items == "<li>Run <code>pip install chatsite</code> first</li>\n"
    assert first[-1].text == "Check the *version*\n"
    last = renderer.tail
    assert last.item_intro == "Configure it" and last.text == "Set **debug**\n"
    assert last.item_list_items.startswith('<li>Open <a href="https://example.com/f"')
    # Each item of a nested list was sent as it settled, where it stands in the final render,
    # and again in its item as that settled (as a table's rows are), not in between
    whole = render_markdown(STEPS_WITH_POINTS)
    frames.append(text_end(CONTENT, 5, renderer.finish()[0]))
    for item in ("<li>Run <code>pip install chatsite</code> first</li>", "<li>Open <a "):
        assert sum(frame.count(item) for frame in frames) == 2 and item in whole
    page.apply(frames[-1])
    assert page.elements["c5"] == whole


@pytest.mark.parametrize(
    "text",
    [
        "1. Run:\n   2. not a list: a paragraph's line",  # a number that is not 1
        "1. # Heading\n   - a",  # a first line that is no paragraph
        "1. Run:\n\t- a",  # a tab
        "1. Run:\n   * * *\n",  # a rule (its line held back until it ends)
        "1. Run:\n - a",  # indented less than the item's text
    ],
)
def test_an_item_whose_second_line_begins_no_nested_list_is_drawn_as_text(text: str) -> None:
    renderer = fed_by_character(text)
    tail = renderer.tail
    assert tail.kind == "item" and not tail.item_list and tail.item_intro is None, tail


@pytest.mark.parametrize(
    ("text", "written", "before"),
    [
        ("1. Run:\n   - a\n     more of a", "more of a", "a\n"),  # its item's second line
        ("1. Run:\n   - a\n\n   - b", "b", None),  # a blank line (the list turns loose)
        ("1. Run:\n   - a\n     - deeper", "deeper", "a\n<ul>\n<li>"),  # a list nested deeper
        ("1. Run:\n   - a\n   * b", "a\n   * b", None),  # another marker: another list
        ("1. Run:\n   - a\n   text of the item", "text of the item", "a\n"),  # (a lazy line)
        ("1. Run:\n   - a\n   - - -\n", "a\n   - - -\n", None),  # a rule
    ],
)
def test_a_line_of_a_nested_lists_item_is_drawn_in_it_until_the_item_settles(
    text: str, written: str, before: str | None
) -> None:
    """A line that begins no item of the nested list is one of its item being written (or
    follows the list in the item): that item is drawn as it renders so far, its line being
    written in its place (`before` it), or, where it renders as no one item (another list,
    a rule after it), as its text; the nested list drawn as it was (it drew the whole item
    as text again, then the list as the item settled)."""
    renderer = fed_by_character(text)
    tail = renderer.tail
    assert tail.item_list == "ul" and tail.item_intro == "Run:" and tail.text == written, tail
    assert (tail.item_list_written or (None,))[0] == before
    end, whole = renderer.finish()
    assert whole == render_markdown(text)


NESTED_ITEMS = st.tuples(
    st.sampled_from(["- ", "* ", "1. ", "2) ", "+   "]),
    st.lists(
        st.one_of(
            INLINE,
            INLINE.map(lambda s: f"`{s}` and **{s}**"),
            INLINE.map(lambda s: f"[{s}](https://example.com/{len(s)}) *{s}"),
            INLINE.map(lambda s: f"{s}\n     more of it"),  # (its second line)
            INLINE.map(lambda s: f"{s}\n     - deeper {s}"),
            st.just(""),
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(["\n", "\n", "\n\n"]),
)


@st.composite
def nested_documents(draw: st.DrawFn) -> str:
    """Lists whose items have lists nested in them (markers, numbers, indents, gaps)."""
    text = draw(st.sampled_from(["", "Steps:\n\n", "Text\n"]))
    for i in range(draw(st.integers(1, 3))):
        marker = draw(st.sampled_from(["1. ", "- ", "10. "]))
        marker = f"{i + int(marker[:-2])}. " if marker[0].isdigit() else marker
        text += marker + draw(INLINE) + "\n"
        inner, items, gap = draw(NESTED_ITEMS)
        indent = " " * (len(marker) + draw(st.sampled_from([0, 0, 1, 3, -1])))
        for j, item in enumerate(items):
            number = f"{j + int(inner[0])}{inner[1:]}" if inner[0].isdigit() else inner
            text += indent + number + item.replace("\n", "\n" + indent) + gap
    return text.rstrip("\n") if draw(st.booleans()) else text


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_list_nested_in_an_item_is_drawn_on_the_page_as_the_renderer_draws_it(
    data: st.DataObject,
) -> None:
    """However a list with lists nested in its items is split: the page, changed by the
    socket's fragments, is the renderer's drawing of its state (a snapshot's), which is that
    of a renderer given the text at once; the nested items drawn settled are those of the
    text's render, in order (tight: a loose list's drawn so until it settles); the page ends
    as the one-shot render."""
    text = data.draw(nested_documents())

    def unwrapped(html: str) -> str:  # (a loose list's items are drawn tight until it settles)
        return re.sub(r"</?p>|\n", "", html)

    whole = unwrapped(render_markdown(text))
    for tail in tails_on_a_page(text, data.draw(split(text))):
        if tail.item_list:
            position = 0
            for item in re.findall(r"<li>.*?</li>", unwrapped(tail.item_list_items)):
                found = whole.find(item, position)
                assert found >= 0, (item, whole)
                position = found + len(item)


def test_a_long_nested_list_costs_time_linear_in_its_size() -> None:
    """The nested list's lines are looked at once; each of its items is rendered alone."""

    def feed(items: int) -> float:
        renderer = ProgressiveRenderer()
        renderer.feed("1. Step:\n")
        started = time.process_time()
        for i in range(items):
            for piece in ("   -", f" point {i} with", " **bold**", " words\n"):
                renderer.feed(piece)
        return time.process_time() - started

    assert growth(feed, 300) < 11  # linear: ~4 (up to 9 when busy)


@pytest.mark.parametrize(
    "text",
    [
        "1. Run:\n   " + "- " * 45 + "-\n",  # a rule too long to be held back
        "1. Run:\n   - a\n   " + "- " * 45 + "x\n",  # a point that starts as a rule would
        "1. Run:\n   - a\n    - b\n   - c\n",  # a point indented otherwise, of the same list
        "1. Step:\n   - a\n   * b\n   - c\n",  # another marker's list, then the first's
        "1. Step:\n   - a\n\n   Note: c\n\n   - b\n",  # a paragraph between points
        "1. Step:\n   - a\n   ```sh\n   x\n   ```\n   - b\n",  # a code block between them
        "1. Step:\n   - a\n   # H\n   - b",  # a heading between them
    ],
)
def test_a_nested_list_is_drawn_alike_fed_anyhow_and_stays_a_list(text: str) -> None:
    """Shapes a second read found (a rule longer than a held line, a point that renders as no
    one point alone): the page is drawn as a renderer given the text at once draws it, fed a
    character at a time or in halves, and a nested list once drawn stays drawn until its
    item settles (it was drawn as text again, then as a list: two jumps)."""
    tails_on_a_page(text, list(text))
    tails_on_a_page(text, [text[: len(text) // 2], text[len(text) // 2 :]])
    renderer, drawn = ProgressiveRenderer(), False
    for character in text:
        renderer.feed(character)
        drawn = drawn or bool(renderer.tail.item_list)
        assert not drawn or renderer.tail.item_list, renderer.text


def test_blank_lines_after_a_nested_list_cost_time_linear_in_their_length() -> None:
    """A line of blanks (or tabs) after a point was looked at from its start on every feed."""
    for blank in (" ", "\t"):

        def feed(length: int, blank: str = blank) -> float:
            renderer = ProgressiveRenderer()
            renderer.feed("1. Step:\n   - a\n")
            started = time.process_time()
            for _ in range(length // 3):
                renderer.feed(blank * 3)
            return time.process_time() - started

        assert growth(feed, 20_000) < 11, blank  # linear: ~4 (up to 9 when busy)


def test_entities_and_autolinks_are_drawn_as_they_render_once_written_whole() -> None:
    """An entity ("&amp;", "&#35;") and an autolink ("<https://...>") in a paragraph, heading
    or item being written are drawn as they render once written whole: they showed as their
    source until their block settled, and then changed (found by a walk-through). One that
    is not one stays text ("AT&T", "a < b", "&foo;"), and the words after it are formatted."""
    from chat.fragments import CONTENT, tail_html

    link = (
        '<a href="https://a.example/b" rel="noopener noreferrer nofollow">https://a.example/b</a>'
    )
    mail = '<a href="mailto:me@x.org" rel="noopener noreferrer nofollow">me@x.org</a>'
    for text, shown in {
        "Tom &amp; Jerry &copy; &#35;1 and more": "Tom <span>&amp;</span> Jerry <span>©</span> <span>#</span>1 and",
        "## Tom &lt;3 Jerry &amp; friends": "Tom <span>&lt;</span>3 Jerry <span>&amp;</span>",
        "- see <https://a.example/b> or <me@x.org> then": f"see <span>{link}</span> or <span>{mail}</span>",
        "AT&T and a < b and &foo; are **bold** here": (
            "<span>&lt;</span> b and <span>&amp;foo;</span> are <span"
        ),
    }.items():
        tokens = re.findall(r"\s*\S+|\s+", text)
        for pieces in (tokens, list(text)):
            tails = tails_on_a_page(text, pieces)
            drawn = tail_html(CONTENT, 5, tails[-2])
            assert shown in drawn, (text, drawn)
            assert "**" not in drawn, (text, drawn)  # (the words after them formatted)
    # A "<...>" that markdown-it takes for no link is text, and marks inside it pair with
    # marks after it as they render (a second read: it was drawn whole as text, the marks
    # inside it hidden)
    for text in ["x <javascript:*a> b* c", "x <*a@b..c> d* e", "x <file:/_a> b_ c"]:
        pieces = _drawn_pieces_are_in_the_render(text)
        assert pieces and all(piece in render_markdown(text) for piece in pieces), (text, pieces)
    # Drawn so as soon as it is whole, before the next word
    for text, whole in {"Tom &amp;": "<span>&amp;</span>", "see <me@x.org>": mail}.items():
        tails = tails_on_a_page(text, re.findall(r"\s*\S+|\s+", text))
        assert tail_html(CONTENT, 5, tails[-1]).endswith(f"{whole}</span>") or whole in (
            tail_html(CONTENT, 5, tails[-1])
        ), tail_html(CONTENT, 5, tails[-1])


def test_a_headings_underline_is_not_drawn_as_text_while_it_is_written() -> None:
    """A line of "=" under a paragraph's makes it a heading as its line ends; it waits for
    that, as "---" does: it was drawn as the paragraph's text first (found by a walk-through)."""
    from chat.fragments import CONTENT, tail_html

    text = "Intro.\n\nText\nTitle\n===\n\nAfter"
    for pieces in (re.findall(r"\s*\S+|\s+", text), list(text)):
        for tail in tails_on_a_page(text, pieces):
            assert "=" not in tail_html(CONTENT, 5, tail).replace('id="', ""), tail.text
    assert render_markdown("a == b\n==c") == "<p>a == b\n==c</p>\n"  # (text, where it is text)
    renderer = fed_by_character("a == b\n==c")
    assert renderer.tail.text == "a == b\n==c"
