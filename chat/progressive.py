"""Progressive markdown: a streaming text split into settled blocks and an open tail.

A top-level block that another block follows (or that cannot grow any more: a heading, a rule,
a closed code fence, a paragraph, table or quote after a blank line) renders the same whatever
comes after it, so it is rendered and sanitised once, when it settles, and sent once. The open
block after it, the tail, is shown as escaped text, or as an unhighlighted code frame when it
is a fenced code block, until it settles too.

The settled blocks followed by the render of the final tail equal the one-shot render of the
whole text (`chat.markdown.render_markdown`), except where a link reference definition comes
after a block that uses it: the final render fixes those (`ProgressiveRenderer.finish`).

Work per update is bounded by the tail, not the whole text: only the tail is parsed, only when
a line completes, and an open code fence is scanned line by line for its closing fence.
No Django here.
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass
from typing import Any, Literal

from markdown_it.token import Token

from .markdown import block_parser, fence_language, render_blocks, render_markdown

# Lines that can only continue the open block, so that nothing can settle before them and no
# new parse is needed (a long paragraph, table, quote or list stays linear). Conservative: any
# other line (a blank one above all) is parsed. After a non-blank line:
# - a paragraph goes on with a line that starts no block (no heading, quote, list, fence, rule,
#   table row, setext underline, indented code);
_PARAGRAPH_LINE = re.compile(r" {0,3}(?![#>*+\-=_|`~:\d\s])\S[^\n]*\n")
# - a table with a row that starts with a pipe; a quote with a line that starts with ">";
_TABLE_LINE = re.compile(r" {0,3}\|[^\n]*\n")
_QUOTE_LINE = re.compile(r" {0,3}>[^\n]*\n")
# - a list with a line indented to its last item's content (inside that item), or an item
#   with the same marker (not a rule), whose content column the lines after it are held to. A
#   line indented less (a code fence at two spaces under "1. ") ends the list, so it is parsed.
_ITEM_START = re.compile(r"( {0,3})(\d{1,9}[.)]|[-+*])( {1,4})(?=[^ \t\n])")
# Blocks that end at a blank line; lists and indented code may go on after one.
_END_AT_BLANK_LINE = {"paragraph_open", "table_open", "blockquote_open"}
# Blocks complete as soon as their last line is.
_COMPLETE_WHEN_LINE_ENDS = {"heading_open", "hr"}


@dataclass
class _OpenFence:
    """A top-level fenced code block whose closing fence has not come yet."""

    marker: str  # the fence characters, e.g. "```"
    language: str
    body_start: int  # offset in the text where the code starts (after the opening line)
    scan_from: int  # offset of the first line not yet checked for the closing fence

    def closing_line(self) -> re.Pattern[str]:
        return _closing_fence(self.marker)


def _closing_fence(marker: str) -> re.Pattern[str]:
    """A line that closes a code fence opened with `marker` (CommonMark: up to three spaces,
    at least as many of its characters, then blanks; a tab indents four columns)."""
    char = re.escape(marker[0])
    return re.compile(rf" {{0,3}}{char}{{{len(marker)},}}[ \t]*")


@dataclass
class Tail:
    """What the open part of the text looks like: text, or a code block still streaming."""

    kind: Literal["text", "code"]
    text: str  # the tail's text, or the code so far for a code block
    language: str = ""


@dataclass
class RenderStep:
    """The change one `feed` made to what the page shows."""

    blocks_html: str  # newly settled blocks, to append after the earlier ones
    tail_replaced: bool  # the tail must be drawn again from `ProgressiveRenderer.tail`
    appended: str  # otherwise: text to append to the tail as it is


def normalise(text: str) -> str:
    """Line ends and NULs as markdown-it sees them (the renderer's text is in these terms)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\0", "\ufffd")


class ProgressiveRenderer:
    """Renders one streaming text block by block. Feed it deltas; read `blocks_html` and
    `tail` for the whole state (a snapshot), and each `RenderStep` for the change."""

    def __init__(self) -> None:
        self.text = ""  # normalised: line ends are "\n", as markdown-it sees them
        self.settled = 0  # the tail starts here
        self._blocks: list[str] = []
        self._references: dict[str, Any] = {}  # markdown-it's env: references seen so far
        self._pending_cr = False
        self._fence: _OpenFence | None = None
        # The tail is one open block up to `_open_to`; lines after it that match `_open_line`
        # can only continue it, so they need no new parse.
        self._open_to: int | None = None
        self._open_line: re.Pattern[str] | None = None

    @property
    def blocks_html(self) -> str:
        if len(self._blocks) > 1:
            self._blocks = ["".join(self._blocks)]
        return self._blocks[0] if self._blocks else ""

    @property
    def tail(self) -> Tail:
        if self._fence is not None:
            return Tail("code", self.text[self._fence.body_start :], self._fence.language)
        return Tail("text", self.text[self.settled :])

    def feed(self, delta: str) -> RenderStep:
        delta = self._normalise(delta)
        # Grown in place (CPython resizes a string that nothing else holds, as a local's last
        # reference): `self.text += delta` copied the whole text on every feed, quadratic in
        # the reply's length.
        text, self.text = self.text, ""
        text += delta
        self.text = text
        html: list[str] = []
        replaced = False
        if "\n" in delta:  # blocks settle and fences open only when a line is complete
            replaced = self._advance(html)
        blocks_html = "".join(html)
        if blocks_html:
            self._blocks.append(blocks_html)
        return RenderStep(
            blocks_html=blocks_html,
            tail_replaced=replaced,
            appended="" if replaced else delta,
        )

    def tail_rendered(self) -> str:
        """The open tail's text rendered as it would be if the text ended here (a reply cut
        short shows it so until it continues)."""
        return render_blocks(self.text[self.settled :], copy.deepcopy(self._references))

    def finish(self) -> tuple[str, str]:
        """End the text. Returns the HTML of the rest (to append after the settled blocks)
        and the whole reply's HTML, which equals `render_markdown(text)`."""
        if self._pending_cr:
            self._pending_cr = False
            self.text += "\n"
        rest = render_blocks(self.text[self.settled :], dict(self._references))
        whole = self.blocks_html + rest
        if self._references.get("references") or "]:" in self.text[self.settled :]:
            # A reference defined after a block that uses it changes that block: render
            # the whole text again (the page then swaps the whole reply).
            whole = render_markdown(self.text)
        return rest, whole

    # --- Internals ---------------------------------------------------------------------------

    def _normalise(self, delta: str) -> str:
        # A CR at the end of one delta may be the first half of a CRLF: hold it back.
        if self._pending_cr:
            delta = "\r" + delta
            self._pending_cr = False
        if delta.endswith("\r"):
            delta = delta[:-1]
            self._pending_cr = True
        return normalise(delta)

    def _advance(self, html: list[str]) -> bool:
        """Settle what can be settled; True if the tail changed shape (not only grew)."""
        replaced = False
        while True:
            if self._fence is not None:
                end = self._fence_end(self._fence)
                if end is None:
                    return replaced
                self._settle(end, html)
                self._fence = None
                replaced = True
                continue
            if self._skip_blank_lines():
                replaced = True
            complete = self.text.rfind("\n") + 1  # the end of the last complete line
            if complete <= self.settled:
                return replaced
            if self._continues_open_block(complete):
                return replaced
            base = self.settled
            source = self.text[base:complete]
            tokens = block_parser().parse(source)
            blocks = _top_level_blocks(tokens)
            if not blocks:
                return replaced
            line_starts = _line_starts(source)
            n_lines = len(line_starts) - 1
            settled = len(blocks) - 1
            last = blocks[-1]
            if _is_complete(last, source, line_starts, n_lines):
                settled += 1
            if settled:
                end_line = _lines(blocks[settled])[0] if settled < len(blocks) else _lines(last)[1]
                self._settle(base + line_starts[end_line], html)
                replaced = True
                if settled == len(blocks):
                    continue  # the tail is blank or a partial line: nothing more to settle
            self._open_line = (
                _continuation(last, source, _last_item(tokens))
                if settled == len(blocks) - 1
                else None
            )
            self._open_to = complete if self._open_line is not None else None
            if last.type == "fence" and settled < len(blocks):
                # An open code fence: from now on, scan its lines for the closing fence.
                body_start = base + line_starts[_lines(last)[0] + 1]
                self._fence = _OpenFence(
                    marker=last.markup,
                    language=fence_language(last.info),
                    body_start=body_start,
                    scan_from=body_start,
                )
                return True
            return replaced

    def _continues_open_block(self, complete: int) -> bool:
        if self._open_to is None or self._open_line is None or self._open_to < self.settled:
            return False
        position = self._open_to
        while position < complete:
            match = self._open_line.match(self.text, position, complete)
            if match is None:
                self._open_to = None
                return False
            if match.lastgroup == "item":
                # A new item: the lines inside it are those indented to its content.
                ordered, marker = _LIST_OF[self._open_line]
                self._open_line = _list_lines(ordered, marker, len(match.group("item")))
            position = match.end()
        self._open_to = complete
        return True

    def _skip_blank_lines(self) -> bool:
        """Blank lines between blocks render as nothing: keep them out of the tail, so that
        it never shows an empty line that vanishes when its block settles."""
        position = self.settled
        while (newline := self.text.find("\n", position)) >= 0:
            if self.text[position:newline].strip(" \t"):
                break
            position = newline + 1
        moved = position != self.settled
        self.settled = position
        return moved

    def _settle(self, end: int, html: list[str]) -> None:
        html.append(render_blocks(self.text[self.settled : end], self._references))
        self.settled = end

    def _fence_end(self, fence: _OpenFence) -> int | None:
        """The offset after the fence's closing line, once that line is complete."""
        closing = fence.closing_line()
        position = fence.scan_from
        while True:
            newline = self.text.find("\n", position)
            if newline < 0:
                fence.scan_from = position
                return None
            if closing.fullmatch(self.text, position, newline):
                return newline + 1
            position = newline + 1


def _continuation(block: Token, source: str, item: Token | None) -> re.Pattern[str] | None:
    """The lines that can only continue this open block (see `_PARAGRAPH_LINE`)."""
    if not source.endswith("\n") or source.endswith("\n\n"):
        return None  # only after a non-blank line
    if block.type == "paragraph_open":
        return _PARAGRAPH_LINE
    if block.type == "table_open":
        return _TABLE_LINE
    if block.type == "blockquote_open":
        return _QUOTE_LINE
    if block.type in ("bullet_list_open", "ordered_list_open") and item is not None:
        return _list_line(block, item, source)
    return None


@functools.cache
def _list_lines(ordered: bool, marker: str, column: int) -> re.Pattern[str]:
    """A line inside the last item (indented to `column`, its content's), or a new item (its
    prefix the group `item`, whose length is the next content column)."""
    number = r"\d{1,9}" if ordered else ""
    rule = "" if ordered else r"(?![-*_ \t]*\n)"
    item = rf"(?P<item> {{0,3}}{number}{re.escape(marker)} {{1,4}})(?=[^ \t\n]){rule}"
    pattern = re.compile(rf" {{{column},}}\S[^\n]*\n|{item}[^\n]*\n")
    _LIST_OF[pattern] = (ordered, marker)
    return pattern


_LIST_OF: dict[re.Pattern[str], tuple[bool, str]] = {}  # each `_list_lines` pattern's list


def _list_line(block: Token, item: Token, source: str) -> re.Pattern[str] | None:
    """The lines that continue a list whose last item is `item` (see `_ITEM_START`)."""
    first = _lines(item)[0]
    line_start = _line_starts(source)[first] if first else 0
    match = _ITEM_START.match(source, line_start)
    if match is None:
        return None  # an empty item, a tab, or code right after the marker: parse each line
    ordered = block.type == "ordered_list_open"
    marker = match.group(2)[-1] if ordered else match.group(2)
    return _list_lines(ordered, marker, match.end() - line_start)


def _last_item(tokens: list[Token]) -> Token | None:
    """The last item of a top-level list (the list being the last block)."""
    for token in reversed(tokens):
        if token.type == "list_item_open" and token.level == 1:
            return token
    return None


def _top_level_blocks(tokens: list[Token]) -> list[Token]:
    return [t for t in tokens if t.level == 0 and t.nesting >= 0 and t.map is not None]


def _line_starts(source: str) -> list[int]:
    starts = [0]
    position = source.find("\n")
    while position >= 0:
        starts.append(position + 1)
        position = source.find("\n", position + 1)
    return starts


def _lines(block: Token) -> tuple[int, int]:
    """The lines a block spans: the first, and the one after its last."""
    assert block.map is not None
    return block.map[0], block.map[1]


def _is_complete(block: Token, source: str, line_starts: list[int], n_lines: int) -> bool:
    """Whether the last block can no longer change, whatever text comes next."""
    start, end = _lines(block)
    if block.type in _COMPLETE_WHEN_LINE_ENDS:
        return True
    if block.type == "fence":
        if end - 1 <= start:
            return False
        line = source[line_starts[end - 1] : line_starts[end] - 1]
        return _closing_fence(block.markup).fullmatch(line) is not None
    if block.type in _END_AT_BLANK_LINE:
        # A complete blank line after it ends it.
        return end < n_lines and not source[line_starts[end] : line_starts[end + 1]].strip()
    return False
