"""Progressive markdown: a streaming text split into settled blocks and an open tail.

A top-level block that another block follows (or that cannot grow any more: a heading, a rule,
a closed code fence, a paragraph, table or quote after a blank line) renders the same whatever
comes after it, so it is rendered and sanitised once, when it settles, and sent once. The open
block after it, the tail, is shown as escaped text, or as an unhighlighted code frame when it
is a fenced code block, until it settles too.

A top-level list settles item by item: an item that another item of the same list follows is
rendered once and added to the list on the page (`RenderStep.list_html`), so a long answer in
numbered steps takes shape step by step; its last item is the tail. Whether the list is tight
or loose can change with a later item (a blank line between two items): the list on the page
is then drawn once more, loose (`RenderStep.list_redrawn`). When the whole list settles it is
rendered once more as a whole, and only the items the page lacks are sent (the page's list is
drawn again only if that render differs, which the tests do not find). An item whose second
line opens a fenced code block is drawn as its first line rendered, then the code block as it
streams, rendered once it closes, then its text after the block (`_ItemCode`,
`Tail.item_intro`, `Tail.item_after`). An item whose second line
begins a list nested in it is drawn as its first line rendered, then the nested list: each of
its items rendered as the next begins (`RenderStep.sub_items_html`), the one being written as
the tail's text (`_ItemList`, `Tail.item_list`).

A top-level table is drawn as a table in the tail from the line that completes its head
(`Tail.table`): each row whose line ends is rendered under the table's head, as the table
renders it, and added in a body of its own (`RenderStep.rows_html`); the row being written
shows each cell that has ended (a pipe follows it) as the row will render it, and the cells
after them as their text comes (`row_cells`), added to cell by cell. The table settles whole,
as other blocks do.

Before a table's head is complete (its delimiter row's line ended), the tail's first line, if
it starts with a pipe, is drawn as the table's head (`Tail.head`), its cells added to as they
come; the delimiter row is not drawn. So is a paragraph's first line that starts with a pipe
after its first line (a table may interrupt a paragraph: no blank line between), after the
paragraph's lines before it, rendered (`Tail.head_before`, `_paragraph_head`); a line after it
that no delimiter row starts draws it as the paragraph's text again. A quote of paragraphs is
drawn as the quote, its lines' markers not drawn (`Tail.quote`, `unquoted`), those before its
last rendered. A line being written that is only a block's marker so far ("-", "2.", "##",
"---", "```py", "> ") is held back, not fed, until a character after it tells what it is
(`held`): it never shows as text for a frame.

The tail's text (a paragraph's, the open item's, or a quote's) is drawn with its words formatted as
their marks close (`_Formatting`, `Tail.formatted`): a bold, a code span or a link shows as
it will render from the white space after it on, not from the paragraph's end. The text
after a mark still open goes into a pending span, which is drawn formatted once (in its
place, `RenderStep.span_html`) when the words from that mark render with every mark closed.
Until then the pending span is drawn as its words will render if their marks close where the
text ends (`Tail.pending_html`, `_draw_pending`): a bold is bold from its first word, a code
span code, a link its text once its destination begins (which is not drawn), and no mark of
them shows; the words written are added where they go (`RenderStep.pending_added`). A span
whose marks cannot close so (a render leaves one open) is drawn as its text. A mark that
seldom closes ("*.py", "2**10", "_private": drawn as text) is given up on at the first mark
after it that cannot close it, or at its line's end: drawn as the text it stays, the words
after it formatted as their own marks close (`_give_up`), its text moved out of the pending
span before it (`RenderStep.span_given_up`); one that a later mark closes after all takes
the tail back to the pending span it was, drawn again (`_roll_back`).
How the tail is drawn depends only on the text (a continuation's held paragraph aside), so a
renderer given the whole text at once draws it as the steps did.

The settled blocks followed by the render of the final tail equal the one-shot render of the
whole text (`chat.markdown.render_markdown`), except where a link reference definition comes
after a block that uses it: the final render fixes those (`ProgressiveRenderer.finish`).

Work per update is bounded by the tail, not the whole text: only the tail is parsed, only when
a line completes, an open code fence is scanned line by line for its closing fence, and an
open table's new lines are rendered under its head, not with its rows before them. Lines that
can only continue the open block are taken without a parse, and a tail whose lines no such
shape knows is parsed less often once its parses cost more than a few times its length, so
the time for a reply stays linear in its length.
No Django here.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any, Literal

from markdown_it.token import Token

from .flanking import CJK_CHARACTERS, cjk, cjk_before, flanks, punctuation
from .markdown import (
    MD_TRIMMED,
    block_parser,
    fence_language,
    render_blocks,
    render_cell,
    render_inline,
    render_list,
    render_markdown,
    render_words,
)

# Lines that can only continue the open block, so that nothing can settle before them and no
# new parse is needed (a long paragraph, table, quote or list stays linear). Conservative: any
# other line (a blank one above all) is parsed. After a non-blank line:
# - a paragraph goes on with a line that starts no block: after up to three blanks, not a
#   heading, quote, list item, fence, rule, setext underline or delimiter row ("**Note:**",
#   "#tag", "`x`", "2024" and "| a |" start none), or after four (or a tab), whatever it is:
#   indented code cannot interrupt a paragraph;
_STARTS_TEXT = (
    r"(?:[^#>*+\-=_|`~:\d\s]"  # a character that starts no block
    r"|[*_]+(?=[^*_\s])"  # emphasis, not a bullet or a rule
    r"|#+(?=[^#\s])"  # not a heading
    r"|`{1,2}(?!`)|~{1,2}(?!~)"  # not a fence
    r"|=+(?=[^=\s])"  # not a setext underline
    r"|[0-9]+(?![0-9.)])"  # not a numbered item
    r"|\|(?=[^\n]*[^-:|\s]))"  # not a table's delimiter row (its head's line is any line)
)
# The start of a line that ends a paragraph before it, once a character after its marker
# shows what it is: a heading's, a bulleted item's (one with text: an empty one does not),
# a numbered item's that starts its list at 1, a quote's; looked at in its first characters.
_INTERRUPTS = re.compile(r" {0,3}(?:#{1,6}[ \t]+\S|[-+*][ \t]+\S|1[.)][ \t]+\S|>)")
_INTERRUPT_SEEN = 16
# A line's start that ends a list item's paragraph when indented less than the item's text:
# any list's item then (a number other than 1 too), a heading, a quote.
_ENDS_ITEM_TEXT = re.compile(r" {0,3}(?:#{1,6}[ \t]+\S|(?:[-+*]|[0-9]{1,9}[.)])[ \t]+\S|>)")
_PARAGRAPH_LINE = re.compile(rf"(?:(?: {{4}}| {{0,3}}\t)[ \t]*\S| {{0,3}}{_STARTS_TEXT})[^\n]*\n")
# - the innermost paragraph of a quote or a list item (the block open at the text's end) with
#   a line that starts no block, however it is indented (a lazy line);
_LAZY_LINE = rf"[ \t]*{_STARTS_TEXT}[^\n]*\n"
# - a table with a row that starts with a pipe; a quote with a line that starts with ">", or,
#   if its paragraph is open, a lazy line; a quoted line (at any depth) that starts no block
#   keeps that so (no more than three blanks, as a quote one deeper may start there, and
#   not a label, which may start a definition there);
_TABLE_LINE = re.compile(r" {0,3}\|[^\n]*\n")
_QUOTE_LINE = re.compile(r" {0,3}>[^\n]*\n")
_QUOTE_OR_LAZY_LINE = re.compile(
    rf"(?P<text>(?: {{0,3}}>)+ {{0,4}}(?!\[){_STARTS_TEXT}[^\n]*\n|{_LAZY_LINE})"
    rf"|{_QUOTE_LINE.pattern}"
)
# - indented code with a line indented as code, or a blank line (it may go on after one).
_CODE_LINE = re.compile(r"(?:(?: {4}| {0,3}\t)[ \t]*\S[^\n]*|[ \t]*)\n")
# - a list with a line indented to its last item's content (inside that item), or an item
#   with the same marker (not a rule), whose content column the lines after it are held to. A
#   line indented less (a code fence at two spaces under "1. ") ends the list, so it is parsed.
_FIRST_NUMBER = re.compile(r" {0,3}([0-9]{1,9})[.)]")  # a numbered list's first number
_ITEM_START = re.compile(r"( {0,3})([0-9]{1,9}[.)]|[-+*])( {1,4})(?=[^ \t\n])")
_ITEM_MARKER = re.compile(r"( {0,3})([0-9]{1,9}[.)]|[-+*])[ \t]")  # a tab after it too
_LISTS = {"bullet_list_open", "ordered_list_open"}
_OPENING_FIRST = frozenset(" -+*#0123456789")  # the characters it may start with
_OPENING_SEEN = 64
_SHAPED_FIRST = _OPENING_FIRST | {"|", ">"}  # a tail drawn as a block may start with
_SPACED_TEXT = re.compile(r" {1,3}[^#>*+\-=_|`~:\d\s]")  # (blanks, then what starts no block)
# A line's indent, its first character, what follows it up to the first character that is not
# a digit (or the next character), and the character after that
_LINE_START = re.compile(r"( *)([^ \n]?)((?<=[0-9])[0-9]*[^0-9\n]?|[^\n]?)([^\n]?)")
# The tail's first line drawn as the block it opens while it is written (see `_opening`): a
# list's first item (its marker, blanks and a first character; not a rule it may yet turn
# into), or an ATX heading (its marker, blanks and a first character).
_OPENING = re.compile(
    r"(?P<item>(?![-*_ \t]*(?:\n|\Z)) {0,3}(?:[0-9]{1,9}[.)]|[-+*]) {1,4})(?=[^ \t\n])"
    r"| {0,3}(?P<heading>#{1,6})[ \t]+(?=[^ \t\n])"
)
# A line being written that may yet open a block, so far only its marker (a list item's, a
# heading's, a rule's, a code fence's opening line, or its closing one): held back from the
# renderer until a character after it tells what it is (or its line ends), so the page never
# shows it as text for a frame ("-" then " Install", "##" then " Usage", "---" until its line
# ends, "```py" too; "**" until "**Note"), and a quote's line until its text's first character
# ("> " then "> -" until "> - item", which makes it no quote of one paragraph: `_quote_base`).
# Every start of a held line is one too, so a text fed at once holds what it fed piece by
# piece held, and draws the same; a line longer than `_HELD_AT_MOST` is not held.
_HELD_LINE = re.compile(
    r" *(?:> ? *(?:\|[-:| \t]*|=+[ \t]*)?)?"  # a quote's, and what may yet start its text
    r"(?:(?:[-*_][ \t]*)+|\+[ \t]*|=+[ \t]*|[0-9]{1,9}(?:[.)][ \t]*)?|#{1,6}[ \t]*"  # an item's,
    # a rule's, a heading's underline ("===": a paragraph's line until its line ends)
    r"|`{1,2}|`{3,}[^`\n]*|~{1,2}|~{3,}[^\n]*)?"  # a fence's line (its info string too)
)
_HELD_AT_MOST = 80
_LINE_BEGINS = ("", "\n")  # the text's last character, where the next begins a line
# A block that may yet turn out a link reference definition (it starts like one), or the title
# of the definition before it; how its text may end, to be one (a label, a destination, a
# title); the lines a block is held for at most, for that.
_DEFINITION_START = re.compile(r" {0,3}\[")
_LABEL_LINE = re.compile(r"^ {0,3}\[", re.M)  # a line of the text that may start a definition
_TITLE_START = re.compile(r"[ \t]*[\"'(]")
_DEFINITION_ENDS = ("]: /u\n", "x]: /u\n", "/u\n", "'\n", '"\n', ")\n")
_HELD_LINES = 8
# Inline formatting of the open tail's text: a mark that may open an emphasis, a
# strikethrough, a code span or a link; a cut (white space after a word), where the words
# before it are tried; how long a pending span may grow (on one line) before it stays text.
# A mark that opens a pending span (a backslash too: it may escape a mark after it), or the
# spaces of a hard line break ("  " at a line's end)
_MARK = re.compile(r"[*_~`\[\\&<]|!(?=\[)|(?<=  )\n")
# An entity (CommonMark's: named, decimal or hexadecimal) and an autolink, written whole; and
# either still being written at the text's end. A paragraph showed them as their source
# ("&amp;", "<https://example.com>") until it settled, when they changed.
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_ENTITY_OPEN = re.compile(r"&(?:#[0-9]{0,7}|#[xX][0-9a-fA-F]{0,6}|[A-Za-z][A-Za-z0-9]{0,31})?\Z")
_AUTOLINK = re.compile(
    r"<(?:[A-Za-z][A-Za-z0-9+.-]{1,31}:[^\x00-\x20<>]{0,2000}"
    r"|[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,2000}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,250}[A-Za-z0-9])?)>"
)
# (bounded, as a pending span is: a "<" before a long run without blanks, a blob, was matched
# again from the "<" at each feed)
_AUTOLINK_OPEN = re.compile(
    r"<(?:[A-Za-z][A-Za-z0-9+.-]{0,31}(?::[^\x00-\x20<>]{0,2000})?"
    r"|[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,2000}(?:@[A-Za-z0-9.-]{0,252})?)?\Z"
)
_BREAK = "<br>\n"  # a hard line break as markdown-it renders it
# A line's start with no text: blanks, quotes' markers, an item's marker
_NO_TEXT = re.compile(r"(?:[ \t]*>)*[ \t]*(?:(?:[-+*]|[0-9]{1,9}[.)])[ \t]*)?")
# (or, in CJK text, which has no blanks, after the character that follows a closing mark)
# A character of Chinese, Japanese or Korean text, or their punctuation (full-width forms
# included): such text has no blanks between its words
_CUT = re.compile(r"(?<=[^ \t\n])[ \t\n]" rf"|(?<=[*_~`\])][{CJK_CHARACTERS}])(?=[\s\S])")
# CJK opening brackets and quotes (a mark after a letter before them opens, with the
# CJK-friendly amendment: "Git**（注）**")
_CJK_OPENING = "\uff08\u300c\u300e\u3010\u300a\u3008\u3014\u3016\uff3b\uff5b"
# Words that may close a mark left open before them (none: the cut after them is not tried)
_CLOSING = re.compile(r"[*_~`\])]")
_BLANK_IN = re.compile(r"[ \t\n]")
_ESCAPABLE = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")  # what a backslash escapes
_PENDING_LIMIT = 400
_INDENTED = re.compile(r" {0,3}\t| {4}")  # a line of the tail that may be code
_PENDING_TRIES = 12  # cuts tried for one pending span before it stays text
_GIVEN_UP_AT_MOST = 4  # marks drawn as text while watched for a closing one (`_give_up`)
# (at once: one further back than `_PENDING_LIMIT` is no longer watched)
_AS_IS = re.compile(r"[^\\&<>\"'\n\u00a0]*")
# A pending span is drawn as its words will render if their marks close where its text ends
# (`_draw_pending`): the end of its text that may still be the first half of a closing mark
# (marks, a backslash, and white space before them; a link's closing parenthesis) waits for
# what follows; a link whose
# destination is being written is drawn as the link, its destination not shown; text added
# to it that is none of these (no mark, bracket, parenthesis, escape, nor a character that
# HTML escapes) goes where the words being written are, as it is.
# (markdown-it's white space, for its flanking rules: a closing mark after it closes nothing)
_MD_WHITE_SPACE = " \t\n\x0b\x0c\r\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
_HELD_END = " \t\x0b\x0c\r\u00a0\u1680\u202f\u205f\u3000*_~`\\" + "".join(
    chr(c) for c in range(0x2000, 0x200B)
)
# (a destination may hold parentheses in pairs, and one left open where it is being written;
# then blanks, and a title being written or written: "title", 'title' or (title), up to 80
# characters: a quote that no other closes hid the words after it)
_OPEN_DESTINATION = re.compile(
    r"\]\((?:[^()\s<>\\]|\([^()\s<>\\]*\))*"
    r"(?:\([^()\s<>\\]*|[ \t]++"
    r"(?:\"[^\"\\\n]{0,80}+\"?|'[^'\\\n]{0,80}+'?|\([^()\\\n]{0,80}+\)?)?)?\Z"
)
_PLAIN = re.compile(rf"[^*_~`\[\]()\\&<>{_MD_WHITE_SPACE[1:]}]*")
# An entity perhaps being written, at the end of words: text added to them may complete it
_ENTITY_END = re.compile(r"&#?[0-9A-Za-z]*\Z")
_CLOSING_TAGS = re.compile(r"(?:</[a-z]+>)*\Z")
_CLOSING_TAG = re.compile(r"</[a-z]+>")
_ANY_TAG = re.compile(r"<(/?)([a-z]+)\b[^>]*>")  # (the inline elements words render to)
# Words being written after a mark that opens them, after a blank, drawn without a render: a
# code span (one backtick, no other, nor a character that a render writes otherwise) or an
# emphasis of letters, digits and blanks; and the element each is drawn in
_SIMPLY_OPEN = re.compile(
    r"(?P<mark>(?P<code>`)|\*\*?|__?)"
    r"(?P<words>(?(code)[^`\n\r\u00a0]+|[^\W_]+(?: [^\W_]+)*))"
)
_SIMPLE_TAGS = {"`": "code", "*": "em", "_": "em", "**": "strong", "__": "strong"}
_BACKTICKS = re.compile(r"`+")
# Blocks that end at a blank line; lists and indented code may go on after one.
_END_AT_BLANK_LINE = {"paragraph_open", "table_open", "blockquote_open"}
# The characters parsed for one tail before each parse must wait for it to grow by a quarter:
# so many times its length, and so many more (see `_parse_deferred`).
_PARSE_BUDGET = 4
_PARSE_FLOOR = 16_384
_BLANK_LINE = re.compile(r"^[ \t]*\n", re.M)
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
    """What the open part of the text looks like: text, a code block still streaming, the
    last item of a list whose first items have settled or a list's first item (its text after
    its marker), a heading being written (its text after its marker), a table, a table's
    head being written (its line: `cells` are its cells as drawn, in a head row; after a
    paragraph's lines, `head_before`, those rendered), or a quote of
    paragraphs (its last's text after its first line's marker: the markers of its lines after
    it are not drawn, `unquoted`; those before it rendered in `quote_before`)."""

    kind: Literal["text", "code", "item", "heading", "table", "head", "quote"]
    # the tail's text, the code so far for a code block, an item's or a heading's text, or a
    # table's row being written
    text: str
    language: str = ""
    number: str = ""  # an item of a numbered list: its number
    opens: bool = False  # an item that opens its list (the list's first, nothing settled)
    level: int = 0  # a heading's
    # A table: its head and the rows whose lines are complete, each in a body of its own
    # (`<table>`, not closed), and the cells of the row being written as drawn (HTML: those
    # that ended rendered, the others their text)
    table: str = ""
    cells: tuple[str, ...] = ()
    aligns: tuple[str, ...] = ()  # each column's alignment class (`CELL_ALIGNMENTS`), or ""
    # How a paragraph's or an item's text is drawn (`formatted_html`; not what the tail is,
    # so not compared): the HTML of its start up to `raw_from` (words whose marks closed,
    # formatted: `formatted`, joined from `drawn_parts` when it is read, as the tail is drawn
    # whole: a tail read after each delta joined the whole paragraph again, quadratic in a
    # paragraph of many formatted words), then text; from `pending_from`, if set, the text
    # after a mark not closed yet, in a span of its own.
    drawn_parts: tuple[Sequence[str], int] = field(default=((), 0), compare=False, repr=False)
    raw_from: int = field(default=0, compare=False)
    pending_from: int | None = field(default=None, compare=False)
    # The pending span's HTML: its words formatted as they will render if their marks close
    # where the text ends (`None`: drawn as its text)
    pending_html: str | None = field(default=None, compare=False)
    # An item whose code block, right after its first line, is being written (`_ItemCode`):
    # its first line rendered (None: no such item), the code's language, the code so far as
    # shown (without the item's indentation), and the block rendered once it closed
    item_intro: str | None = field(default=None, compare=False)
    item_language: str = field(default="", compare=False)
    item_code: str = field(default="", compare=False)
    item_block: str = field(default="", compare=False)
    item_after: bool = field(default=False, compare=False)  # `text`: the item's after it
    # An item whose second line began a list nested in it (`_ItemList`): the nested list's
    # opening tag ("ul", "ol"), its items that settled (rendered), and `text` is then the
    # text of its item being written (with `item_intro`, the item's first line rendered)
    item_list: str = field(default="", compare=False)
    item_list_items: str = field(default="", compare=False)
    # Its first line is a paragraph of its own (a blank line after it: the list is loose),
    # drawn as one, spaced from what follows it as it will be
    item_loose: bool = field(default=False, compare=False)
    # Its item being written drawn rendered (`_sub_item_drawing`): the HTML before and after
    # the place of its line being written, whose text `text` is
    item_list_written: tuple[str, str] | None = field(default=None, compare=False)
    # `text` is the item's second paragraph, after its first (`item_intro`), not code
    item_paragraph: bool = field(default=False, compare=False)
    # Drawn as it renders so far (a table in it, `_item_table_drawing`): the HTML inside its
    # `<li>` before and after the place of its line being written, whose text `text` is
    item_rendered: tuple[str, str] | None = field(default=None, compare=False)
    # A quote's paragraphs before its last, rendered (`text` is its last's)
    quote_before: str = ""
    # A table's head being written right after a paragraph's lines: that paragraph, rendered
    head_before: str = ""
    # A quote of other blocks (a list, code), drawn rendered: the HTML before and after the
    # place of its line being written, whose text `text` is (`_quote_drawing`)
    quote_rendered: tuple[str, str] | None = field(default=None, compare=False)
    # Of those two (a block drawn as it renders so far), its line being written as drawn,
    # where it has a mark (as it will render if its marks close where it ends); None: `text`
    line_html: str | None = field(default=None, compare=False)

    @property
    def formatted(self) -> str:
        """The HTML of the text's start up to `raw_from` (its parts, so many of them)."""
        parts, count = self.drawn_parts
        if count > 1:
            self.drawn_parts = ([joined := "".join(parts[:count])], 1)
            return joined
        return parts[0] if count else ""


def formatted_html(tail: Tail, pending_id: str) -> str:
    """A text tail's or an item tail's text as the page draws it: its formatted start, the
    text after it, and the pending span (`id` `pending_id`) where a mark is still open."""
    end = len(tail.text) if tail.pending_from is None else tail.pending_from
    shown = unquoted if tail.kind == "quote" else _sliced
    html = tail.formatted + escape(shown(tail.text, tail.raw_from, end))
    if tail.pending_from is not None:
        html += f'<span id="{pending_id}">{pending_html(tail)}</span>'
    return html


def pending_html(tail: Tail) -> str:
    """What the pending span of a text tail or an item tail shows: its words formatted as they
    will render if their marks close where the text ends, or its text."""
    if tail.pending_html is not None:
        return tail.pending_html
    assert tail.pending_from is not None
    shown = unquoted if tail.kind == "quote" else _sliced
    return escape(shown(tail.text, tail.pending_from, None))


def _sliced(text: str, start: int, end: int | None) -> str:
    return text[start:end]


def unquoted(text: str, start: int, end: int | None) -> str:
    """`text[start:end]` without the quote markers that start its lines (a quote's text as
    its paragraph shows it), the line at `start` too if one starts there."""
    piece = text[start:end]
    if start and text[start - 1] == "\n":
        return _QUOTE_MARKER.sub("\n", "\n" + piece)[1:]
    return _QUOTE_MARKER.sub("\n", piece) if "\n" in piece else piece


@dataclass
class RenderStep:
    """The change one `feed` made to what the page shows."""

    blocks_html: str  # newly settled blocks, to append after the earlier ones
    tail_replaced: bool  # the tail must be drawn again from `ProgressiveRenderer.tail`
    appended: str  # otherwise: text to append to the tail as it is
    # Applied first, to the list the page shows last among its blocks (still open before this
    # step): items to add at its end, or (`list_redrawn`) the whole list, in place of it.
    list_html: str = ""
    list_redrawn: bool = False
    # Inline formatting of the tail's text (instead of `appended`, when any is set): the HTML
    # that takes the place of the pending span (its words' marks all closed), then the HTML
    # to append to the tail's text after it (text, formatted words), then the text of a new
    # pending span, appended after them in a span of its own.
    span_html: str = ""
    formatted: str = ""
    pending: str | None = None  # (HTML: `pending_html`)
    # Or the pending span's mark was given up on (`_give_up`): `formatted`, from that mark
    # on, goes before the span, which then shows `pending` (or goes, if None)
    span_given_up: bool = False
    # Or the pending span grew: HTML to append where its words being written are, in the
    # span's last element child so many levels down (`pending_depth`; 0: the span itself),
    # or the span drawn again (`ProgressiveRenderer.tail`, `pending_html`)
    pending_added: str = ""
    pending_depth: int = 0
    pending_redrawn: bool = False
    # A table in the tail (instead of `appended`): rows whose lines completed, each in a body
    # of its own, to add before the row being written, which is then drawn again
    # (`row_redrawn`); or HTML added to its cells (1-based column, HTML: escaped text), and
    # cells drawn again (a cell that ended, rendered; a cell that changed otherwise).
    rows_html: str = ""
    row_redrawn: bool = False
    row_cells: tuple[tuple[int, str], ...] = ()
    cells_set: tuple[tuple[int, str], ...] = ()
    # HTML put into a cell's last element child so many levels down (column, depth, HTML):
    # words added where a cell's formatted words are being written (`drawn_as_closed`)
    cells_inserted: tuple[tuple[int, int, str], ...] = ()
    # A list nested in the open item (`_ItemList`): its items that settled as the next
    # began, rendered, to add before its item being written, whose text is then drawn anew
    # (from `appended`, or the formatting's fields)
    sub_items_html: str = ""
    # Its item being written, drawn rendered (a line after its first: its code, the list
    # nested in it), drawn anew (`Tail.item_list_written`): a line of it began
    sub_item_redrawn: bool = False
    # Or the line being written of a block drawn as it renders so far, drawn anew
    # (`Tail.line_html`: it has a mark)
    line_redrawn: bool = False
    # Rows that a table last in an item drawn as it renders so far gained (`_rows_added`),
    # in a body of their own, to add at the table's end
    item_rows_html: str = ""


@dataclass
class _Formatting:
    """The open tail's text (a paragraph's, or a list item's) as the page draws it: words
    whose marks (emphasis, code, links) all closed are formatted as they will render, once;
    from a mark still open on, the text goes in a pending span, which is drawn formatted in
    one piece once its marks close. Text without marks is drawn as it comes."""

    base: int  # where the tail's text starts
    drawn_to: int = 0
    span: int | None = None  # where the pending span starts
    scan_from: int = 0  # where to look for the next mark (no span), or the next cut (a span)
    tried_to: int = 0  # the last cut tried for the pending span
    stuck: bool = False  # the pending span stays text until the tail settles
    off: bool = False  # drawn as text (a continuation's held paragraph)
    quoted: bool = False  # a quote's text: its lines' markers are not drawn (`unquoted`)
    drawn: list[str] = field(default_factory=list)  # the HTML of the text up to `drawn_to`
    tries: int = 0  # cuts tried for the pending span
    # The pending span's word before it (start, HTML), which its words are rendered with
    before: tuple[int, str] | None = None
    # The pending span as drawn (`_pending_drawing`): its HTML (None: its text), where the
    # text that drawing shows ends, and where in that HTML text after it would go (None: the
    # span is drawn again when it grows) and how many levels down in the span that is
    span_drawing: str | None = None
    span_drawn_to: int = 0
    span_at: int | None = None
    span_depth: int = 0
    span_hidden: bool = False  # a link's destination is being written: it is not drawn
    # Marks that seldom close, drawn as the text they stay if nothing closes them, the words
    # after them formatted as their own marks close (`_give_up`), and watched: one that
    # closes after all takes the tail back to its state before it (`_roll_back`)
    given_up: list[_GivenUp] = field(default_factory=list)
    kept_to: int = 0  # a mark before it went back to pending once: not given up again
    # The marks that closed after all once given up on (`_roll_back`): in this text they do
    # close, and are not given up on again (each time, the tail was drawn again whole)
    closing_marks: str = ""
    redrawn: bool = False  # went back so: the tail is drawn again
    # The pending span's mark may be given up (None: not known yet), and where the first
    # mark after it that cannot close it is (`_give_up_at`; searched for from `trigger_scan`)
    yielding: bool | None = None
    trigger: int | None = None
    trigger_scan: int = 0
    trigger_run: int | None = None


@dataclass
class _GivenUp:
    """A mark given up on (`_Formatting.given_up`): where its run is, the words it is rendered
    with (their start and HTML), and the drawing before it (`drawn`'s length, `drawn_to`)."""

    mark: int
    end: int
    start: int
    before: str
    drawn: int
    drawn_to: int


@dataclass
class _OpenTable:
    """A top-level table whose head has come: drawn in the tail a row at a time, and the row
    being written cell by cell as its text comes."""

    start: int  # offset in the text where the table starts
    head: str  # its header and delimiter lines: its rows are rendered under them
    columns: int
    rows_to: int  # where the row being written starts (its rows before it are drawn)
    html: str  # the table as drawn: its head, then each row in a body of its own, not closed
    aligns: tuple[str, ...]  # each column's alignment class, or ""
    cells: tuple[str, ...] = ()  # the row being written as the page shows it (HTML)
    added: str = ""  # the rows drawn in this step, not yet in a `RenderStep`
    # The row being written up to the pipe after its last cell that ended, and those cells as
    # the table renders them (`_row_html`)
    ended: str = ""
    ended_html: tuple[str, ...] = ()
    # The empty cells markdown-it has added to the rows so far (it ends a table at its cap)
    autocompleted: int = 0
    row_kept: int = -1  # where the last line known not to end the table (`_ends_table`) starts


_CELL_PIPE = re.compile(r"(?<!\\)\|")
_HEAD_CELL = re.compile(r'<th(?: class="([^"]*)")?>')  # and its alignment class
_ROW_SHOWN = 1_000  # a row's characters drawn while its line is written (the rest at its end)
# markdown-it ends a table at the row that takes the empty cells it adds to the rows beyond
# this (no cap before markdown-it-py 4)
_AUTOCOMPLETED_CAP: int | None = getattr(
    importlib.import_module("markdown_it.rules_block.table"), "MAX_AUTOCOMPLETED_CELLS", None
)

# The line after a table's rows that starts another block (a heading, a list item, a quote, a
# fence, an indented line) ends it. Whether it does whatever follows is known from its first
# characters (no block's start is longer), once they look like a block's start (a rule ends
# the table only as its line ends); what may follow them, to see that every way it goes on
# it ends the table (a row first: most do not).
_TABLE_END_DECIDED = 16
_MAY_END_TABLE = re.compile(
    r"[ \t]*(?:[-+*][ \t]|[0-9]{1,9}[.)][ \t]|#{1,6}[ \t]|>|~~~|```)|[ \t]*\t| {4}"
)
_ROW_ENDINGS = ("x | y\n", "\n", "x\n", " x\n", " | x |\n", "`\n", "x`\n", "|\n")


def _ends_table(line: str) -> bool:
    """Whether `line`, the line after a table's rows as far as it has come, ends the table
    whatever comes after it on that line. (Asked under a head of one column: what ends a
    table's body does not depend on its head, and a wide head made each try cost its width.)"""
    line = line[:_TABLE_END_DECIDED]
    if not line or not _MAY_END_TABLE.match(line):
        return False
    for ending in _ROW_ENDINGS:
        table = block_parser().parse("| a |\n| - |\n" + line + ending)[0]
        if table.type != "table_open" or table.map is None or table.map[1] > 2:
            return False  # a row of it (or never seen: the head not a table's)
    return True


def _written_cells(line: str) -> int:
    """How many cells a table's row line writes, as markdown-it counts them to pad the row to
    its table's columns: the pieces between its unescaped pipes, less the empty ones before a
    first pipe and after a last (white space as markdown-it trims it: not all that Python's
    does)."""
    line = line.strip(MD_TRIMMED)
    pieces = len(_CELL_PIPE.findall(line)) + 1
    if line.startswith("|"):
        pieces -= 1
    if line.endswith("|") and not line.endswith("\\|") and pieces:
        pieces -= 1
    return pieces


def row_cells(line: str, columns: int) -> tuple[str, ...]:
    """A table's row still being written as its cells show it: the text of each cell begun
    (without the blanks before it; a pipe a backslash escapes is text), then empty cells up
    to the table's `columns`. Each cell only grows as the line does (`\\|` aside), so the
    page adds text to its cells; the row is drawn rendered once its line ends."""
    line = line[:_ROW_SHOWN].lstrip(MD_TRIMMED)
    if line.startswith("|"):
        line = line[1:]
    cells = [cell.lstrip(MD_TRIMMED) for cell in _CELL_PIPE.split(line, columns)[:columns]]
    return (*cells, *[""] * (columns - len(cells)))


def ended_cells(line: str, columns: int) -> tuple[str, int]:
    """The start of a table's row being written up to the pipe after its last cell that has
    ended (a pipe follows it; "" if none has), and how many cells have: those render as they
    will in the row."""
    start = len(line) - len(line.lstrip(MD_TRIMMED))
    if line.startswith("|", start):
        start += 1
    end, ended = 0, 0
    for pipe in _CELL_PIPE.finditer(line, start):
        if ended == columns:
            break
        end, ended = pipe.end(), ended + 1
    return line[:end], ended


_ESCAPED_PIPE = re.compile(r"\\\|")
# The tail's first line, starting with a pipe, is drawn as a table's head while it is written,
# and while the line after it may still be its delimiter row (not drawn: it renders as
# nothing), up to `_ROW_SHOWN` characters each (see `_table_head`).
_HEAD_START = re.compile(r" {0,3}\|")
_HEAD_FIRST = ("|", " ")
# A table's head right after a paragraph's lines, which it interrupts (no blank line between:
# "Here is a comparison:" then "| A | B |"): the paragraph's first line that starts with a
# pipe is drawn as the head so too, the paragraph's lines before it rendered, if they are up
# to so long (see `_paragraph_head`). Only its first: each one begun draws the paragraph
# again, and one that turns out no head (no delimiter row under it) draws it as text again.
_HEAD_AFTER_MOST = 4_000
_PIPE_LINE = re.compile(r"^ {0,3}\|", re.M)
# A quote of paragraphs in the tail is drawn as the quote (see `_quote_base`): its lines,
# each quoted and starting text, or blank (a lazy line, a list or a heading in it, and it is
# drawn as text); a line's marker, drawn as nothing; where a quote's line may start.
_QUOTE_TEXT_LINE = re.compile(rf" {{0,3}}> ? {{0,3}}{_STARTS_TEXT}")
_STARTS_TEXT_AT = re.compile(_STARTS_TEXT)  # (a line's first character on)
# A quote's line with a pipe first (a table's, perhaps): the quote is drawn as it renders so
# far, its table's lines as they render (`_quote_drawing`, `_table_lines_hidden`)
_QUOTE_PIPE_LINE = re.compile(r"(?: {0,3}> ?)+ {0,3}\|")
_QUOTE_BLANK_LINE = re.compile(r" {0,3}>[ \t]*")  # (a line: its paragraphs' gap)
_QUOTE_DRAWN_MOST = 4_000  # a quote's paragraphs before its last are drawn up to so long
_QUOTE_MARKER = re.compile(r"\n {0,3}> ?")
_QUOTE_OPENS = re.compile(r" {0,3}> ?")
_QUOTE_FIRST = (">", " ")
_HEAD_SHAPE = ("head", 0)  # (`_opening_shape`)
_DELIMITER_BEING_WRITTEN = re.compile(r"[-:| \t]*")
# A table's delimiter row, whole (its line, after its block's markers)
_DELIMITER_ROW = re.compile(r"[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*")
# The head's cells are drawn so many at least, and twice as many each time more are needed
# (so a wide head is drawn again a few times, not every few cells): the empty ones after its
# last that has text do not show, and are added to as its pipes begin cells (the page cannot
# add a cell to a row)
_HEAD_CELLS_DRAWN = 8
# What may make a cell's text render as other than itself: marks, escapes, entities, links
_INLINE_MARK = re.compile(r"[\\`*_~\[\]<>&!]")


@dataclass
class _ItemCode:
    """A fenced code block on the open list item's second line (an item's first line, then
    its code: "1. Install it:" then "   ```sh"), drawn as the code block it is while it is
    written, and rendered once it closes, after the item's first line rendered: it showed
    as the item's text, its fences too, until the item settled. Text after the block, indented
    as the item's, is drawn after it as the item's text (`after`). A line the item's code
    cannot take (one indented less than the item's text) draws the item as text again
    (`off`)."""

    settled: int  # the tail (the item) starts here
    base: int  # the item's text starts here
    column: int  # its lines are indented so far
    body: int  # the code's first line starts here
    indent: int  # the blanks a line of the code drops (the fence's)
    closing: re.Pattern[str]  # its closing fence's line
    language: str
    intro: str  # the item's first line, rendered
    scanned: int  # its complete lines are looked at up to here (the line being written)
    looked: int = 0  # no line ends before here
    lines: list[str] = field(default_factory=list)  # its complete lines as shown
    joined: tuple[int, str] = (0, "")  # (so many of them, joined)
    closed: bool = False
    block: str = ""  # the code block rendered, once closed
    # Where the item's text after the closed block starts (a line of it indented as the
    # item's: drawn after the block, formatted as a paragraph's), once it began; whether it
    # began in this step (its text drawn from there)
    after: int | None = None
    after_begun: bool = False
    # What the page shows of it: so many complete lines, then the line being written from
    # there (`_line_drawn_from`)
    shown_lines: int = 0
    shown_from: int = 0
    # No code: the item's second paragraph after its first, from `after` (`_item_paragraph`)
    paragraph: bool = False
    off: bool = False
    blanks: tuple[int, int] = (-1, 0)  # (a line's start, where its blanks so far end)

    def blanks_end(self, text: str) -> int:
        """Where the blanks at the start of the line being written (at `scanned`) end, looked
        at once each (a blank line of 40,000 spaces was matched whole again at each delta)."""
        start, end = self.blanks
        if start != self.scanned:
            end = self.scanned
        blanks = _BLANKS.match(text, end)
        assert blanks is not None
        self.blanks = (self.scanned, blanks.end())
        return blanks.end()

    def code(self) -> str:
        """Its complete lines as shown, joined."""
        count, joined = self.joined
        if count != len(self.lines):
            self.joined = (len(self.lines), joined + "".join(self.lines[count:]))
        return self.joined[1]


# A code fence's opening line: its blanks, its marker, its info string
_ITEM_FENCE = re.compile(r"( *)(`{3,}|~{3,})([^\n]*)\n")
_BLANKS = re.compile(r" *")
_BLANK_LINES = re.compile(r"(?:[ \t]*\n)*")
_NOT_PARAGRAPH_TEXT = frozenset("|[")  # a table's line, a link's label (may be a definition)


@dataclass
class _ItemList:
    """A list nested in the open list item, from the item's second line (a step's first line,
    then its points: "1. Install it:" then "   - Run ..."), drawn as the list it is while it
    is written: the item's first line rendered, then the nested list, each of its items
    rendered once the next begins, the one being written as its text is (formatted as a
    paragraph's). It showed as the item's text, its markers too, until the item settled.
    Lines of its item being written (its second line, a list nested in it, text after the
    list, another marker's list) are drawn as that item's text until the item settles."""

    settled: int  # the tail (the item) starts here
    intro: str = ""  # the item's first line, rendered
    tag: str = ""  # the nested list's: "ul" or "ol"
    indent: int = 0  # the blanks before the marker of its item being written
    column: int = 0  # the blanks before the item's text (its items' markers are no less in)
    marker: str = ""  # its marker ("-", "+", "*"), or its numbers' delimiter ("." or ")")
    # the line of its item being written starts here (before the list began: the item's
    # second line, once it began; 0 before)
    current: int = 0
    text_from: int = 0  # that item's text starts here
    # the line after that item's starts here (None: its line is being written, looked at
    # for its end up to `looked`)
    after: int | None = None
    looked: int = 0
    blanks_to: int = 0  # the line at `after` is blanks up to here
    items_html: str = ""  # its items that settled, rendered
    added: str = ""  # those that settled in this step, not drawn yet
    loose: bool = False  # after a blank line: the item's first line is drawn as a paragraph
    # Its item being written has a line after its first (its code, a list nested in it):
    # drawn rendered (`_sub_item_drawing`) as far as that renders as one item of it
    lines: bool = False
    drawing: _Drawing | None = None
    shown: tuple[tuple[int, str | None], int] | None = None  # its key and end, as shown
    off: bool = False


# A block drawn as it renders so far (`_rendered_so_far`): (its key: where its last line of
# text starts and that line's blanks and markers, or, for a fence's line, drawn rendered
# whole, where its text ends and None; the HTML before and after the place of that line's
# text; where that text starts and ends); so drawn up to so long, and so many lines
_Drawing = tuple[tuple[int, str | None], str, str, int, int]
_Shown = tuple[tuple[int, str | None], int]  # (a drawing as a page shows it: its key and end)


def _rows_added(shown: _Drawing | None, drawing: _Drawing | None) -> str:
    """The rows a table last in a block drawn as it renders so far (a list's item) gained, if
    that is all that changed from the drawing the page shows (`shown`: its line being
    written empty, as in `drawing`): in a body of their own, to add at the table's end
    (`fragments.tail_html`). The item was rendered and sent again whole at each row. "": it
    changed otherwise."""
    if shown is None or drawing is None or shown[2] != drawing[2]:
        return ""
    if shown[3] != shown[4] or drawing[3] != drawing[4]:
        return ""  # (a line of it drawn as it is written)
    before, now = shown[1], drawing[1]
    if not (before.endswith(TABLE_CLOSE) and now.endswith(_BODY_CLOSE + TABLE_CLOSE)):
        return ""
    head = before[: -len(TABLE_CLOSE)]
    if head.endswith(_BODY_CLOSE):
        head = head[: -len(_BODY_CLOSE)]  # (its rows so far)
    elif head.endswith("</thead>\n"):
        head += "<tbody>\n"  # (its first row)
    else:
        return ""
    rows = now[len(head) : -len(_BODY_CLOSE + TABLE_CLOSE)]
    if not (now.startswith(head) and rows.startswith("<tr>") and rows.endswith("</tr>\n")):
        return ""
    return _bodies(rows)


def _bodies(rows: str) -> str:
    """A table's rows (`<tr>`s), each in a body of its own, as a table being written draws
    them (rows added to it go so, and its drawing is the same however they came)."""
    return "".join(f"<tbody>\n{row}</tr>\n</tbody>\n" for row in rows.split("</tr>\n")[:-1])


def _rows_apart(html: str) -> str:
    """`html`, a block drawn as it renders so far, with the rows of the table it ends with
    each in a body of their own (`_bodies`)."""
    if not html.endswith(_BODY_CLOSE + TABLE_CLOSE):
        return html
    body = html.rfind("<tbody>\n")
    rows = html[body + 8 : -len(_BODY_CLOSE + TABLE_CLOSE)]
    return html[:body] + _bodies(rows) + TABLE_CLOSE


TABLE_CLOSE = "</table>\n"  # (how a table last in a block drawn as it renders so far ends)
_BODY_CLOSE = "</tbody>\n"


def _drawn_anew(drawing: _Drawing | None, shown: _Shown | None) -> bool:
    """Whether a block drawn as it renders so far is drawn anew: a line of it began, or it is
    drawn otherwise (as it was not, or no longer)."""
    return (None if drawing is None else drawing[0]) != (None if shown is None else shown[0])


_RENDERED_SO_FAR_MOST = 2_000
_RENDERED_SO_FAR_LINES = 60
_LINE_FORMATTED_MOST = 400  # its line being written is drawn formatted up to so long
_FENCE_AFTER = re.compile(r"`{3,}|~{3,}")
# A line's blanks and its list marker (its text starts after them); a quote's line's markers,
# its blanks and its list marker
_LINE_PREFIX = re.compile(r" *(?:(?:[-+*]|[0-9]{1,9}[.)]) {1,4}(?=[^ \t\n]))?")
_QUOTE_LINE_PREFIX = re.compile(r"(?: {0,3}> ?)* *(?:(?:[-+*]|[0-9]{1,9}[.)]) {1,4}(?=[^ \t\n]))?")
_QUOTE_TAG = re.compile(r"<(/?)blockquote>")
# The place of the text of the line being written, in its line rendered (a character of
# Unicode's private use: text to markdown; a code block's highlighting may put it, and the
# blanks before it, in a span of its own)
_PLACE = "\ue000"
_PLACE_STYLED = re.compile(r'<span class="[^"]*">([ \t]*)\ue000([ \t]*)</span>')
# A line of a list nested in an item: its blanks, its marker (a bullet, or a number and its
# delimiter), the blanks after it and a first character
_SUB_ITEM = re.compile(r"( *)(?:([-+*])|([0-9]{1,9})([.)]))( {1,4})(?=[^ \t\n])")
_RULE_MARKERS = "-*_"  # a rule's line so far: blanks, then one of them again and again,
_RULE_RUNS = {marker: re.compile(rf"[ \t{re.escape(marker)}]*") for marker in _RULE_MARKERS}
_BLANKS_AND_TABS = re.compile(r"[ \t]*")
_RULE_LINE = re.compile(r" *([-*_])(?:[ \t]*\1){2,}[ \t]*(?:\n|\Z)")  # a rule's line
# A list rendered: its opening tag's line; the tags of lists and their items
_LIST_OPENING = re.compile(r"<(ul|ol)(?: start=\"[0-9]+\")?>\n")
_LIST_ITEM_TAG = re.compile(r"<(/?)(?:ul|ol|li)\b")


@dataclass
class _OpenList:
    """A top-level list whose first items have settled: the list as the page shows it."""

    start: int  # offset in the text where the list starts
    html: str  # its settled items, rendered as a closed list
    close: str  # its closing tag: "</ul>\n" or "</ol>\n"
    loose: bool  # its items' paragraphs are drawn as paragraphs
    first: int  # a numbered list's first number (markdown numbers the rest after it)
    items: int  # how many items have settled
    shown: bool = False  # sent to the page (after the step that opened it)


_LIST_TAG = re.compile(r"<(/?)[ou]l\b")


def with_list_change(blocks_html: str, list_html: str, redrawn: bool) -> str:
    """The settled blocks as a page shows them after a step's change to the list it shows
    last among them (`RenderStep.list_html`): the items added at its end, or the list drawn
    again in its place. (What htmx does with the swaps of `chat.fragments.text_step`; the
    tests' and the benchmark's pages apply it so.)"""
    if not list_html:
        return blocks_html
    if not redrawn:
        close = blocks_html.rindex("</")
        return blocks_html[:close] + list_html + blocks_html[close:]
    depth, start = 0, 0
    for tag in _LIST_TAG.finditer(blocks_html):
        if tag.group(1):
            depth -= 1
        else:
            start = tag.start() if depth == 0 else start
            depth += 1
    close = blocks_html.rindex(">") + 1  # the list's end: after it, only its line end
    return blocks_html[:start] + list_html.rstrip("\n") + blocks_html[close:]


def normalise(text: str) -> str:
    """Line ends and NULs as markdown-it sees them (the renderer's text is in these terms)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\0", "\ufffd")


class ProgressiveRenderer:
    """Renders one streaming text block by block. Feed it deltas; read `blocks_html` and
    `tail` for the whole state (a snapshot), and each `RenderStep` for the change."""

    # Its state, in slots: read a few hundred times a delta (an instance's dictionary of
    # thirty names cost about a microsecond more a delta, a tenth of a plain text's time).
    __slots__ = (
        "_after_blank",
        "_blank_line_parsed",
        "_blocks",
        "_cell_drawn",
        "_fence",
        "_first_line",
        "_formatting",
        "_head_after",
        "_head_before",
        "_head_drawn",
        "_head_ended",
        "_head_shown",
        "_intro_seen",
        "_item_code",
        "_item_code_waits",
        "_item_list",
        "_item_table_drawn",
        "_item_table_page",
        "_item_table_seen",
        "_item_table_shown",
        "_line_drawn",
        "_list",
        "_list_settled",
        "_long_seen",
        "_marks_held",
        "_open_line",
        "_open_to",
        "_parse_work",
        "_parsed",
        "_pending_cr",
        "_quote_before",
        "_quote_drawn",
        "_quote_seen",
        "_quote_shown",
        "_references",
        "_rule_seen",
        "_table",
        "_whole_list_from",
        "_words_rendered",
        "diverged",
        "held",
        "settled",
        "text",
    )

    def __init__(self) -> None:
        self.text = ""  # normalised: line ends are "\n", as markdown-it sees them
        self.settled = 0  # the tail starts here
        self._blocks: list[str] = []
        self._references: dict[str, Any] = {}  # markdown-it's env: references seen so far
        self._pending_cr = False
        self.held = ""  # the line being written, held back while it may yet open a block
        self._fence: _OpenFence | None = None
        # The tail is one open block up to `_open_to`; lines after it that match `_open_line`
        # can only continue it, so they need no new parse.
        self._open_to: int | None = None
        self._open_line: re.Pattern[str] | None = None
        # The open top-level list whose first items have settled (the tail is its last item),
        # and, within a step, the final HTML of the one the page showed if it settled whole.
        self._list: _OpenList | None = None
        self._list_settled: str | None = None
        # A list whose items could not be rendered apart settles whole, as other blocks do.
        self._whole_list_from: int | None = None
        # A step could not say how the page's list changed (never seen): the page must be
        # drawn again from the whole text at the end.
        self.diverged = False
        self._formatting: _Formatting | None = None  # the open tail's inline formatting
        self._item_code: _ItemCode | None = None  # the open item's code block, or None
        # The tail (from `settled`) whose item's line after its first paragraph and a blank
        # line is being written, not known yet (code, a paragraph, a point): looked at as
        # each character comes (a paragraph is known from its first; a fence as its line ends)
        self._item_code_waits = -1
        # A line being written that may yet be a rule, looked at: (where it starts, its
        # marker, "" if it is no rule, where it has been looked at to)
        self._rule_seen: tuple[int, str, int] = (-1, "", 0)
        # The line being written of a block drawn as it renders so far, drawn: (where it
        # starts and ends, its HTML)
        self._line_drawn: tuple[int, int, str | None] = (-1, -1, None)
        self._item_list: _ItemList | None = None  # a list nested in the open item, or None
        # The open item's first paragraph, looked at: (where the tail starts, where the item's
        # text starts, where the line after the lines known to be the paragraph's starts)
        self._intro_seen: tuple[int, int, int] = (-1, 0, 0)
        self._words_rendered: tuple[str, int, str | None] = ("", 0, "")  # (`_render_words`)
        self._table: _OpenTable | None = None  # the open tail is a table whose head has come
        # A table's head being written in the tail: its cells as the page shows them, and its
        # line up to the pipe after its last cell that ended, with those cells rendered
        self._head_shown: tuple[str, ...] = ()
        # (both for the tail at `settled`: a cell's HTML depends on the references known)
        self._head_ended: tuple[int, str, tuple[str, ...]] = (-1, "", ())
        self._head_drawn: tuple[int, str, tuple[str, ...]] = (-1, "", ())  # its line's cells
        # A table's head after the tail's paragraph's lines (`_paragraph_head`): (where the
        # tail starts, where its lines have been looked at to for one that starts with a pipe,
        # where the first does, -1 if none); and its lines before it rendered (where the tail
        # starts, where the head starts, their HTML: "" if not a paragraph)
        self._head_after: tuple[int, int, int] = (-1, 0, -1)
        self._head_before: tuple[int, int, str] = (-1, 0, "")
        # The table's cell being written, as last drawn: its text (escaped pipes as pipes),
        # the references known then, and its drawing (`_cell_written`)
        self._cell_drawn: tuple[str, int, Drawn | None] = ("", 0, None)
        # A quote of paragraphs in the tail: (where the tail starts, where its lines have
        # been looked at to: the line being written starts there, -1 if one is no quote's;
        # how far that line has been looked at for its end; where its last paragraph's first
        # line starts, -1 while it has one; whether a blank line followed that paragraph)
        self._quote_seen: tuple[int, int, int, int, bool] = (-1, 0, 0, -1, False)
        # Its paragraphs before its last, rendered: (the last's first line, their HTML)
        self._quote_before: tuple[int, str] = (-1, "")
        # A quote of other blocks (a list, code) in the tail, drawn rendered: (where the tail
        # starts, its drawing, and the drawing's key and end as the page shows them)
        self._quote_drawn: tuple[int, _Drawing | None] = (-1, None)
        self._quote_shown: _Shown | None = None
        # A line of the open item after its first that starts with a pipe (a table in it,
        # perhaps): (where the tail starts, where its lines are looked at to, where the line
        # whose blanks that is in starts, or -1, the blanks before that pipe, or -1); and the
        # item drawn as it renders so far, as a quote of other blocks: its drawing, and as the
        # page shows it
        self._item_table_seen: tuple[int, int, int, int] = (-1, 0, -1, -1)
        self._item_table_drawn: tuple[int, _Drawing | None] = (-1, None)
        self._item_table_shown: _Shown | None = None
        self._item_table_page: _Drawing | None = None  # (its HTML as the page shows it)
        # A block drawn as it renders so far past its characters drawn at most: (where it
        # starts, where the line that took it past them has been looked at for its end to)
        self._long_seen: tuple[int, int] = (-1, 0)
        self._marks_held = True  # (an image's "!" at the end of a delta waits for the next)
        # The text the tail from `settled` was parsed to last (from, to), and the characters
        # parsed for it so far (see `_parse_deferred`).
        self._parsed = (0, 0)
        self._parse_work = 0
        self._blank_line_parsed = False  # (the first blank line after its budget ran out)
        # The tail's first line as seen so far: (where the tail starts, where it was scanned
        # to, where the line ends or -1); see `_opening`
        self._first_line: tuple[int, int, int] = (-1, 0, -1)
        # A line being written: (where it starts, whether a blank line is before it); see
        # `_line_ends_list`
        self._after_blank: tuple[int, bool] = (-1, False)

    @property
    def blocks_html(self) -> str:
        if len(self._blocks) > 1:
            self._blocks = ["".join(self._blocks)]
        blocks = self._blocks[0] if self._blocks else ""
        return blocks + self._list.html if self._list is not None else blocks

    @property
    def open_list_html(self) -> str:
        """The list the page shows last among the settled blocks, while it is still open."""
        return self._list.html if self._list is not None and self._list.shown else ""

    @property
    def tail(self) -> Tail:
        if self._fence is not None:
            return Tail("code", self.text[self._fence.body_start :], self._fence.language)
        if (table := self._table) is not None:
            return Tail(
                "table",
                self.text[table.rows_to :],
                table=table.html,
                cells=table.cells,
                aligns=table.aligns,
            )
        if (after := self._paragraph_head()) is not None:
            line = self.text[after[0] : after[1]]
            return Tail("head", line, cells=self._head_cells(line), head_before=after[2])
        if self._text_first():  # (most tails)
            return self._formatted(Tail("text", self.text[self.settled :]), self.settled)
        if self.text.startswith(_QUOTE_FIRST, self.settled) and (
            (base := self._quote_base()) is not None
        ):
            tail = Tail("quote", self.text[base:], quote_before=self._quote_paragraphs_before())
            return self._formatted(tail, base)
        if (drawing := self._quote_drawing()) is not None:
            tail = Tail("quote", self.text[drawing[3] : drawing[4]])
            tail.quote_rendered = (drawing[1], drawing[2])
            tail.line_html = self._line_html(drawing)
            return tail
        if self.text.startswith(_HEAD_FIRST, self.settled) and (head := self._table_head()):
            return Tail("head", head, cells=self._head_cells(head))  # (and empty cells after)
        open_list = self._list
        if open_list is not None and (item := _ITEM_START.match(self.text, self.settled)):
            # Numbered as markdown numbers it, whatever number it was written with ("1." each)
            number = str(open_list.first + open_list.items) if open_list.close == "</ol>\n" else ""
            return self._item_tail(item.end(), number, opens=False)
        opening = self._opening()
        if opening is not None:
            text = self.text[opening.end() :]
            if opening.lastgroup == "heading":
                tail = Tail("heading", text, level=len(opening.group("heading")))
            else:
                written = _FIRST_NUMBER.match(opening.group(0))
                first = str(int(written.group(1))) if written else ""
                return self._item_tail(opening.end(), first, opens=True)
            return self._with_item_code(self._formatted(tail, opening.end()))
        return self._formatted(Tail("text", self.text[self.settled :]), self.settled)

    def hold_formatting(self) -> None:
        """Draw the open tail's text as plain text until it settles (a continuation: the page
        shows the paragraph it was cut at rendered, then the text that follows it)."""
        base = self._format_base()
        quoted = base is not None and self._quote_base() == base
        self._formatting = None if base is None else _Formatting(base, off=True, quoted=quoted)

    def feed(self, delta: str) -> RenderStep:
        delta = self._normalise(delta)
        if self.held or "\n" in delta or self.text[-1:] in _LINE_BEGINS or delta[-1:] == "!":
            delta = self._held_back(delta)  # (a line begins: it may be held; an image's "!")
        if not delta:
            return RenderStep(blocks_html="", tail_replaced=False, appended="")
        old_end = len(self.text)
        opened = self._opening_shape()
        # Grown in place (CPython resizes a string that nothing else holds, as a local's last
        # reference): `self.text += delta` copied the whole text on every feed, quadratic in
        # the reply's length.
        text, self.text = self.text, ""
        text += delta
        self.text = text
        shown = self.open_list_html
        html: list[str] = []
        replaced = False
        if "\n" in delta:  # blocks settle and fences open only when a line is complete
            replaced = self._advance(html)
        if self._table is not None and self._line_ends_table():
            # The line being written starts another block: the table ends before it.
            self._settle(self._table.rows_to, html)
            replaced = True
        if self._item_begun(len(delta)):
            replaced = True
        if self._line_ends_list(len(delta), html):
            replaced = True
        if self._line_interrupts_paragraph(len(delta), html):
            replaced = True
        if not replaced and self._opening_shape() != opened:
            replaced = True  # the tail is drawn as the block its first line opens, or not
        if self._item_code_changed(delta):
            replaced = True
        quote, item_table = self._quote_drawing(), self._item_table_drawing()
        rows = ""
        if _drawn_anew(item_table, self._item_table_shown):
            rows = _rows_added(self._item_table_page, item_table)
        if _drawn_anew(quote, self._quote_shown) or (
            _drawn_anew(item_table, self._item_table_shown) and not rows
        ):
            replaced = True  # (a line of it began, or it is drawn otherwise: drawn anew)
        if (
            self._item_list is not None or "\n" in delta or text[old_end - 1 : old_end] == "\n"
        ) and self._item_list_changed(delta):
            replaced = True  # (a list nested in an item is looked for only as a line begins)
        step = self._step(shown, html, replaced, "" if replaced else delta)
        if (code := self._item_code) is not None and not code.off and code.after is None:
            self._formatting = None  # (its first line is drawn rendered)
            self._item_code_step(code, step, old_end)
        else:
            if (nested := self._item_list) is not None and nested.added:
                old_end = self._item_list_step(nested, step, old_end)
            if code is not None and code.after_begun:
                old_end = self._item_code_after_step(code, step, old_end)
            self._format(old_end, step)
            if (nested := self._nested_list()) is not None and nested.drawing is not None:
                self._sub_item_step(nested, step)
        if step.appended and self._formatting is not None and self._formatting.quoted:
            step.appended = unquoted(self.text, old_end, None)
        self._quote_shown = self._drawing_step(quote, self._quote_shown, step)
        self._item_table_shown = self._drawing_step(item_table, self._item_table_shown, step)
        self._item_table_page = item_table
        if rows and not step.tail_replaced:
            step.item_rows_html = rows
        if self._table is not None:
            self._table_step(step, old_end)
        elif self.text.startswith(_HEAD_FIRST, self.settled) and (head := self._table_head()):
            self._head_step(step, head)
        elif (after := self._paragraph_head()) is not None:
            self._head_step(step, self.text[after[0] : after[1]])
        return step

    def release_held_mark(self) -> RenderStep:
        """Feed an image's "!" held back at the end of the text (`_held_back`) as it is: the
        text so far is all there is for now (a continuation's saved text, as the page showed
        it; thinking that the answer now follows, which showed it without its "!" until the
        reply ended)."""
        if self.held != "!":
            return RenderStep(blocks_html="", tail_replaced=False, appended="")
        self.held, self._marks_held = "", False
        try:
            return self.feed("!")
        finally:
            self._marks_held = True

    def tail_rendered(self) -> str:
        """The open tail's text rendered as it would be if the text ended here (a reply cut
        short shows it so until it continues)."""
        return render_blocks(self.text[self.settled :], self._scratch_env())

    def finish(self) -> tuple[RenderStep, str]:
        """End the text. Returns the change to the page (the rest of an open list, then the
        last blocks, which the tail gives way to) and the whole reply's HTML, which equals
        `render_markdown(text)`. `blocks_html` is then the whole text as the page shows it."""
        if self._pending_cr:
            self._pending_cr = False
            self.held += "\n"
        self.text += self.held
        self.held = ""
        shown = self.open_list_html
        html: list[str] = []
        if self._list is not None:
            self._settle_list(self._list_end(), html)
        rest = self.text[self.settled :]
        html.append(render_blocks(rest, self._scratch_env()))
        self.settled = len(self.text)
        self._table = None
        step = self._step(shown, html, True, "")
        whole = self.blocks_html
        if (
            self._references.get("references")
            or "]:" in rest
            or ("]:" in self.text and _LABEL_LINE.search(self.text))
        ):
            # A reference defined after a block that uses it changes that block, and a
            # definition whose label or title spans blocks (a heading's underline in it)
            # settled as those blocks: render the whole text again (the page then swaps the
            # whole reply if it differs).
            whole = render_markdown(self.text)
        return step, whole

    # --- Internals ---------------------------------------------------------------------------

    def _scratch_env(self) -> dict[str, Any]:
        """markdown-it's env for a render of text that does not settle: the references seen
        so far, in a copy of their own (a copy of the env alone shares them, and the
        definitions in that text counted from then on)."""
        env = dict(self._references)
        if isinstance(references := env.get("references"), dict):
            env["references"] = dict(references)
        return env

    def _step(self, shown: str, html: list[str], replaced: bool, appended: str) -> RenderStep:
        """What changed on the page since it showed `shown` as its open list: that list's
        change first, then the blocks settled after it (ending with a list opened)."""
        list_html, redrawn = "", False
        if shown:
            now = self._list_settled
            if now is None:
                assert self._list is not None
                now = self._list.html
            change = _list_change(shown, now)
            if change is None:
                self.diverged = True  # the page shows its list as it was, until the end
            else:
                list_html, redrawn = change
        self._list_settled = None
        blocks_html = "".join(html)
        if blocks_html:
            self._blocks.append(blocks_html)
        if self._list is not None and not self._list.shown:
            self._list.shown = True
            blocks_html += self._list.html
        return RenderStep(
            blocks_html=blocks_html,
            tail_replaced=replaced,
            appended=appended,
            list_html=list_html,
            list_redrawn=redrawn,
        )

    def _format_base(self) -> int | None:
        """Where the open tail's text starts, if it is formatted as it streams: a paragraph's
        (or what may still turn out another block: it is drawn again when it settles), or a
        list item's, or a heading's; not a code block, nor text that starts indented (code,
        perhaps), nor a list's marker that is no item drawn (yet): after a tab or five blanks
        its text is code ("10. \t**b**")."""
        if self._fence is not None or self._table is not None:
            return None
        if self._text_first():
            return self.settled  # (most tails: a paragraph's)
        if (nested := self._nested_list()) is not None:
            return nested.text_from if nested.drawing is None else None
        if self._item_table_drawing() is not None:
            return None
        if (after := self._code_after()) is not None:
            return after
        if self._list is not None and (item := _ITEM_START.match(self.text, self.settled)):
            return item.end()
        if (opening := self._opening()) is not None:
            return opening.end()
        if self.text.startswith(_QUOTE_FIRST, self.settled) and (
            (base := self._quote_base()) is not None
        ):
            return base
        if self._quote_drawing() is not None:
            return None
        if self.text.startswith((" ", "\t"), self.settled):
            return None
        if self.text.startswith("|", self.settled) and self._table_head() is not None:
            return None
        if _ITEM_MARKER.match(self.text, self.settled):
            return None
        return self.settled

    def _formatted(self, tail: Tail, base: int) -> Tail:
        state = self._formatting
        if state is None or state.off or state.base != base:
            return tail
        tail.drawn_parts = (state.drawn, len(state.drawn))  # (only added to: joined if read)
        tail.raw_from = state.drawn_to - base
        tail.pending_from = None if state.span is None else state.span - base
        tail.pending_html = None if state.span is None else state.span_drawing
        return tail

    def _format(self, old_end: int, step: RenderStep) -> None:
        """Format the open tail's new words, and say in `step` how its text changed on the
        page (`RenderStep.span_html`, `formatted`, `pending`; none of them if the new text is
        appended as it is, to the pending span if one is open). A change of the tail's shape
        that the step did not say draws the tail again (never seen)."""
        base = self._format_base()
        state = self._formatting
        if base is None or state is None or state.base != base:
            if state is not None and (state.drawn or state.span is not None):
                step.tail_replaced, step.appended = True, ""  # (never seen) drawn again
            if base is None:
                self._formatting = None
                return
            quoted = self._quote_base() == base
            state = _Formatting(base, drawn_to=base, scan_from=base, quoted=quoted)
            if not step.tail_replaced and old_end > base:  # the page shows it as text
                state.drawn.append(escape(self._shown(state, base, old_end)))
                state.drawn_to = state.scan_from = old_end
            self._formatting = state
        if state.off:
            return
        span = state.span
        commits = self._format_words(state)
        if state.redrawn:  # a mark given up on closed: the tail is drawn again from before it
            state.redrawn = False
            step.tail_replaced, step.appended = True, ""
        if step.tail_replaced:
            self._draw_pending(state)  # (the tail is drawn whole, its pending span so)
            return
        if not commits and state.span == span:
            if span is not None:
                self._pending_grew(state, step)
            return
        start = old_end
        if span is not None:  # the pending span's marks closed: it is drawn formatted
            _, start, span_html = commits.pop(0)
            if span_html is None:  # or its mark was given up on: drawn as text from it on
                step.span_given_up, start = True, span
            else:
                step.span_html = span_html
        step.formatted, step.pending = self._drawn_after(state, start, commits)

    def _format_words(self, state: _Formatting) -> list[tuple[int, int, str | None]]:
        """Move the formatting on to the end of the text: open a pending span at a mark, and
        draw it formatted at the first cut where its marks all closed. Returns the words
        formatted: (start, end, HTML)."""
        text, end = self.text, len(self.text)
        commits: list[tuple[int, int, str | None]] = []
        while not state.stuck:
            if state.span is None:
                mark = _MARK.search(text, state.scan_from)
                if mark is None:
                    state.scan_from = end
                    return commits
                line = text.rfind("\n", state.base, mark.start()) + 1
                if line and _INDENTED.match(text, line):
                    # Code, perhaps (indented): left as text, and the words after it too, whose
                    # marks may pair with its marks (it may be an item's paragraph)
                    state.stuck = True
                    return commits
                if text[mark.start()] == "\n":
                    # A hard line break (two spaces at a line's end): its line's end drawn as
                    # the break as it comes (its spaces, on the page already, show as nothing
                    # before it; at a paragraph's end, where the spaces are nothing, the break
                    # goes as the paragraph settles)
                    if self._breaks_line(state, mark.start()):
                        self._commit(state, mark.start(), mark.end(), _BREAK, commits)
                    else:
                        state.scan_from = mark.end()
                    continue
                state.span = state.scan_from = state.tried_to = mark.start()
                state.before, state.tries = None, 0
                state.yielding, state.trigger, state.trigger_scan = None, None, 0
                state.trigger_run = None
            span = state.span
            if text[span] in "&<":
                # An entity or an autolink: drawn as it renders once written whole (as text
                # while it may still be one, as any word; as text if it is none)
                whole = (_ENTITY if text[span] == "&" else _AUTOLINK).match(text, span)
                # (a link's text may hold "_": no mark, rendered alone; one markdown-it takes
                # for no link, "<javascript:...>", is text whose marks may pair after it)
                if whole is not None and (
                    (rendered := render_cell(whole.group(), self._references)).startswith("<a ")
                    or text[span] == "&"
                ):
                    self._commit(state, span, whole.end(), rendered, commits)
                    continue
                if whole is None and (_ENTITY_OPEN if text[span] == "&" else _AUTOLINK_OPEN).match(
                    text, span
                ):
                    return commits  # (it may be one yet)
                self._commit(state, span, span + 1, escape(text[span]), commits)  # none: text
                continue
            if text[span] == "\\" and span + 1 < end and not self._in_autolink(state, span):
                escaped = text[span + 1]
                if escaped == "\n":  # a hard line break (a backslash as text at a paragraph's
                    # end, which the next line tells: drawn as the break meanwhile)
                    self._commit(state, span, span + 2, _BREAK, commits)
                    continue
                if escaped not in _ESCAPABLE:
                    self._commit(state, span, span + 1, "\\", commits)  # a backslash as text
                    continue
                html = self._words_html(state, span, span + 2)
                if state.stuck:
                    break
                if html is not None:  # an escape: its mark as text ("\[", "\(", "\*")
                    self._commit(state, span, span + 2, html, commits)
                    continue
            line_end = text.find("\n", span)
            yielding = self._may_give_up(state, span)
            if state.stuck:
                break
            trigger = self._give_up_at(state, span) if yielding else None
            outcome = None  # "give up", or "back": a mark given up on closed
            for cut in _CUT.finditer(text, max(state.scan_from, span + 1)):
                position = cut.start()
                if trigger is not None and position > trigger:
                    outcome = self._given_up_or_back(state, span, trigger)
                    break
                if position - span > _PENDING_LIMIT or 0 <= line_end < position:
                    if yielding:
                        outcome = "give up"
                        break
                    state.stuck = True  # a long or multi-line pending span stays text
                    break
                ended = text[state.tried_to - 1] if state.tried_to else " "  # the last tried
                if not _CLOSING.search(text, state.tried_to, position) and ended not in "*_~":
                    continue  # plain words: the marks still open stay so
                if text[position - 1] == "\\" and text[position] == "\n":
                    position -= 1  # a hard line break: the words end before its backslash
                    if position <= span:
                        continue
                state.tries += 1
                if state.tries > _PENDING_TRIES:
                    if yielding:
                        outcome = "give up"
                        break
                    state.stuck = True
                    break
                state.tried_to = position
                html = self._words_html(state, span, position)
                if state.stuck:
                    break
                if state.given_up and self._roll_back(state, span, position):
                    outcome = "back"
                    break
                if html is not None:
                    self._commit(state, span, position, html, commits)
                    break
            else:
                if trigger is None:
                    state.scan_from = end
                    return commits
                outcome = self._given_up_or_back(state, span, trigger)
            if outcome == "give up":
                self._give_up(state, span, commits)
        return commits

    def _may_give_up(self, state: _Formatting, span: int) -> bool:
        """Whether the pending span's mark is one that seldom closes (drawn as text: "*.py",
        "2**10", "f(*args", "_private"), which may be given up on (`_give_up`): an
        emphasis's or a strikethrough's, whose run has ended, not before another such mark,
        after words that render alone; not one taken back once (`_roll_back`), nor one of a
        character that closed so before in this text, nor more than a few within the reach
        of a mark that closes them (`_PENDING_LIMIT`) before it."""
        if state.yielding is not None:
            return state.yielding
        text = self.text
        mark = text[span]
        # (one too far behind to close, `_roll_back`, is no longer watched: not counted)
        while state.given_up and span - state.given_up[0].mark > _PENDING_LIMIT:
            del state.given_up[0]
        if (
            mark not in "*_~"
            or mark in state.closing_marks
            or span < state.kept_to
            or len(state.given_up) >= _GIVEN_UP_AT_MOST
        ):
            state.yielding = False
            return False
        end = max(span, state.trigger_scan)
        while end < len(text) and text[end] == mark:
            end += 1
        if end == len(text):
            state.trigger_scan = end  # (a long run is looked at once)
            return False  # (its run may go on)
        state.trigger_scan = end
        if text[end] in "*_~" or self._may_open(span):
            state.yielding = False
            return False
        words_before = self._words_before(state, span)
        state.yielding = words_before is not None and words_before[1] != "\0"
        return state.yielding

    def _give_up_at(self, state: _Formatting, span: int) -> int | None:
        """Where the first mark after the pending span's (a mark that seldom closes) is that
        cannot close it: another construct's, or a run of its character that cannot close
        (CommonMark's flanking rules). Its words before that mark did not close it: it is
        given up on there, and that mark is drawn as it will render from its start. None if
        none has come (a run that may close it is passed over)."""
        if state.trigger is not None:
            return state.trigger
        text = self.text
        mark = text[span]
        position = state.trigger_scan  # (after its own run: `_may_give_up`)
        while True:
            at = state.trigger_run  # (a run at the text's end when last looked at)
            if at is None:
                found = _MARK.search(text, position)
                if found is None:
                    break
                at = position = found.start()
                if text[at] != mark:
                    state.trigger = at
                    return at
            run_end = position
            while run_end < len(text) and text[run_end] == mark:
                run_end += 1
            if run_end == len(text):
                # (what follows it tells whether it may close; a long run looked at once)
                state.trigger_run, state.trigger_scan = at, run_end
                return None
            state.trigger_run = None
            flanking = flanks(text[max(0, at - 2) : at], text[run_end])
            if not flanking.closes(mark) or (mark == "~" and run_end - at != 2):
                state.trigger = at
                return at
            position = run_end
        state.trigger_scan = len(text)
        return None

    def _give_up(
        self, state: _Formatting, span: int, commits: list[tuple[int, int, str | None]]
    ) -> None:
        """Draw the pending span's mark as the text it stays if nothing closes it, and format
        the words after it as their own marks close: whatever follows, they render so, or,
        if a mark after them closes it, inside the element it opens (their marks all closed
        before). Watched for that (`_roll_back`)."""
        text = self.text
        end = span
        while text[end] == text[span]:
            end += 1
        assert state.before is not None
        start, before = state.before
        state.given_up.append(_GivenUp(span, end, start, before, len(state.drawn), state.drawn_to))
        state.drawn.append(escape(self._shown(state, state.drawn_to, end)))
        commits.append((span, end, None))  # (None: text, in no span of its own)
        state.drawn_to = state.scan_from = end
        state.span = None

    def _given_up_or_back(self, state: _Formatting, span: int, trigger: int) -> str:
        """The pending span's mark, its words up to `trigger` (the first mark after it that
        cannot close it) not closing it, is given up on; but those words may close a mark
        given up on before it, the mark after them at once ("_a `b` c_[1]", "2**10 `x`
        y**`z`"): the tail goes back to that one (`_roll_back`). Whether the text ends at a
        cut or not, the same words are looked at."""
        if state.given_up and self._roll_back(state, span, trigger):
            return "back"
        return "give up"

    def _roll_back(self, state: _Formatting, span: int, cut: int) -> bool:
        """If a mark given up on closes with the words up to `cut` (the pending span's, from
        `span`), go back to the state before it was given up, its text the pending span
        again, to be tried at `cut` (the tail is drawn again); whether one did. The words
        are rendered with the mark and with the mark escaped: the same HTML if it is left
        open."""
        text = self.text
        written = text[span:cut]
        for index, given_up in enumerate(state.given_up):
            mark = text[given_up.mark]
            if mark not in written or cut - given_up.mark > _PENDING_LIMIT:
                continue
            words = self._shown(state, given_up.start, cut)
            at = given_up.mark - given_up.start
            if state.quoted:
                at = len(self._shown(state, given_up.start, given_up.mark))
            escaped = words[:at] + "\\" + "\\".join(text[given_up.mark : given_up.end])
            escaped += words[at + given_up.end - given_up.mark :]
            if render_inline(words, self._references) == render_inline(escaped, self._references):
                continue
            del state.given_up[index:]
            state.drawn = state.drawn[: given_up.drawn]
            state.drawn_to = given_up.drawn_to
            state.span, state.scan_from, state.tried_to = given_up.mark, cut, given_up.mark
            state.before, state.tries = (given_up.start, given_up.before), 0
            state.kept_to = given_up.mark + 1
            state.closing_marks += mark
            state.yielding, state.trigger, state.trigger_scan = None, None, 0
            state.trigger_run = None
            state.redrawn = True
            return True
        return False

    def _breaks_line(self, state: _Formatting, line_end: int) -> bool:
        """Whether the spaces before `line_end` make a hard line break: two at least, but for
        one that a backslash before them escapes (it is drawn as text with it, "\\ "), on a
        line with text (not only blanks, a quote's or an item's marker)."""
        text = self.text
        spaces = line_end
        while spaces > state.drawn_to and text[spaces - 1] == " ":
            spaces -= 1
        backslashes = spaces
        while backslashes > state.base and text[backslashes - 1] == "\\":
            backslashes -= 1
        line = text.rfind("\n", 0, spaces) + 1
        if _NO_TEXT.fullmatch(text, line, spaces):
            return False
        return line_end - spaces - (spaces - backslashes) % 2 >= 2

    def _in_autolink(self, state: _Formatting, at: int) -> bool:
        """Whether `at` may be inside an autolink ("<https://...>"), where a backslash is no
        escape: a "<" before it in its word."""
        text = self.text
        opening = text.rfind("<", max(state.drawn_to, at - 200), at)
        return opening >= 0 and not _BLANK_IN.search(text, opening, at)

    def _commit(
        self,
        state: _Formatting,
        span: int,
        cut: int,
        html: str,
        commits: list[tuple[int, int, str | None]],
    ) -> None:
        """The pending span's words up to `cut` are drawn formatted (`html`)."""
        state.drawn.append(escape(self._shown(state, state.drawn_to, span)))
        state.drawn.append(f"<span>{html}</span>")
        state.drawn_to = state.scan_from = cut
        state.span = None
        commits.append((span, cut, html))

    def _words_html(self, state: _Formatting, span: int, cut: int) -> str | None:
        """The pending span's words up to `cut` formatted, if their marks all closed. They are
        rendered with the word before them, which their marks' meaning may depend on
        ("snake_case", "a * b"); that word is on the page already, as text."""
        words_before = self._words_before(state, span)
        if words_before is None:
            return None
        start, before = words_before
        whole = self._render_words(self.text[start:cut])
        if whole is None or not whole.startswith(before):
            return None
        return whole[len(before) :]

    def _render_words(self, words: str) -> str | None:
        """`render_words`, the last words rendered remembered: a pending span's drawing is
        most often what its settling renders again (its closing marks came, then a blank)."""
        references = len(self._references.get("references", ()))
        if self._words_rendered[:2] != (words, references):
            self._words_rendered = (words, references, render_words(words, self._references))
        return self._words_rendered[2]

    def _words_before(self, state: _Formatting, span: int) -> tuple[int, str] | None:
        """Where the word before the pending span starts, and its HTML ("\0" if it does not
        render alone); None if it is too long to see whole (the span then stays text)."""
        if state.before is None:
            text = self.text
            floor = max(state.drawn_to, span - 200)
            floor = max(floor, text.rfind("\n", floor, span) + 1)
            if span > state.base and cjk(text[span - 1]):
                # CJK text: the character before the marks is the word (drawn already, perhaps,
                # as the last of the words formatted before them)
                floor = span - 1
            start = span
            while start > floor and text[start - 1] not in " \t":
                start -= 1  # the span's own word
            if start == span - 200 and text[start - 1] not in " \t\n":
                state.stuck = True  # a word too long to see whole: its marks stay text
                return None
            while start > floor and text[start - 1] in " \t":
                start -= 1
            while start > floor and text[start - 1] not in " \t":
                start -= 1  # the word before it
            while start < span and text[start] in " \t":
                start += 1
            if start == span > floor and text[span - 1] in " \t":
                # No word before it but a blank (the words before were drawn formatted): the
                # blank, which the mark's meaning depends on ("a * b * c": "* c" alone
                # renders with its "*" open, and the rest of the paragraph stayed text)
                start -= 1
            words = text[start:span]
            # Words without marks, escapes or entities render as themselves
            before = words if _AS_IS.fullmatch(words) else render_words(words, self._references)
            state.before = (start, before if before is not None else "\0")
        return state.before

    def _item_start(self) -> tuple[int, int] | None:
        """Where the open item's text starts and its column, if the tail is a list's item."""
        if self._fence is not None or self._table is not None:
            return None
        if self.text[self.settled : self.settled + 1] not in _OPENING_FIRST:
            return None
        if self._list is not None and (item := _ITEM_START.match(self.text, self.settled)):
            return item.end(), item.end() - self.settled
        opening = self._opening()
        if opening is not None and opening.lastgroup == "item":
            return opening.end(), opening.end() - self.settled
        return None

    def _item_code_changed(self, delta: str) -> bool:
        """Look at the open item's new lines for its code block (`_ItemCode`): True if the
        tail is drawn otherwise from now on (the block began or closed, or the item is drawn
        as text again). `delta`: the text fed (a code block begins only as a line ends)."""
        code = self._item_code
        if code is None and "\n" not in delta and self._item_code_waits != self.settled:
            return False
        if code is not None and code.off and code.settled == self.settled:
            return False  # (the item, or the next block that starts where it started)
        start = self._item_start()
        if start is None:
            self._item_code, self._item_code_waits = None, -1
            return False
        base, column = start
        if code is None or code.settled != self.settled or code.base != base:
            code = self._item_code = self._item_code_opened(base, column)
            if code is None or code.off:
                return False
            self._scan_item_code(code)
            return not code.off  # (drawn as text before)
        return False if code.off else self._scan_item_code(code)

    def _scan_item_code(self, code: _ItemCode) -> bool:
        """Look at the item's lines after those looked at: True if its code block closed, or
        the item is drawn as text again."""
        text = self.text
        changed = False
        if code.after is not None:
            return False  # (its lines are the item's text, formatted as a paragraph's)
        while (end := text.find("\n", max(code.scanned, code.looked))) >= 0:
            line = text[code.scanned : end + 1]
            if code.closed and line.strip(" \t\n"):
                return self._item_text_after(code) or changed
            code.scanned = code.looked = end + 1
            if code.closed:
                continue  # (a blank line)
            if code.closing.fullmatch(line):
                code.closed = changed = True
                source = self._fence_source(code, end + 1)
                code.block = render_blocks(source, self._scratch_env())
            elif (shown := self._code_line(line, code)) is None:
                code.off = True
                return True
            else:
                code.lines.append(shown)
        code.looked = len(text)
        blanks_end = code.blanks_end(text)
        if code.closed and _BLANKS_AND_TABS.fullmatch(text, blanks_end):
            return changed  # (blanks and tabs so far: a blank line, perhaps)
        if blanks_end < len(text) and code.closed:
            return self._item_text_after(code) or changed
        if blanks_end < len(text) and self._line_drawn_from(code) is None:
            code.off = True  # the line being written has text that the block cannot take
            return True
        return changed

    def _item_text_after(self, code: _ItemCode) -> bool:
        """The line at `code.scanned`, after the item's closed block, has text: the item's
        text after the block, if it is indented as the item's (True: the item is drawn as text
        again, if not: a line that ends the list)."""
        blanks = _BLANKS.match(self.text, code.scanned)
        assert blanks is not None
        if blanks.end() - code.scanned < code.column or self.text[blanks.end()] == "\t":
            code.off = True
            return True
        code.after, code.after_begun = blanks.end(), True
        return False

    def _line_drawn_from(self, code: _ItemCode) -> int | None:
        """Where the page shows the open item's code line being written from (its blanks up
        to the fence's dropped); None if the item cannot take it (less indented, or a tab)."""
        start = code.scanned
        end = code.blanks_end(self.text)
        if end < len(self.text) and (end - start < code.column or self.text[end] == "\t"):
            if len(self.text) - end <= _HELD_AT_MOST and not self.text[end:].strip(" \t"):
                return len(self.text)  # blanks and a tab so far: a blank line, perhaps
            return None
        return start + min(end - start, code.indent)

    def _item_code_opened(self, base: int, column: int) -> _ItemCode | None:
        """The open item's code block, if its second line opens one after a first line of
        text (one `off` if not); None while that is not known yet (its second line being
        written, which a fence's opening line is not: it is held back until it ends)."""
        text = self.text
        self._item_code_waits = -1
        intro = self._item_intro(base, column)
        if intro is None:
            return None
        first_end, after = intro
        blank_lines = _BLANK_LINES.match(text, after, after + _HELD_AT_MOST)
        assert blank_lines is not None
        second = blank_lines.end()  # (a loose item's blank lines before its code; a few)
        window = second + _HELD_AT_MOST + 2
        fence = _ITEM_FENCE.match(text, second, window)
        off = _ItemCode(self.settled, base, column, 0, 0, _ITEM_FENCE, "", "", 0, off=True)
        if fence is None:
            if second > after and (paragraph := self._item_paragraph(base, column, intro, second)):
                return paragraph
            known = "\n" in text[second:window] or len(text) - second > _HELD_AT_MOST
            if not known and second > after and self._item_code_waits != self.settled:
                self._item_code_waits = self.settled  # (its first character tells)
            return off if known else None
        blanks, marker, info = fence.groups()
        if not column <= len(blanks) <= column + 3 or (marker[0] == "`" and "`" in info):
            return off
        first = render_blocks(text[base:first_end], self._scratch_env())
        if not (first.startswith("<p>") and first.endswith("</p>\n") and first.count("<p>") == 1):
            return off  # its first line is no paragraph's (a heading, a quote, a list)
        closing = re.compile(
            rf" {{{column}}} {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*\n"
        )
        return _ItemCode(
            settled=self.settled,
            base=base,
            column=column,
            body=fence.end(),
            indent=len(blanks),
            closing=closing,
            language=fence_language(info),
            intro=first[3:-5],
            scanned=fence.end(),
        )

    def _item_paragraph(
        self, base: int, column: int, intro: tuple[int, int], second: int
    ) -> _ItemCode | None:
        """The open item's second paragraph, if the line at `second` (after a blank line)
        begins one, indented as the item's text ("1. **Title**", blank, "   Its text."): the
        item's first paragraph rendered, then this one's text as it comes, formatted (it was
        drawn on the first's line, and moved under it as the item settled). What follows it
        is drawn as its text until the item settles, as the text after an item's code is."""
        text = self.text
        blanks = _BLANKS.match(text, second, second + _HELD_AT_MOST + 1)
        assert blanks is not None
        start = blanks.end()
        if not column <= start - second <= column + 3 or start == len(text):
            return None
        if text[start] in _NOT_PARAGRAPH_TEXT or not _STARTS_TEXT_AT.match(text, start):
            return None  # (a point, a fence, a table, a label: another block, or not known)
        first = render_blocks(text[base : intro[0]], self._scratch_env())
        if not (first.startswith("<p>") and first.endswith("</p>\n") and first.count("<p>") == 1):
            return None  # its first line is no paragraph's (a heading, a quote, a list)
        return _ItemCode(
            settled=self.settled,
            base=base,
            column=column,
            body=intro[1],
            indent=0,
            closing=_ITEM_FENCE,
            language="",
            intro=first[3:-5],
            scanned=second,
            closed=True,
            after=start,
            after_begun=True,
            paragraph=True,
        )

    def _code_line(self, line: str, code: _ItemCode) -> str | None:
        """A line of the open item's code as shown: without the fence's blanks (those of the
        item's indentation at least); None if the item cannot take it (less indented)."""
        blanks = len(line) - len(line.lstrip(" "))
        if not line.strip(" \t\n"):
            return line[min(blanks, code.indent) :]
        if blanks < code.column or line[blanks : blanks + 1] == "\t":
            return None
        return line[min(blanks, code.indent) :]

    def _fence_source(self, code: _ItemCode, end: int) -> str:
        """The open item's code block, its fences too, without the item's indentation: as
        markdown renders it in the item."""
        start = self.text.rfind("\n", 0, code.body - 1) + 1  # its opening line
        lines = self.text[start : end - 1].split("\n")  # (not `splitlines`: \v is text)
        blanks = [len(line) - len(line.lstrip(" ")) for line in lines]
        cut = [line[min(n, code.column) :] for line, n in zip(lines, blanks, strict=True)]
        return "\n".join(cut) + "\n"

    def _item_code_step(self, code: _ItemCode, step: RenderStep, old_end: int) -> None:
        """Say in `step` what the page adds to the open item's code (the rest of the line it
        showed being written, the lines completed after it, the line being written), or that
        it draws the item again; the text before `old_end` came before this step."""
        drawn_from = None if code.closed else self._line_drawn_from(code)
        if not step.tail_replaced:
            text = self.text
            shown = text[code.shown_from : old_end] if code.shown_from < old_end else ""
            new_lines = code.lines[code.shown_lines :]
            written = "" if drawn_from is None else text[drawn_from:]
            if new_lines:
                added = "".join(new_lines) + written
            elif drawn_from == code.shown_from or not shown:
                added = written
            else:
                added = None
            if added is None or not added.startswith(shown):
                step.tail_replaced, step.appended = True, ""
            else:
                step.appended = added[len(shown) :]
        code.shown_lines = len(code.lines)
        code.shown_from = len(self.text) if drawn_from is None else drawn_from

    def _code_after(self) -> int | None:
        """Where the open item's text after its code block starts, if it has begun."""
        code = self._item_code
        if code is None or code.off or code.settled != self.settled:
            return None
        return None if self._fence is not None or self._table is not None else code.after

    def _item_code_after_step(self, code: _ItemCode, step: RenderStep, old_end: int) -> int:
        """The item's text after its code block began in this step: drawn from its start (the
        page shows none of it); returns where the page's text of it ends."""
        code.after_begun = False
        if step.tail_replaced or code.after is None:
            return old_end
        self._formatting = None
        step.appended = self.text[code.after :]
        return code.after

    def _with_item_code(self, tail: Tail) -> Tail:
        code = self._item_code
        if code is None or code.off:
            return tail
        tail.item_intro, tail.item_language, tail.item_block = code.intro, code.language, code.block
        tail.item_after = code.after is not None
        tail.item_loose = tail.item_paragraph = code.paragraph
        drawn_from = None if code.closed else self._line_drawn_from(code)
        tail.item_code = code.code() + ("" if drawn_from is None else self.text[drawn_from:])
        return tail

    def _item_tail(self, base: int, number: str, opens: bool) -> Tail:
        """The open item (its text starts at `base`) as the tail: its text, or its first line
        and its code block, or its first line and the list nested in it."""
        if (nested := self._nested_list()) is not None:
            drawing = nested.drawing
            written_from = nested.text_from if drawing is None else drawing[3]
            tail = Tail("item", self.text[written_from:], number=number, opens=opens)
            tail.item_intro, tail.item_list = nested.intro, nested.tag
            tail.item_loose = nested.loose
            tail.item_list_items = nested.items_html
            if drawing is not None:
                tail.text = self.text[drawing[3] : drawing[4]]
                tail.item_list_written = (drawing[1], drawing[2])
                tail.line_html = self._line_html(drawing)
                return tail
            return self._formatted(tail, nested.text_from)
        if (drawing := self._item_table_drawing()) is not None:
            tail = Tail("item", self.text[drawing[3] : drawing[4]], number=number, opens=opens)
            tail.item_rendered = (_rows_apart(drawing[1]), drawing[2])
            tail.line_html = self._line_html(drawing)
            return tail
        if (after := self._code_after()) is not None:
            base = after  # (its text after its code block)
        tail = Tail("item", self.text[base:], number=number, opens=opens)
        return self._with_item_code(self._formatted(tail, base))

    def _item_table_drawing(self) -> _Drawing | None:
        """The open item, if a line of it after its first starts with a pipe (a step's first
        line, then a table: "1. Compare them:" then "   | Plan | Price |"), drawn as it
        renders so far (`_rendered_so_far`), as a quote of other blocks is: its table's head
        drawn as its delimiter row ends, each row as its line does (`_table_lines_hidden`).
        It was drawn as the item's text, pipes and all, then jumped into the table as the next
        item began. None: not such an item (its code, a list nested in it drawn otherwise),
        or it does not render as one item."""
        start = self.settled
        if self.text[start : start + 1] not in _OPENING_FIRST:
            return None  # (most tails: a paragraph's)
        indent = self._pipe_line_indent(start)
        if indent < 0:
            return None  # (most items)
        if self._fence is not None or self._table is not None or self._nested_list() is not None:
            return None
        if (code := self._item_code) is not None and code.settled == start and not code.off:
            return None
        if self._list is not None:
            if (item := _ITEM_START.match(self.text, start)) is None:
                return None
        elif (item := self._opening()) is None or item.lastgroup == "heading":
            return None
        if indent < item.end() - start:
            return None  # (less in than the item's text: no line of a table in the item)
        seen, drawing = self._item_table_drawn
        drawing = self._rendered_so_far(
            start, _LINE_PREFIX, drawing if seen == start else None, self._one_item_html
        )
        self._item_table_drawn = (start, drawing)
        return drawing

    def _pipe_line_indent(self, start: int) -> int:
        """The blanks before the pipe that starts the first line after the first of the tail
        (from `start`) that starts so after two blanks or more (a line of a table in a list's
        item, perhaps: an item's text is two in at least); -1 if none does. Each character is
        looked at once (a long line, or a long run of blanks, was looked at whole again at
        each delta)."""
        seen, checked, line, indent = self._item_table_seen
        if seen != start:
            checked, line, indent = start, -1, -1
        text = self.text
        while indent < 0:
            if line < 0:  # (the next line's start)
                newline = text.find("\n", checked)
                if newline < 0:
                    checked = len(text)
                    break
                checked = line = newline + 1
            blanks = _BLANKS.match(text, checked)
            assert blanks is not None
            checked = blanks.end()
            if checked == len(text):
                break  # (blanks so far)
            if text[checked] == "|" and checked - line >= 2:
                indent = checked - line
            line = -1
        self._item_table_seen = (start, checked, line, indent)
        return indent

    def _one_item_html(self, source: str) -> str | None:
        """An item of a top-level list (its lines, its marker first), rendered alone: the HTML
        inside its `<li>`; None if it does not render as one item."""
        rendered = render_blocks(source, self._scratch_env())
        opening = _LIST_OPENING.match(rendered)
        if opening is None:
            return None
        close = f"</{opening.group(1)}>\n"
        inner = rendered[opening.end() : -len(close)]
        if not rendered.endswith(close) or not inner.startswith("<li>"):
            return None
        depth = 0
        for tag in _LIST_ITEM_TAG.finditer(inner):
            depth += -1 if tag.group(1) else 1
            if depth == 0 and inner[tag.end() :] != ">\n":
                return None  # (more than one item)
        return inner[4:-6] if inner.endswith("</li>\n") else None

    def _nested_list(self) -> _ItemList | None:
        """The list nested in the open item, if it is drawn as a list."""
        nested = self._item_list
        if nested is None or nested.off or not nested.tag or nested.settled != self.settled:
            return None
        return None if self._fence is not None or self._table is not None else nested

    def _item_list_changed(self, delta: str) -> bool:
        """Look at the open item's new lines for a list nested in it (`_ItemList`): True if
        the tail is drawn otherwise from now on (the list began, or the item is drawn as text
        again). Items of it that settled wait in `added` for the step. `delta`: the text fed
        (such a list is looked for only as a line begins)."""
        nested, waiting = self._item_list, False
        if nested is not None and nested.settled == self.settled:
            if nested.off or self._fence is not None or self._table is not None:
                return False
            if nested.tag:
                scanned = self._scan_item_list(nested)
                return self._sub_item_drawn_otherwise(nested) or scanned
            waiting = nested.current > 0  # its second line began: blanks so far
        if not waiting and "\n" not in self.text[-len(delta) - 1 :]:
            return False  # no line begins in what came
        start = self._item_start()
        if start is None:
            self._item_list = None
            return False
        nested = self._item_list = self._item_list_opened(*start)
        if nested.off or not nested.tag:
            return False
        self._scan_item_list(nested)
        self._sub_item_drawn_otherwise(nested)
        return not nested.off  # (drawn as text before)

    def _item_list_opened(self, base: int, column: int) -> _ItemList:
        """The list nested in the open item, if the line after its first paragraph begins one
        (one `off` if not; one without a `tag` while that line is not known: blanks so far,
        or nothing)."""
        text = self.text
        nested = _ItemList(self.settled)
        intro = self._item_intro(base, column)
        if intro is None:
            # The line being written: blanks so far (looked at as each character comes), or
            # the first paragraph's (looked at again as the next line begins)
            line = self._intro_seen[2]
            blank = line and not text[line : line + _HELD_AT_MOST + 1].strip(" ")
            nested.current = line if blank else 0
            return nested
        first_end, second = intro
        blank_lines = _BLANK_LINES.match(text, second, second + _HELD_AT_MOST)
        assert blank_lines is not None
        loose, second = blank_lines.end() > second, blank_lines.end()  # (a loose item's points)
        nested.current = second
        if not text[second : second + _HELD_AT_MOST].strip(" \t"):  # (blanks and tabs so far)
            nested.off = len(text) - second > _HELD_AT_MOST
            return nested
        line_end = text.find("\n", second)
        if line_end < 0 and self._may_yet_be_rule(second):
            return nested  # (it may yet be a rule, a line longer than those held back)
        item = _SUB_ITEM.match(text, second)
        nested.off = True
        if item is None or not column <= len(item.group(1)) <= column + 3:
            return nested
        if _RULE_LINE.match(text, second, max(line_end, second)):
            return nested  # (a rule, its line ended: a rule's line is held back until then)
        if item.group(3) is not None and int(item.group(3)) != 1:
            return nested  # (a numbered list that interrupts a paragraph starts at 1; drawn
            # without its number, a loose item's too)
        first = render_blocks(text[base:first_end], self._scratch_env())
        if not (first.startswith("<p>") and first.endswith("</p>\n") and first.count("<p>") == 1):
            return nested  # its first line is no paragraph's (a heading, a quote, a list)
        nested.off, nested.loose = False, loose
        nested.intro, nested.indent, nested.column = first[3:-5], len(item.group(1)), column
        nested.tag = "ul" if item.group(2) else "ol"
        nested.marker = item.group(2) or item.group(4)
        nested.current, nested.text_from = second, item.end()
        nested.looked = second
        return nested

    def _item_intro(self, base: int, column: int) -> tuple[int, int] | None:
        """The open item's first paragraph (its text starts at `base`, its lines' at `column`):
        where its text ends, and where the line after it starts; None while the line being
        written may be one of its lines. Its lines are its first, and each after it that
        starts text (a step's line, then a word on it, then its code or its points); a lazy
        one too. Each is looked at once."""
        text = self.text
        seen_settled, seen_base, line = self._intro_seen
        if (seen_settled, seen_base) != (self.settled, base) or not line:
            line = text.find("\n", base) + 1
            if not line:
                self._intro_seen = (self.settled, base, 0)
                return None  # (its first line being written)
        while True:
            end = text.find("\n", line)
            blanks = _BLANKS.match(text, line, line + _HELD_AT_MOST + 1)  # (a long one: no
            assert blanks is not None  # point, nor code, but it may yet be text: its end)
            first = blanks.end()
            if end < 0:
                # The line being written: the paragraph's, perhaps, until it begins a point
                # (a fence's line is held back until it ends) or is a long run of blanks
                self._intro_seen = (self.settled, base, line)
                if first - line > _HELD_AT_MOST or _SUB_ITEM.match(text, line):
                    return line - 1, line
                return None
            if first == end or not _STARTS_TEXT_AT.match(text, first, end):
                self._intro_seen = (self.settled, base, line)
                return line - 1, line
            line = end + 1

    def _scan_item_list(self, nested: _ItemList) -> bool:
        """Look at the lines after those of the nested list's item being written: an item of
        it that begins (its marker, as far in as the item's text and less far than the
        item being written's) settles the one before it (its HTML in `added`), if that one
        renders as one item; any other line is one of the item being written (its second
        line, a list nested in it, another marker's list, text after the list: drawn as its
        text, until the item settles). Returns False: the list stays drawn."""
        text = self.text
        while True:
            if nested.after is None:
                end = text.find("\n", max(nested.current, nested.looked))
                if end < 0:
                    nested.looked = len(text)
                    return False
                nested.after, nested.blanks_to = end + 1, end + 1
            start = nested.after
            blanks = _BLANKS_AND_TABS.match(text, max(start, nested.blanks_to))
            assert blanks is not None
            if blanks.end() == len(text):
                nested.blanks_to = len(text)
                return False  # blanks so far (held back, most often)
            if text[blanks.end()] == "\n":
                nested.after = nested.blanks_to = blanks.end() + 1
                continue
            end = text.find("\n", start)
            if end < 0 and self._may_yet_be_rule(start):
                return False  # (it may yet be a rule: decided as its line ends)
            line = text[start:] if end < 0 else text[start:end]
            item = _SUB_ITEM.match(line)
            item_html = None
            if (
                item is not None
                and nested.column <= len(item.group(1)) < nested.text_from - nested.current
                and (item.group(2) or item.group(4)) == nested.marker
                and not _RULE_LINE.fullmatch(line)
            ):
                item_html = self._sub_item_html(nested, text[nested.current : start])
            if item is None or item_html is None:
                nested.after, nested.looked = None, start  # a line of the item being written
                nested.lines = True
                continue
            nested.items_html += item_html
            nested.added += item_html
            nested.lines = False
            nested.current, nested.text_from = start, start + item.end()
            nested.indent = len(item.group(1))
            nested.after, nested.looked = None, start

    def _may_yet_be_rule(self, start: int) -> bool:
        """Whether the line being written from `start` may yet be a rule: blanks, then one
        marker ("-", "*", "_") again and again, blanks and tabs between. Each character is
        looked at once (a long run of them was matched whole again at each delta)."""
        text = self.text
        seen, marker, to = self._rule_seen
        if seen != start:
            first = _BLANKS.match(text, start)
            assert first is not None
            if first.end() == len(text):
                return True  # (blanks so far)
            seen, marker, to = start, text[first.end()], first.end()
            if marker not in _RULE_MARKERS:
                marker = ""
        if marker:
            run = _RULE_RUNS[marker].match(text, to)
            assert run is not None
            if run.end() < len(text):
                marker = ""  # (and no more of the line makes it one)
        self._rule_seen = (seen, marker, len(text))
        return bool(marker)

    def _sub_item_html(self, nested: _ItemList, source: str) -> str | None:
        """An item of the nested list (its lines), rendered as it renders in the list (tight:
        a blank line after it makes the list loose, drawn so once the item settles); None if
        it does not render as one item."""
        lines = source.split("\n")  # (not `splitlines`: \v is text)
        cut = [line[min(len(line) - len(line.lstrip(" ")), nested.indent) :] for line in lines]
        rendered = render_blocks("\n".join(cut), self._scratch_env())
        opening = _LIST_OPENING.match(rendered)
        close = f"</{nested.tag}>\n"
        if opening is None or opening.group(1) != nested.tag or not rendered.endswith(close):
            return None
        inner, depth, items = rendered[opening.end() : -len(close)], 0, 0
        for tag in _LIST_ITEM_TAG.finditer(inner):
            if tag.group(1):
                depth -= 1
                if depth < 0:
                    return None
            else:
                items += depth == 0
                depth += 1
        if items != 1 or not inner.startswith("<li>") or not inner.endswith("</li>\n"):
            return None
        return inner

    def _sub_item_drawn_otherwise(self, nested: _ItemList) -> bool:
        """Look at how the nested list's item being written is drawn (`_sub_item_drawing`):
        True if the tail is drawn anew (drawn rendered, or as text, where it was not)."""
        was = nested.drawing
        nested.drawing = self._sub_item_drawing(nested) if nested.lines else None
        return (was is None) != (nested.drawing is None)

    def _sub_item_drawing(self, nested: _ItemList) -> _Drawing | None:
        """The nested list's item being written with lines after its first ("- Run:" then
        its code, "- a" then the points of a list nested in it), drawn as it renders so far
        (`_rendered_so_far`: its lines before its last line of text rendered, and that line's
        text drawn as it comes where it renders, in the code, in the deeper point). They were
        drawn as the item's text, fences and markers too, until the step settled. None: drawn
        as text (it renders as no single item of the list: a paragraph after it, say; or it is
        long)."""

        def render(source: str) -> str | None:
            html = self._sub_item_html(nested, source)
            return None if html is None else html[4:-6]  # (its <li>, </li>\n)

        return self._rendered_so_far(nested.current, _LINE_PREFIX, nested.drawing, render)

    def _sub_item_step(self, nested: _ItemList, step: RenderStep) -> None:
        """Say in `step` how the nested list's item being written, drawn rendered, changed:
        drawn anew (a line of it began), or text added to its line being written."""
        drawing = nested.drawing
        assert drawing is not None
        if step.tail_replaced:
            pass
        elif nested.shown is None or nested.shown[0] != drawing[0]:
            step.sub_item_redrawn, step.appended = True, ""
        else:
            self._line_step(drawing, nested.shown[1], step)
        nested.shown = (drawing[0], drawing[4])

    def _drawing_step(
        self, drawing: _Drawing | None, shown: _Shown | None, step: RenderStep
    ) -> _Shown | None:
        """Say in `step` how a block drawn as it renders so far (a quote, an item with a
        table) changed on the page, which showed it as `shown` (`_line_step`, unless the tail
        is drawn anew); how the page shows it now."""
        if drawing is None:
            return None
        if not step.tail_replaced:
            assert shown is not None
            self._line_step(drawing, shown[1], step)
        return drawing[0], drawing[4]

    def _line_step(self, drawing: _Drawing, shown_end: int, step: RenderStep) -> None:
        """Say in `step` how the line being written of a block drawn as it renders so far
        (`_rendered_so_far`) changed on the page, which showed its text up to `shown_end`:
        text added, or, where it is drawn formatted (`_line_html`), drawn anew (once more,
        as its text, as it grows past `_LINE_FORMATTED_MOST`)."""
        start, end = drawing[3], drawing[4]
        if self._line_formatted(drawing, end) or self._line_formatted(drawing, shown_end):
            step.line_redrawn, step.appended = True, ""
        else:
            step.appended = self.text[max(shown_end, start) : end]

    def _line_formatted(self, drawing: _Drawing, end: int) -> bool:
        """Whether the line being written of a block drawn as it renders so far is drawn
        formatted when it ends at `end`: it has a mark, it is no code's, and it is short
        (each character draws it anew)."""
        _, before, _, start, _ = drawing
        if not 0 < end - start <= _LINE_FORMATTED_MOST:
            return False
        if not _INLINE_MARK.search(self.text, start, end):
            return False
        return before.rfind("<pre") <= before.rfind("</pre>")  # (not a line of code)

    def _line_html(self, drawing: _Drawing) -> str | None:
        """The line being written of a block drawn as it renders so far, drawn as it will
        render if its marks close where its text ends (`drawn_as_closed`), where it is drawn
        formatted (`_line_formatted`); None: drawn as its text."""
        start, end = drawing[3], drawing[4]
        if not self._line_formatted(drawing, end):
            return None
        if self._line_drawn[:2] != (start, end):
            self._line_drawn = (start, end, self._cell_written(self.text[start:end], cell=False))
        return self._line_drawn[2]

    def _item_list_step(self, nested: _ItemList, step: RenderStep, old_end: int) -> int:
        """Say in `step` which items of the nested list settled, and draw the text of its item
        being written anew; returns where the page's text of that item now ends."""
        added, nested.added = nested.added, ""
        if step.tail_replaced or self._nested_list() is not nested:
            return old_end
        self._formatting = None  # (the item being written is drawn anew)
        step.sub_items_html = added
        step.appended = self.text[nested.text_from :]
        return nested.text_from

    def _draw_pending(self, state: _Formatting) -> None:
        """Draw the pending span as its words will render if their marks close where the text
        ends (`drawn_as_closed`), rendered with the word before the span. Left as text
        (`span_drawing` None) if it renders with a mark still open, or reaches the next line:
        as it stays once it is stuck."""
        state.span_drawing, state.span_at, state.span_hidden = None, None, False
        span = state.span
        if span is None or state.stuck:
            return
        piece = self.text[span:]
        if len(piece) > _PENDING_LIMIT or "\n" in piece or not self._may_open(span):
            return
        words_before = self._words_before(state, span)
        if words_before is None:
            return
        start, before = words_before
        if before == "\0":
            return  # the word before it renders with a mark open: its marks may pair with them

        def render(words: str) -> str | None:
            # (the same words as the span's settling renders, most often: its marks closed)
            whole = self._render_words(self.text[start:span] + words)
            return whole[len(before) :] if whole is not None and whole.startswith(before) else None

        drawn = drawn_as_closed(piece, self.text[max(0, span - 2) : span] or " ", render)
        if drawn is None:
            return
        state.span_drawing, state.span_drawn_to = drawn.html, span + drawn.to
        state.span_at, state.span_depth, state.span_hidden = drawn.at, drawn.depth, drawn.hidden

    def _may_open(self, span: int) -> bool:
        """Whether the mark that opens the pending span is drawn as it will render if it
        closes: an emphasis's or a strikethrough's after a blank, before a letter, a digit, a
        code span or a link (not "2**10", "f(*args", "*.py", nor "__init__": they seldom
        close, and would draw the rest of their line formatted until it ended); a code
        span's, a link's, an escape's. An underscore's is drawn as text until it closes."""
        text = self.text
        mark = text[span]
        if mark in "`[\\!":
            return True
        if mark in "&<":
            return False  # (an entity or an autolink being written: text until it is whole)
        end = span
        while end < len(text) and text[end] == mark:
            end += 1
        return _often_closes(
            text[span:end], text[max(0, span - 2) : span] or " ", text[end : end + 1]
        )

    def _link_still_open(self, state: _Formatting, span: int) -> bool:
        """Whether the pending span still ends in the destination or title being written of
        the link it was drawn with (or in its closing parenthesis, which waits for what
        follows)."""
        link = _open_link(self.text[span:])
        return link is not None and link == _open_link(self.text[span : state.span_drawn_to])

    def _pending_grew(self, state: _Formatting, step: RenderStep) -> None:
        """The pending span's text grew: say in `step` how its drawing changes (text added
        where its words are being written, HTML added at its end, or the span drawn again;
        nothing while only an end that may yet be a mark came). One drawn as text takes the
        step's text as it is (`RenderStep.appended`)."""
        old, at, depth = state.span_drawing, state.span_at, state.span_depth
        span = state.span
        if old is not None and not state.stuck and span is not None and self._may_open(span):
            added = self.text[state.span_drawn_to :]
            if len(self.text) - span <= _PENDING_LIMIT and "\n" not in added:
                core_added = added.rstrip(_HELD_END)
                if state.span_hidden and core_added.endswith(")"):
                    core_added = core_added[:-1]  # (it may close the link)
                if not core_added or (state.span_hidden and self._link_still_open(state, span)):
                    step.appended = ""  # drawn as it was: marks may follow, or a destination
                    return  # (or its title)
                if (
                    at is not None
                    and _PLAIN.fullmatch(core_added)
                    and (
                        depth <= 1 or not punctuation(core_added[-1])  # (it may pair marks anew)
                    )
                ):
                    state.span_drawing = old[:at] + core_added + old[at:]
                    state.span_at = at + len(core_added)
                    state.span_drawn_to += len(core_added)
                    step.appended, step.pending_added, step.pending_depth = "", core_added, depth
                    return
        self._draw_pending(state)
        new = state.span_drawing
        if old is None and new is None:
            return
        step.appended = ""
        if new == old:
            return
        if old is not None and new is not None:
            if new.startswith(old):
                step.pending_added, step.pending_depth = new[len(old) :], 0
                return
            if (insertion := _inserted(old, new)) is not None:
                step.pending_depth, step.pending_added = insertion
                return
        step.pending_redrawn = True

    def _drawn_after(
        self, state: _Formatting, start: int, commits: list[tuple[int, int, str | None]]
    ) -> tuple[str, str | None]:
        """The tail's text as drawn from `start` (text the page lacks) to its end, but for
        the pending span, whose text is returned apart (None if there is none)."""
        parts, position = [], start
        for span, cut, html in commits:
            drawn = (
                escape(self._shown(state, span, cut)) if html is None else f"<span>{html}</span>"
            )
            parts.append(escape(self._shown(state, position, span)) + drawn)
            position = cut
        if state.span is None:
            parts.append(escape(self._shown(state, position, None)))
            return "".join(parts), None
        parts.append(escape(self._shown(state, position, state.span)))
        self._draw_pending(state)
        drawing = state.span_drawing
        if drawing is None:
            drawing = escape(self._shown(state, state.span, None))
        return "".join(parts), drawing

    def _shown(self, state: _Formatting, start: int, end: int | None) -> str:
        """The tail's text from `start` to `end` as drawn (a quote's without its markers)."""
        return unquoted(self.text, start, end) if state.quoted else self.text[start:end]

    def _normalise(self, delta: str) -> str:
        # A CR at the end of one delta may be the first half of a CRLF: hold it back.
        if self._pending_cr:
            delta = "\r" + delta
            self._pending_cr = False
        if delta.endswith("\r"):
            delta = delta[:-1]
            self._pending_cr = True
        return normalise(delta)

    def _held_back(self, delta: str) -> str:
        """What of the text received so far is fed now: all but a line being written that
        is only a block's marker so far (`_HELD_LINE`), which waits for what follows it."""
        if self.held:
            delta, self.held = self.held + delta, ""
        line_start = delta.rfind("\n") + 1
        if line_start or self.text[-1:] in _LINE_BEGINS:
            line = len(delta) - line_start
            if 0 < line <= _HELD_AT_MOST and _HELD_LINE.fullmatch(delta, line_start):
                self.held = delta[line_start:]
                return delta[:line_start]
        if delta[-1:] == "!" and self._marks_held:
            # An image's "!" waits for the character after it: "![" opens a pending span at
            # the "!" (drawn as text first, it stayed so, and the image and the words after
            # it showed as their source until the paragraph settled)
            self.held = "!"
            return delta[:-1]
        return delta

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
            if self._table is not None:
                if self._draw_rows(complete):
                    return replaced
                self._open_to = None  # the table ends: parsed from its start, it settles
            elif self._continues_open_block(complete) or self._parse_deferred(complete):
                return replaced
            base = self.settled
            source = self.text[base:complete]
            if self._parsed[0] != base:
                self._parse_work, self._blank_line_parsed = 0, False
            self._parse_work += len(source)
            self._parsed = (base, complete)
            env: dict[str, Any] = {}
            tokens = self._parse_tail(source, env)
            blocks = _top_level_blocks(tokens)
            line_starts = _line_starts(source)
            ended = False  # the last block is followed by a line not its own
            if blocks and _may_turn_definition(blocks, source, line_starts):
                # The open block may yet turn out (part of) a link reference definition, which
                # renders as nothing: it is left in the tail, unparsed (with the definition
                # lines just before it), until that is known. The blocks before it end before
                # it, whatever it turns out: the text up to their end is parsed alone.
                self._open_to = self._open_line = None
                if len(blocks) == 1:
                    # The definitions before the one it may join settle.
                    if self._settle_definitions(base, env, line_starts, _lines(blocks[0])[0], html):
                        replaced = True
                        continue
                    return replaced
                cut = _lines(blocks[-2])[1]
                complete = base + line_starts[cut]
                source = source[: line_starts[cut]]
                tokens = self._parse_tail(source, {})
                blocks = _top_level_blocks(tokens)
                line_starts = line_starts[: cut + 1]
                ended = True
            if not blocks:
                # Link reference definitions and blank lines alone: those before the last
                # settle, so that each line does not parse them all again (the last one too
                # once a blank line ends it).
                if self._settle_definitions(base, env, line_starts, len(line_starts), html):
                    replaced = True
                    continue
                return replaced
            n_lines = len(line_starts) - 1
            settled = len(blocks) - 1
            last = blocks[-1]
            if ended or _is_complete(last, source, line_starts, n_lines):
                settled += 1
            if self._list is not None and (settled or blocks[0].type not in _LISTS):
                # The first block is the rest of the open list, and another follows it (or the
                # list ended before a line not its own).
                end_line = 0
                if blocks[0].type in _LISTS:
                    end_line = _lines(blocks[1])[0] if len(blocks) > 1 else _lines(last)[1]
                self._settle_list(base + line_starts[end_line], html)
                replaced = True
                continue  # what follows it is parsed again
            if settled and self._list is None:
                end_line = _lines(blocks[settled])[0] if settled < len(blocks) else _lines(last)[1]
                self._settle(base + line_starts[end_line], html)
                replaced = True
                if settled == len(blocks):
                    continue  # the tail is blank or a partial line: nothing more to settle
            first_line = _lines(blocks[0])[0]
            if not settled and first_line and self._list is None:
                # The lines before the open block make none (link reference definitions):
                # they settle, as nothing, so that the tail starts at its block.
                self._settle(base + line_starts[first_line], html)
                replaced = True
                continue
            if last.type in _LISTS and settled == len(blocks) - 1:
                # Each item that another follows settles; the last one is the tail.
                first = _lines(last)[0]
                items = [line for line in _item_starts(tokens) if line > first]
                if items and self._settle_items(
                    base + line_starts[first], base + line_starts[items[-1]]
                ):
                    replaced = True
            self._open_line = (
                _continuation(last, source, tokens) if settled == len(blocks) - 1 else None
            )
            self._open_to = complete if self._open_line is not None else None
            if last.type == "table_open" and settled < len(blocks) and self._list is None:
                first = _lines(last)[0]
                if self._open_table(base + line_starts[first], base + line_starts[first + 2]):
                    replaced = True
            if last.type == "fence" and settled < len(blocks):
                first = _lines(last)[0]
                if first + 1 == n_lines and "|" in source[line_starts[first] :]:
                    # An opening line with a pipe is a table's head if a delimiter row follows
                    # it: the next line decides.
                    return replaced
                # An open code fence: from now on, scan its lines for the closing fence.
                body_start = base + line_starts[first + 1]
                self._fence = _OpenFence(
                    marker=last.markup,
                    language=fence_language(last.info),
                    body_start=body_start,
                    scan_from=body_start,
                )
                return True
            return replaced

    def _parse_deferred(self, complete: int) -> bool:
        """Whether the tail, whose lines up to `complete` do not all continue its open block
        as a known shape does, is left unparsed for now: once its parses cost more than
        `_PARSE_BUDGET` times its length, it is parsed again only when it has grown by a
        quarter. Each parse is of the whole tail (markdown-it parses 0.6-2 MB/s), so lines
        that no shape knows would cost time quadratic in the tail, on the event loop that
        serves every stream; so the time stays linear, and a block after such a tail settles
        later (its text shows in the tail until then)."""
        parsed_from, parsed_to = self._parsed
        length = complete - self.settled
        if (
            parsed_from != self.settled
            or self._parse_work <= _PARSE_BUDGET * length + _PARSE_FLOOR
            or complete - parsed_to >= length // 4
        ):
            return False
        if not self._blank_line_parsed and _BLANK_LINE.search(self.text, parsed_to, complete):
            # A blank line ends most blocks (a list's and indented code's are the others):
            # the first one is parsed at once, so that the blocks after it are drawn.
            self._blank_line_parsed = True
            return False
        return True

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
                if self._whole_list_from is None:
                    # A new item: the one before it settles (a parse from its start).
                    self._open_to = None
                    return False
                # A new item: the lines inside it are those indented to its content.
                ordered, marker, _ = _LIST_OF[self._open_line]
                self._open_line = _list_lines(ordered, marker, len(match.group("item")))
            elif match.lastgroup is None:
                self._open_line = _strict(self._open_line)
            position = match.end()
        self._open_to = complete
        return True

    def _list_line_being_written(
        self, delta_length: int
    ) -> tuple[int, tuple[bool, str, int]] | None:
        """The line being written after the lines of the open top-level list, if it has just
        begun (its first 20 characters came with the last `delta_length`): where it starts,
        and the list (ordered, its marker, its last item's content column)."""
        line_start = self._open_to  # after the lines that continue the open block, if any
        if line_start is None or line_start < self.settled or self._open_line is None:
            return None
        if len(self.text) - delta_length > line_start + 20:
            return None  # the start of the line was seen already
        list_lines = _LIST_OF.get(self._open_line)
        if list_lines is None or self.text.find("\n", line_start) >= 0:
            return None
        return line_start, list_lines

    def _item_begun(self, delta_length: int) -> bool:
        """A line still being written that starts the open list's next item (its marker and
        a first character) ends the item before it, which settles: a list's items settle as
        the next begins, not a line later."""
        being_written = self._list_line_being_written(delta_length)
        if being_written is None:
            return False
        line_start, list_lines = being_written
        if _next_item(*list_lines).match(self.text, line_start) is None:
            return False
        start = self._list.start if self._list is not None else self.settled
        if not self._settle_items(start, line_start):
            return False
        self._open_to = self._open_line = None  # the new item's lines are parsed from it
        return True

    def _line_ends_list(self, delta_length: int, html: list[str]) -> bool:
        """A line being written that the open top-level list cannot take ends it, and the
        list settles: after a blank line, a line indented less than its last item's content
        that starts no item of it (a paragraph, a heading, a quote, another list); right after
        the item's text, such a line that starts a block, which ends the item's paragraph
        (a heading, a quote, another list's item: "  - point" under "1. Step", indented two
        where the step's text is three in). The words after a list were drawn in its last item
        until their line ended. Decided by the line's first characters: a number and the
        list's delimiter under a numbered list, or its marker under a bulleted one, then a
        blank, may yet start its next item, and wait for their line's end."""
        being_written = self._list_line_being_written(delta_length)
        if being_written is None:
            return False
        line_start, (ordered, marker, column) = being_written
        if not self._follows_blank_line(line_start) and not _ENDS_ITEM_TEXT.match(
            self.text, line_start
        ):
            return False  # the line may be a lazy one of the item
        start = _LINE_START.match(self.text, line_start)
        assert start is not None
        indent, first, after = len(start.group(1)), start.group(2), start.group(3)
        if not first or first == "\t" or indent >= min(column, 4):
            return False  # blank so far, a tab, or a line of the item (or code) perhaps
        if first.isdigit() and ordered:
            if not after or after[-1].isdigit():
                return False  # more digits to come, perhaps
            if len(after) <= 9 and after[-1] == marker and start.group(4) in ("", " ", "\t"):
                return False  # its next item, perhaps
        elif first in "-+*":
            if not after:
                return False
            if after in " \t" and first == marker and not ordered:
                return False  # its next item, perhaps (or a rule, which ends it as its line does)
        if self._list is not None:
            self._settle_list(line_start, html)
        else:
            self._settle(line_start, html)
        self._open_to = self._open_line = None  # the new block's lines are parsed from it
        return True

    def _line_interrupts_paragraph(self, delta_length: int, html: list[str]) -> bool:
        """A line being written that starts a block which ends the open top-level paragraph
        before it (a heading, a list's item: a bullet, or a "1.", a quote) ends it, and the
        paragraph settles: the block was drawn as the paragraph's text ("- item", "## Next")
        until its line ended. Decided by the line's first characters (`_INTERRUPTS`); a
        marker alone is held back until they come (`held`)."""
        if self._open_line is not _PARAGRAPH_LINE or self._list is not None:
            return False
        line_start = self._open_to
        if line_start is None or line_start <= self.settled:
            return False
        if len(self.text) - delta_length > line_start + _INTERRUPT_SEEN:
            return False  # its start was looked at
        start = _INTERRUPTS.match(self.text, line_start)
        if start is None or start.end() > line_start + _INTERRUPT_SEEN:
            return False
        if "\n" in self.text[line_start:]:
            return False
        self._settle(line_start, html)
        self._open_to = self._open_line = None  # the new block's lines are parsed from it
        return True

    def _follows_blank_line(self, line_start: int) -> bool:
        """Whether the line at `line_start` (in the tail, after its first line) follows a
        blank line, looked at once for each line."""
        seen, blank = self._after_blank
        if seen != line_start:
            before = self.text.rfind("\n", self.settled, line_start - 1) + 1
            blank = before >= self.settled and not self.text[before : line_start - 1].strip(" \t")
            self._after_blank = (line_start, blank)
        return blank

    def _opening(self) -> re.Match[str] | None:
        """The tail's first line, while it opens a top-level list (its first item) or is an
        ATX heading being written (`_OPENING`): the tail is drawn as that block (an item's
        text, a heading's) from then on, as it will render, not as text that takes its shape
        when its block settles. A list's first item is drawn so for all its lines, until the
        next item or the list's end settles it (a delimiter row under its first line makes it
        a table's head: the table is drawn then); a heading until its line ends (it settles
        then, or a line later with a pipe, drawn as text meanwhile). Looked at in the line's
        first `_OPENING_SEEN` characters: a longer run of blanks or of a rule's characters
        stays text (each feed looks again)."""
        if self._list is not None or self._fence is not None or self._table is not None:
            return None
        if self._whole_list_from is not None:
            return None  # the tail is a whole list, drawn as text
        start = self.settled
        if self.text[start : start + 1] not in _OPENING_FIRST:
            return None  # (most tails: a paragraph's)
        match = _OPENING.match(self.text, start, start + _OPENING_SEEN)
        if match is None or match.lastgroup != "heading":
            return match
        seen, scanned, newline = self._first_line
        if seen != start:
            scanned, newline = start, -1
        if newline < 0:  # scanned on from where it was (a long line costs its length once)
            newline = self.text.find("\n", scanned)
            scanned = len(self.text)
            self._first_line = (start, scanned, newline)
        return None if newline >= 0 else match

    def _text_first(self) -> bool:
        """Whether the tail starts as a paragraph's text whatever follows: with a character
        that starts no block, after up to three blanks (a model's token after a blank line
        often starts with one: " The"). A paragraph so begun was drawn as its source, its
        marks shown, until it settled, and each delta looked at every block it might be."""
        text, start = self.text, self.settled
        first = text[start : start + 1]
        if first != " ":
            return first not in _SHAPED_FIRST and first != "\t"
        return _SPACED_TEXT.match(text, start) is not None

    def _opening_shape(self) -> tuple[str | None, int] | None:
        if (after := self._paragraph_head()) is not None:
            return ("head", after[0])
        if self._text_first():
            return None  # (most tails: a paragraph's)
        first = self.text[self.settled : self.settled + 1]
        if first in _QUOTE_FIRST and (base := self._quote_base()) is not None:
            return ("quote", base)
        if first in _HEAD_FIRST and self._table_head() is not None:
            return _HEAD_SHAPE
        opening = self._opening()
        return None if opening is None else (opening.lastgroup, opening.end())

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

    def _settle_definitions(
        self, base: int, env: dict[str, Any], line_starts: list[int], before: int, html: list[str]
    ) -> bool:
        """Settle, as nothing, the link reference definitions from `base` that are complete
        before line `before` (markdown-it's `env` and `line_starts` for the text from `base`,
        which makes no block before that line); True if any settled."""
        cut = _complete_definitions_end(env, line_starts, before)
        if not cut or self._list is not None:
            return False
        self._settle(base + cut, html)
        return True

    def _settle(self, end: int, html: list[str]) -> None:
        html.append(render_blocks(self.text[self.settled : end], self._references))
        self.settled = end
        self._whole_list_from = None
        self._table = None

    def _open_table(self, start: int, head_end: int) -> bool:
        """The tail is a table from `start`, its head complete at `head_end`: draw it as one
        (True), unless it is drawn already."""
        if self._table is not None and self._table.start == start:
            return False
        head = self.text[start:head_end]
        html = render_blocks(head, self._scratch_env())
        if not html.startswith("<table>") or not html.endswith("</thead>\n</table>\n"):
            return False  # (never seen)
        html = html.removesuffix("</table>\n")
        aligns = tuple(_HEAD_CELL.findall(html))
        self._table = _OpenTable(start, head, len(aligns), head_end, html, aligns)
        return True

    def _quote_base(self) -> int | None:
        """Where the text of the tail's quote's last paragraph starts (after its first line's
        marker), if the tail is a quote of paragraphs: each of its lines quoted, and starting
        text or blank (a lazy or an indented line, or one that starts another block in it,
        and it is none: drawn as text). A quote showed as text, its markers too ("> **Note:**
        ..."), until it settled, then moved in by the quote's margin; one of two paragraphs
        ("> **Tip:** ...", ">", "> ...") so from its blank line on. Its lines are looked at
        once each (the line being written at each call, as its first characters decide it).
        Its paragraphs before its last: `_quote_paragraphs_before`."""
        start = self.settled
        if not self.text.startswith(_QUOTE_FIRST, start):
            return None
        if self.text[start] == " " and self.text[start : start + 4].lstrip(" ")[:1] not in ">":
            return None  # (a paragraph's blanks, most often: a model's token after a blank line)
        if self._list is not None or self._fence is not None or self._table is not None:
            return None
        if self._whole_list_from is not None:
            return None
        seen, line, scanned, last, gap = self._quote_seen
        if seen != start:
            line, scanned, last, gap = start, start, -1, False
        elif line < 0:
            return None
        text = self.text
        while True:
            newline = text.find("\n", scanned)
            if newline < 0:
                scanned = len(text)  # (a long line costs its length once)
                break
            if _QUOTE_BLANK_LINE.fullmatch(text, line, newline):
                gap = line > start  # (blank lines first: the quote's first paragraph follows)
            elif _QUOTE_TEXT_LINE.match(text, line, newline) and not _QUOTE_PIPE_LINE.match(
                text, line, newline
            ):
                if gap:
                    last, gap = line, False  # a paragraph after a blank line begins
            else:
                self._quote_seen = (start, -1, 0, -1, False)  # (until the tail starts elsewhere)
                return None
            line = scanned = newline + 1
        self._quote_seen = (start, line, scanned, last, gap)
        if last > start + _QUOTE_DRAWN_MOST:
            # Its paragraphs before its last are drawn again as each begins: a long quote's
            # are not (the quote is drawn as text until it settles)
            self._quote_seen = (start, -1, 0, -1, False)
            return None
        written = len(text) - line  # (the line being written, so far)
        blank = False
        if written and (
            not _QUOTE_TEXT_LINE.match(text, line, line + _OPENING_SEEN)
            or _QUOTE_PIPE_LINE.match(text, line, line + _OPENING_SEEN)
        ):
            blank = written <= _HELD_AT_MOST and bool(_QUOTE_BLANK_LINE.fullmatch(text, line))
            if not blank:
                return None  # the line being written: no quote's text (yet), by its start
        if line == start and line == len(text):
            return None  # nothing yet
        if gap and written and not blank:
            # The line being written begins a paragraph (a blank line before it draws as
            # the paragraph before's white space, until then)
            self._quote_seen = (start, line, scanned, line, False)
            last = line
        opens = _QUOTE_OPENS.match(text, start if last < 0 else last)
        assert opens is not None
        return opens.end()

    def _quote_paragraphs_before(self) -> str:
        """The tail's quote's paragraphs before its last, rendered (see `_quote_base`)."""
        start, _, _, last, _ = self._quote_seen
        if last < 0:
            return ""
        if self._quote_before[0] != last:
            opens = _QUOTE_OPENS.match(self.text, start)
            assert opens is not None
            source = unquoted(self.text, opens.end(), last)
            self._quote_before = (last, render_blocks(source, self._scratch_env()))
        return self._quote_before[1]

    def _quote_drawing(self) -> _Drawing | None:
        """The tail's quote, if it holds other blocks than paragraphs (a note's points, its
        code; `_quote_base` is for a quote of paragraphs), drawn as it renders so far: its
        lines before its last line of text rendered, and that line's text, after its markers
        (the quote's, a list's), drawn as it comes where it renders; rendered anew as the next
        line's text begins (`_rendered_so_far`). It was drawn as the quote, then as text, its
        markers too, from its first point on, then as the quote again as it settled. None if
        the tail is no such quote, or it is long."""
        start = self.settled
        if not self.text.startswith(_QUOTE_FIRST, start) or not _QUOTE_OPENS.match(
            self.text, start
        ):
            return None
        if self._list is not None or self._fence is not None or self._table is not None:
            return None
        if self._whole_list_from is not None or self._quote_base() is not None:
            return None
        seen, drawing = self._quote_drawn

        def render(source: str) -> str | None:
            return _one_quote(render_blocks(source, self._scratch_env()))

        drawing = self._rendered_so_far(
            start, _QUOTE_LINE_PREFIX, drawing if seen == start else None, render
        )
        self._quote_drawn = (start, drawing)
        return drawing

    def _rendered_so_far(
        self,
        start: int,
        prefix: re.Pattern[str],
        drawing: _Drawing | None,
        render: Callable[[str], str | None],
    ) -> _Drawing | None:
        """A block being written from `start` drawn as it renders so far (`render`: its HTML,
        or None if it is no longer one such block): its lines before its last line of text
        rendered, and that line's text, after its `prefix` (its blanks and markers), drawn as
        it comes in its place; rendered anew (not `drawing`, the last) as the next line's text
        begins. Once it is long (each line renders it again: a quote of many short points, a
        table of many rows), as it rendered with the line that made it so, the lines after it
        not drawn until it settles (it was drawn as text from then on, then jumped to the
        render once more). None if it renders otherwise."""
        text = self.text
        hidden = self._long_from(start)
        if hidden is None:
            hidden = self._table_lines_hidden(start, prefix)
        elif hidden <= start:
            return None
        if hidden is not None:
            # A table's lines not known to render as its rows yet: not drawn, the block
            # rendered without them (they showed as a paragraph's text, a row being written in
            # the table's first cell, pipes and all, until the block was drawn anew)
            key: tuple[int, str | None] = (hidden, "|")
            if drawing is not None and drawing[0] == key:
                return drawing
            markers = prefix.match(text, start)  # (a quote that starts with the table: empty)
            assert markers is not None
            html = render(text[start:hidden] or markers.group(0))
            return None if html is None else (key, html, "", hidden, hidden)
        end = len(text)
        while end > start and text[end - 1] in " \t\n":  # (its last line of text: being
            end -= 1  # written, or ended, the next one not begun)
        line = max(text.rfind("\n", 0, end) + 1, start)
        markers = prefix.match(text, line, end)
        assert markers is not None
        placed = markers.end() < end and not _FENCE_AFTER.match(text, markers.end(), end)
        # (a line that starts as a fence's: drawn rendered whole, anew if it grows, which one
        # that is held back until it ends does not, but a longer one, or no fence, may)
        key = (line, markers.group(0)) if placed else (end, None)
        if drawing is not None and drawing[0] == key:
            return (key, drawing[1], drawing[2], drawing[3], end if placed else drawing[4])
        if placed:
            html = render(text[start:line] + markers.group(0) + _PLACE)
        else:  # (a fence's line: the code block opened, or closed)
            html = render(text[start:end])
        if html is None:
            if line > start and self._pipe_line(
                text.rfind("\n", start, line - 1) + 1, line - 1, prefix
            ):
                # A line after a table's row that the block cannot take (a lazy line: it ends
                # the item or the quote): not drawn while its block may settle before it (the
                # block was drawn as text, pipes and all, for that line, then as the table)
                key = (line, "|")
                if drawing is not None and drawing[0] == key:
                    return drawing
                html = render(text[start:line])
                return None if html is None else (key, html, "", line, line)
            return None
        html = _PLACE_STYLED.sub(r"\1" + _PLACE + r"\2", html)
        if not placed:
            return key, html, "", end, end
        before, place, after = html.partition(_PLACE)
        if not place or _PLACE in after:
            return None
        return key, before, after, markers.end(), end

    def _long_from(self, start: int) -> int | None:
        """Where the lines not drawn start of a block drawn as it renders so far from `start`
        that has grown long (`_rendered_so_far`): after the line that took it past
        `_RENDERED_SO_FAR_MOST` characters, or past `_RENDERED_SO_FAR_LINES` lines, once that
        line ends (drawn whole, as it was drawn while it was written); None while it is not
        long."""
        text = self.text
        cut = None
        limit = start + _RENDERED_SO_FAR_MOST
        if len(text) > limit:
            seen, looked = self._long_seen  # (a long line is looked at once for its end)
            newline = text.find("\n", max(limit, looked) if seen == start else limit)
            self._long_seen = (start, len(text) if newline < 0 else newline)
            cut = None if newline < 0 else newline + 1
        newline = start - 1
        for _ in range(_RENDERED_SO_FAR_LINES + 1):
            newline = text.find("\n", newline + 1, min(len(text), limit) if cut is None else cut)
            if newline < 0:
                return cut
        return newline + 1

    def _table_lines_hidden(self, start: int, prefix: re.Pattern[str]) -> int | None:
        """Where the lines of a block drawn as it renders so far (from `start`; `prefix`, its
        lines' markers) that a table's may be start not to be drawn, if any: its line being
        written, if it starts with a pipe (a table's head, its delimiter row or a row, as far
        as the block knows; the line after a row's end draws it), and the line before it too
        if that may be a table's head (the line being written may be its delimiter row); a
        complete line with a pipe first that may be a head (no line after it yet). Drawn, a
        head showed as a paragraph's text until its delimiter row ended, then jumped into the
        table; a row being written showed its pipes in the table's first cell. The text's end
        if every line is drawn and none is being written; None if the last line has no pipe
        first."""
        text = self.text
        end = len(text)
        while end > start and text[end - 1] in " \t\n":  # (as `_rendered_so_far` has it)
            end -= 1
        complete = text.find("\n", end) >= 0  # (its last line of text ended)
        last = max(text.rfind("\n", start, end) + 1, start)  # that line
        if not self._pipe_line(last, end, prefix):
            markers = prefix.match(text, last, end)
            assert markers is not None
            if complete or markers.end() < end or last == start:
                return None
            before = text.rfind("\n", start, last - 1) + 1
            if not self._pipe_line(max(before, start), last - 1, prefix):
                return None  # (a line of its markers so far, after a line with a pipe first:
                # a table's, perhaps, as the text after them may show)
        # The run of lines with a pipe first that ends with it, from its start: a line that
        # a delimiter row follows is a table's head, and the lines after them its rows
        lines = [last]
        while lines[0] > start:
            before = text.rfind("\n", start, lines[0] - 1) + 1
            if not self._pipe_line(max(before, start), lines[0] - 1, prefix):
                break
            lines.insert(0, max(before, start))
        for i, line in enumerate(lines):
            if i + 1 == len(lines):
                return line  # (a head, perhaps: no line after it yet)
            following = lines[i + 1]
            following_end = end if i + 2 == len(lines) else lines[i + 2] - 1
            markers = prefix.match(text, following, following_end)
            assert markers is not None
            if i + 2 == len(lines) and not complete:
                if _DELIMITER_BEING_WRITTEN.fullmatch(text, markers.end(), following_end):
                    return line  # (its delimiter row, perhaps, being written)
            elif _DELIMITER_ROW.fullmatch(text, markers.end(), following_end):
                break  # a table: its rows are drawn as their lines end
        return len(text) if complete else last

    def _pipe_line(self, line: int, end: int, prefix: re.Pattern[str]) -> bool:
        """Whether the line from `line` to `end` starts with a pipe after its markers."""
        markers = prefix.match(self.text, line, end)
        return markers is not None and self.text.startswith("|", markers.end(), end)

    def _table_head(self) -> str | None:
        """The tail's first line, if it is drawn as a table's head being written: it starts
        with a pipe (up to three blanks before it), and it is still written, or the line after
        it may still be its delimiter row ("|---|:-"). The table's first line showed as text,
        and its delimiter row after it, until that row's line ended: then a table took their
        place. (Its cells are drawn as a row's: each that ended rendered.) A line after it
        that no delimiter row starts so draws it as text again."""
        start = self.settled
        if not self.text.startswith(_HEAD_FIRST, start):
            return None  # (most tails)
        if self._table is not None or self._list is not None or self._fence is not None:
            return None
        if self._whole_list_from is not None or not _HEAD_START.match(self.text, start):
            return None
        newline = self.text.find("\n", start, start + _ROW_SHOWN + 1)
        if newline < 0:
            return self.text[start:] if len(self.text) - start <= _ROW_SHOWN else None
        second = newline + 1
        if len(self.text) - second > _ROW_SHOWN or self.text.find("\n", second) >= 0:
            return None
        if not _DELIMITER_BEING_WRITTEN.fullmatch(self.text, second):
            return None
        return self.text[start:newline]

    def _paragraph_head(self) -> tuple[int, int, str] | None:
        """The line of the tail's paragraph (a top-level one) drawn as a table's head being
        written, as `_table_head` draws a tail's first line: markdown-it lets a table interrupt
        a paragraph ("Here is a comparison:" then "| A | B |" and its delimiter row), and the
        head and its delimiter row showed as the paragraph's text until that row's line ended,
        when the paragraph took its shape and the table came after it. The paragraph's first
        line that starts with a pipe (up to three blanks before it), after its first line and
        at most `_HEAD_AFTER_MOST` characters of it, while it is still written or the line
        after it may still be its delimiter row (not drawn); the paragraph's lines before it
        are drawn rendered, as they settle once the table opens. Where the head's line starts
        and ends, and those lines' HTML. A line after it that no delimiter row starts draws it
        as the paragraph's text again (the paragraph goes on), and the paragraph's lines after
        it that start with a pipe are drawn as its text: each head begun draws the paragraph
        again, a paragraph of such lines would be sent at each."""
        if self._open_line is not _PARAGRAPH_LINE or self._list is not None:
            return None  # (most tails: the lines that continue a paragraph are looked at)
        line = self._open_to  # the line being written starts here
        settled = self.settled
        if line is None or line <= settled or self._fence is not None or self._table is not None:
            return None
        text = self.text
        end = len(text)
        if end - line > _ROW_SHOWN or line - settled > _HEAD_AFTER_MOST + _ROW_SHOWN + 1:
            return None
        starts_head = _HEAD_START.match(text, line) is not None
        if not starts_head and not _DELIMITER_BEING_WRITTEN.fullmatch(text, line):
            return None  # (a paragraph's line being written, most often)
        if text.find("\n", line) >= 0:
            return None  # (never seen: the lines after the paragraph's are parsed)
        seen, scanned, first = self._head_after
        if seen != settled:
            scanned, first = settled, -1
        if first < 0 and scanned < line:  # (each line looked at once)
            pipe = _PIPE_LINE.search(text, scanned, line)
            first, scanned = (-1 if pipe is None else pipe.start()), line
            self._head_after = (settled, scanned, first)
        if first < 0:  # none before the line being written: it is the head, if it starts so
            if not starts_head:
                return None
            start, head_end = line, end
        else:  # the head is the line before it, which may still be its delimiter row
            start, head_end = first, line - 1
            if start == settled or line - start > _ROW_SHOWN + 1:
                return None  # (the paragraph's first line: it is no head after its lines)
            if text.find("\n", start, head_end) >= 0:
                return None  # the paragraph's line after it: its text
            if not _DELIMITER_BEING_WRITTEN.fullmatch(text, line):
                return None
        if start - settled > _HEAD_AFTER_MOST:
            return None
        at, before_start, before = self._head_before
        if at != settled or before_start != start:
            before = render_blocks(text[settled:start], self._scratch_env())
            if not before.startswith("<p>") or not before.endswith("</p>\n"):
                before = ""  # (never seen: the lines of a paragraph render as one)
            self._head_before = (settled, start, before)
        return (start, head_end, before) if before else None

    def _head_cells(self, line: str) -> tuple[str, ...]:
        """A table's head being written as its cells show it: each that ended (a pipe
        follows it) as the head will render it, once; the last as its text so far (a pipe
        begins an empty one, drawn once its text comes)."""
        settled, drawn_line, drawn = self._head_drawn
        if settled == self.settled and drawn_line == line:
            return drawn  # (a step's, then its tail's)
        after_pipe = line.lstrip(MD_TRIMMED)[1:]
        texts = _CELL_PIPE.split(after_pipe)
        ended = line[: len(line) - len(texts[-1])]
        settled, before, done = self._head_ended
        if settled != self.settled or not ended.startswith(before):
            done = ()
        done = (
            *done,
            *(self._cell_html(text.lstrip(MD_TRIMMED)) for text in texts[len(done) : -1]),
        )
        self._head_ended = (self.settled, ended, done)
        count = _HEAD_CELLS_DRAWN
        while count <= len(texts):
            count *= 2
        being_written = self._cell_written(texts[-1].lstrip(MD_TRIMMED))
        cells = (*done, being_written, *[""] * (count - len(texts)))
        self._head_drawn = (self.settled, line, cells)
        return cells

    def _head_step(self, step: RenderStep, line: str) -> None:
        """Say in `step` how the table's head being written changed: cells added to, or drawn
        again (the head is drawn again when it needs more cells than it has)."""
        cells, shown = self._head_cells(line), self._head_shown
        self._head_shown = cells
        if step.tail_replaced:
            return
        # (a head after a paragraph's lines: their formatting goes on over its line, unseen,
        # so that they are drawn as text again at once if it turns out no head)
        step.appended, step.span_html, step.formatted, step.pending = "", "", "", None
        step.pending_added, step.pending_redrawn, step.span_given_up = "", False, False
        if len(cells) != len(shown):
            step.tail_replaced = True
            return
        step.row_cells, step.cells_inserted, step.cells_set = _cells_changed(shown, cells)

    def _line_ends_table(self) -> bool:
        """Whether the line being written after the open table's rows ends it, whatever comes
        after it on that line (the rows before it drawn, if a line of them came with it)."""
        table = self._table
        assert table is not None
        complete = self.text.rfind("\n") + 1
        line = self.text[complete : complete + _TABLE_END_DECIDED]
        if complete == table.row_kept:
            return False  # its first characters did not end the table: nothing after them can
        if not _ends_table(line):
            if len(line) == _TABLE_END_DECIDED:
                table.row_kept = complete
            return False
        return complete == table.rows_to or self._draw_rows(complete)

    def _draw_rows(self, complete: int) -> bool:
        """The open table's lines that completed up to `complete` are all rows of it: draw
        them (True). Each is rendered under the table's head, not with the rows before it, so
        that a row costs its own line, however long the table. False (nothing drawn) if a line
        ends the table: a blank line, another block, or markdown-it's cap on the empty cells
        it adds to short rows."""
        table = self._table
        assert table is not None
        lines = self.text[table.rows_to : complete]
        autocompleted = table.autocompleted
        if _AUTOCOMPLETED_CAP is not None:
            for line in lines.split("\n")[:-1]:  # (not `splitlines`: \v, \x85... are text)
                autocompleted += table.columns - _written_cells(line)
                if autocompleted > _AUTOCOMPLETED_CAP:
                    return False
        html = render_blocks(table.head + lines, self._scratch_env())
        body = html.find("<tbody>\n")
        if body < 0 or not html.endswith("</tbody>\n</table>\n"):
            return False
        drawn = html[body + 8 : -len("</tbody>\n</table>\n")].split("</tr>\n")[:-1]
        if len(drawn) != lines.count("\n"):
            return False
        rows = "".join(f"<tbody>\n{row}</tr>\n</tbody>\n" for row in drawn)
        # Grown in place (see `feed`): `+=` on the attribute copied the table for each row
        grown, table.html = table.html, ""
        grown += rows
        table.html = grown
        table.added += rows
        table.autocompleted = autocompleted
        table.rows_to = complete
        return True

    def _table_step(self, step: RenderStep, received_from: int) -> None:
        """Say in `step` how the table in the tail changed: rows added (drawn as their lines
        completed), or the row being written drawn again or added to. The text from
        `received_from` came in this step."""
        table = self._table
        assert table is not None
        newline = self.text.rfind("\n", max(table.rows_to, received_from))
        if newline >= 0 and not self._draw_rows(newline + 1):
            # (never seen: a line that ends the table settles it) they show once it ends
            table.rows_to = newline + 1
        rows, table.added = table.added, ""
        if rows or received_from - table.rows_to < _ROW_SHOWN:
            row = self.text[table.rows_to : table.rows_to + _ROW_SHOWN]
            cells = self._row_html(row)
        else:
            cells = table.cells  # the row shows as many characters as it shows at most
        if not step.tail_replaced:
            step.appended = ""
            if rows:
                step.rows_html, step.row_redrawn = rows, True
            else:
                changed = _cells_changed(table.cells, cells)
                step.row_cells, step.cells_inserted, step.cells_set = changed
        table.cells = cells

    def _row_html(self, row: str) -> tuple[str, ...]:
        """The cells of the open table's row being written, as the page draws them: each cell
        that has ended (a pipe follows it) as the table will render it, once; the others as
        their text so far, without the blanks after it (they show once more text follows)."""
        table = self._table
        assert table is not None
        texts = row_cells(row, table.columns)
        ended, count = ended_cells(row, table.columns)
        if not ended.startswith(table.ended):  # another row, or a cell is other than it was
            table.ended_html = ()
        table.ended = ended
        done = list(table.ended_html)
        for text in texts[len(done) : count]:
            done.append(self._cell_html(text))
        table.ended_html = tuple(done)
        return (*done, *(self._cell_written(text) for text in texts[count:]))

    def _cell_written(self, text: str, *, cell: bool = True) -> str:
        """A cell of a table's row or head being written (its text without the blanks
        before it), as the page draws it: as it will render if its marks close where its text
        ends (`drawn_as_closed`), or as its text (without the blanks after it, which show
        once more text follows) if it has no mark, or a mark left open however it ends. Words
        added to its drawing where they are being written need no render."""
        if not text or not _INLINE_MARK.search(text):
            return escape(text.rstrip(MD_TRIMMED))
        words = _ESCAPED_PIPE.sub("|", text) if cell else text  # (a cell's "\|" is a pipe)
        references = len(self._references.get("references", ()))
        last_words, last_references, last = self._cell_drawn
        if last_references != references:
            last = None  # (a reference defined since may make its words a link)
        if last is not None and last.at is not None and words.startswith(last_words[: last.to]):
            added = words[last.to :].rstrip(_HELD_END)
            if not added:
                drawn: Drawn | None = last
            elif _PLAIN.fullmatch(added) and (last.depth <= 1 or not punctuation(added[-1])):
                html = last.html[: last.at] + added + last.html[last.at :]
                drawn = Drawn(html, last.to + len(added), last.at + len(added), last.depth)
            else:
                drawn = self._cell_drawing(words)
        else:
            drawn = self._cell_drawing(words)
        self._cell_drawn = (words, references, drawn)
        return escape(text.rstrip(MD_TRIMMED)) if drawn is None else drawn.html

    def _cell_drawing(self, words: str) -> Drawn | None:
        env = self._scratch_env()
        return drawn_as_closed(
            words, " ", lambda closed: render_words(closed, env), seldom_as_text=True
        )

    def _cell_html(self, text: str) -> str:
        """An ended cell of the open table's row being written, as the row will render it
        (markdown-it renders each cell's text inline on its own); text without marks as it
        is drawn while written."""
        if not _INLINE_MARK.search(text):
            return escape(text.rstrip(MD_TRIMMED))
        return render_cell(_ESCAPED_PIPE.sub("|", text), self._scratch_env())

    def _settle_items(self, start: int, end: int) -> bool:
        """Settle the items of the top-level list at `start` (the open list's, if there is
        one) up to its item at `end`, its last so far, which stays the tail. False if they
        cannot be drawn apart (never seen: a list's items parse alike alone): the list then
        settles whole, as other blocks do."""
        open_list = self._list
        if open_list is not None:
            start = open_list.start
        if self._whole_list_from == start:
            return False
        loose = open_list is not None and open_list.loose
        drawn = render_list(self.text[self.settled : end], self._references, loose=loose)
        if open_list is None:
            if drawn is None:
                self._whole_list_from = start
                return False
            close = drawn.html[drawn.html.rindex("</") :]
            number = _FIRST_NUMBER.match(self.text, start)
            self._list = _OpenList(
                start,
                drawn.html,
                close,
                drawn.loose,
                first=int(number.group(1)) if number else 1,
                items=drawn.items,
            )
        elif drawn is None or (drawn.loose and not loose):
            # A blank line between two items: the whole list is loose, drawn again
            whole = render_list(self.text[start:end], self._references, loose=True)
            if whole is None:
                self._whole_list_from = start
                return False
            open_list.html, open_list.loose, open_list.items = whole.html, True, whole.items
        else:
            items = drawn.html[drawn.html.index("\n") + 1 : -len(open_list.close)]
            open_list.html = open_list.html[: -len(open_list.close)] + items + open_list.close
            open_list.items += drawn.items
        self.settled = end
        return True

    def _settle_list(self, end: int, html: list[str]) -> None:
        """The open list is complete up to `end`: rendered once more as a whole, it is what
        the page shows (the items it lacks are sent, `_step`) and what is stored."""
        open_list = self._list
        assert open_list is not None
        whole = render_blocks(self.text[open_list.start : end], self._references)
        if open_list.shown:
            self._list_settled = whole
            self._blocks.append(whole)  # nothing settled before it in this step
        else:
            html.append(whole)
        self._list = None
        self.settled = end

    def _parse_tail(self, source: str, env: dict[str, Any]) -> list[Token]:
        """markdown-it's blocks of `source`, the text from `settled` on (its references added to
        `env`). In an open list that is its open item on: an item whose line is a table's head
        alone ("- a | b" over a delimiter row: the table's rule comes before the list's) is an
        item in its list, the delimiter row its lazy line, so it is parsed after an item of
        the list, whose tokens are then taken out."""
        tokens = block_parser().parse(source, env)
        if self._list is None or not tokens or tokens[0].type != "table_open":
            return tokens
        item = _ITEM_MARKER.match(source)
        if item is None:
            return tokens
        before = f"{item.group(1)}{item.group(2)} x\n"
        env.clear()  # (its definitions are found again, on lines one less)
        tokens = block_parser().parse(before + source, env)
        # The list's first item is the one put before: its tokens go, and every line is one
        # less.
        for definition in (*env.get("references", {}).values(), *env.get("duplicate_refs", ())):
            definition["map"] = [line - 1 for line in definition["map"]]
        end = next(
            i
            for i, token in enumerate(tokens)
            if token.type == "list_item_close" and token.level == 1
        )
        tokens = tokens[:1] + tokens[end + 1 :]
        for token in tokens:
            if token.map is not None:
                token.map = [max(token.map[0] - 1, 0), token.map[1] - 1]
        return tokens

    def _list_end(self) -> int:
        """Where the open list ends in the whole text (at its end)."""
        source = self.text[self.settled :]
        blocks = _top_level_blocks(self._parse_tail(source, {}))
        if not blocks or blocks[0].type not in _LISTS:
            return self.settled
        end_line = _lines(blocks[0])[1]
        starts = _line_starts(source)
        return self.settled + (starts[end_line] if end_line < len(starts) else len(source))

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


def _cells_changed(
    shown: tuple[str, ...], cells: tuple[str, ...]
) -> tuple[
    tuple[tuple[int, str], ...], tuple[tuple[int, int, str], ...], tuple[tuple[int, str], ...]
]:
    """How a row's cells as shown (`shown`) change to `cells`, column by column (1-based), up
    to the last shown: HTML added to a cell, HTML put in a cell where its words are being
    written (`_inserted`), and cells drawn again (when neither)."""
    added, inserted, drawn = [], [], []
    for column, (old, new) in enumerate(zip(shown, cells, strict=True), 1):
        if new == old:
            continue
        if new.startswith(old):
            added.append((column, new[len(old) :]))
        elif (insertion := _inserted(old, new)) is not None:
            inserted.append((column, *insertion))
        else:
            drawn.append((column, new))
    return tuple(added), tuple(inserted), tuple(drawn)


def _inserted(old: str, new: str) -> tuple[int, str] | None:
    """`new` as `old` with text put in among the closing tags that end it (where words being
    written go, `drawn_as_closed`): how many elements down from the end that is, and the
    text; None if it is not."""
    if len(new) <= len(old) or not old.endswith(">"):
        return None
    ends = _CLOSING_TAGS.search(old)
    assert ends is not None
    for tag in _CLOSING_TAG.finditer(old, ends.start()):
        at = tag.start()
        text = new[at : at + len(new) - len(old)]
        if new.startswith(old[:at]) and new.endswith(old[at:]) and _balanced(text):
            return old.count("</", at), text
    return None


def _one_quote(html: str) -> str | None:
    """`html`, if it is one quote (which may hold others)."""
    depth = 0
    for tag in _QUOTE_TAG.finditer(html):
        depth += -1 if tag.group(1) else 1
        if depth == 0 and tag.end() < len(html) - 1:
            return None  # (a block after it)
    return html if html.startswith("<blockquote>") and depth == 0 else None


def _balanced(html: str) -> bool:
    """Whether `html` is whole elements and text: what htmx puts in an element as it is."""
    opened: list[str] = []
    for tag in _ANY_TAG.finditer(html):
        closing, name = tag.groups()
        if not closing:
            opened.append(name)
        elif not opened or opened.pop() != name:
            return False
    return not opened


def _continuation(block: Token, source: str, tokens: list[Token]) -> re.Pattern[str] | None:
    """The lines that can only continue this open block, the last of `tokens` (see
    `_PARAGRAPH_LINE`)."""
    if not source.endswith("\n"):
        return None
    n_lines = source.count("\n")
    end = _lines(block)[1]
    if block.type == "code_block":
        # It goes on after blank lines (which it leaves out) with a line indented as code
        return None if source[_line_starts(source)[end] :].strip(" \t\n") else _CODE_LINE
    if end != n_lines:
        return None  # it ended before: lines that make no block (a link reference) follow
    lazy = _ends_in_paragraph(tokens, n_lines)
    if block.type in _LISTS:
        # A list takes in the blank lines after it (an item may go on after them)
        item = _last_item(tokens)
        return None if item is None else _list_line(block, item, source, lazy)
    if not source[source.rfind("\n", 0, -1) + 1 :].strip(" \t\n"):
        return None  # only after a non-blank line (an empty quote takes in a blank one)
    if block.type == "paragraph_open":
        return _PARAGRAPH_LINE
    if block.type == "table_open":
        return _TABLE_LINE
    if block.type == "blockquote_open":
        return _QUOTE_OR_LAZY_LINE if lazy else _QUOTE_LINE
    return None


def _ends_in_paragraph(tokens: list[Token], n_lines: int) -> bool:
    """Whether the innermost block open at the end of the `n_lines` lines parsed is a
    paragraph, which a line that starts no block goes on (a lazy line). Not one that may yet
    turn out a link reference definition, or the title of one before it: a line may end it
    as that ("- [a]:" then "/u"), and then nothing goes on lazily."""
    for i in range(len(tokens) - 1, -1, -1):
        token = tokens[i]
        if token.map is not None and token.type != "inline":
            if token.type != "paragraph_open" or token.map[1] != n_lines:
                return False
            text = tokens[i + 1].content if i + 1 < len(tokens) else ""
            return not text.lstrip(" \t").startswith(("[", "'", '"', "("))
    return False


def _strict(lines: re.Pattern[str]) -> re.Pattern[str]:
    """The lines that continue the open block once a line that is not a lazy one (group
    `text`) went into it: its innermost block may be other than a paragraph from then on."""
    if lines is _QUOTE_OR_LAZY_LINE:
        return _QUOTE_LINE
    if (of_list := _LIST_OF.get(lines)) is not None:
        return _list_lines(*of_list)
    return lines


@functools.cache
def _list_lines(ordered: bool, marker: str, column: int, lazy: bool = False) -> re.Pattern[str]:
    """A line inside the last item (indented to `column`, its content's, a tab for up to four),
    a blank line, or a new item (its prefix the group `item`, whose length is the next content
    column); if `lazy` (the item's innermost paragraph is open), a line that goes on with it
    (group `text`). Not a line that may be a table's delimiter row: it makes the line before
    it, which may have been a lazy line of the item's paragraph, a table's head, which ends
    the list."""
    number = r"[0-9]{1,9}" if ordered else ""
    rule = "" if ordered else r"(?![-*_ \t]*\n)"
    item = rf"(?P<item> {{0,3}}{number}{re.escape(marker)} {{1,4}})(?=[^ \t\n]){rule}"
    delimiter = r"(?![ \t|:]*-[-:| \t]*\n)"
    text = f"(?P<text>{_LAZY_LINE})|" if lazy else ""
    # (Exactly `column` spaces, then the blanks: " {column,}[ \t]*" backtracked over a long
    # blank line, quadratic in its length.)
    indent = rf"(?: {{{column}}}| {{0,3}}\t)" if column <= 4 else f" {{{column}}}"
    pattern = re.compile(rf"{text}{delimiter}{indent}[ \t]*\S[^\n]*\n|[ \t]*\n|{item}[^\n]*\n")
    _LIST_OF[pattern] = (ordered, marker, column)
    return pattern


# Each `_list_lines` pattern's list: ordered, its marker, its last item's content column (the
# pattern without lazy lines for this key)
_LIST_OF: dict[re.Pattern[str], tuple[bool, str, int]] = {}


@functools.cache
def _next_item(ordered: bool, marker: str, column: int) -> re.Pattern[str]:
    """The start of a line that begins the list's next item (not a line of its last item,
    indented to `column`): its marker, blanks, a first character. A rule ("- - -") that it
    may turn into ends the list, which ends the item too."""
    number = r"[0-9]{1,9}" if ordered else ""
    return re.compile(rf"(?! {{{column},}}\S) {{0,3}}{number}{re.escape(marker)} {{1,4}}[^ \t\n]")


def _list_line(block: Token, item: Token, source: str, lazy: bool) -> re.Pattern[str] | None:
    """The lines that continue a list whose last item is `item` (see `_ITEM_START`), and
    lazy lines if `lazy`."""
    first = _lines(item)[0]
    line_start = _line_starts(source)[first] if first else 0
    match = _ITEM_START.match(source, line_start)
    if match is None:
        return None  # an empty item, a tab, or code right after the marker: parse each line
    ordered = block.type == "ordered_list_open"
    marker = match.group(2)[-1] if ordered else match.group(2)
    return _list_lines(ordered, marker, match.end() - line_start, lazy)


def _last_item(tokens: list[Token]) -> Token | None:
    """The last item of a top-level list (the list being the last block)."""
    for token in reversed(tokens):
        if token.type == "list_item_open" and token.level == 1:
            return token
    return None


def _item_starts(tokens: list[Token]) -> list[int]:
    """The lines where the items of top-level lists start."""
    return [t.map[0] for t in tokens if t.type == "list_item_open" and t.level == 1 and t.map]


def _list_change(shown: str, now: str) -> tuple[str, bool] | None:
    """How the page's open list, `shown`, becomes `now`: the items to add at its end, or (when
    it changed otherwise: it turned loose) the whole list again (True). None if `now` is not
    that list, grown or drawn again (never seen): no change can make the page show it."""
    if now == shown:
        return "", False
    close = shown[shown.rindex("</") :]
    head = shown[: -len(close)]
    if len(now) > len(shown) and now.startswith(head) and now.endswith(close):
        items = now[len(head) : -len(close)]
        return (items, False) if _list_depths(items) == (0, 0) else None
    if now[:3] == shown[:3] and _list_depths(now[3:].removesuffix(close)) == (0, 0):
        return now, True
    return None


def _list_depths(html: str) -> tuple[int, int]:
    """The lowest depth of list tags in `html` and the depth it ends at: (0, 0) if it holds
    whole lists only (items of one list, or one list's inside)."""
    depth = lowest = 0
    for tag in _LIST_TAG.finditer(html):
        depth += -1 if tag.group(1) else 1
        lowest = min(lowest, depth)
    return lowest, depth


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


def _may_turn_definition(blocks: list[Token], source: str, line_starts: list[int]) -> bool:
    """Whether a link reference definition may yet take the last block (its lines): it starts
    a definition (a label not closed, a label and its colon without a destination, a title
    not closed) or the title of the definition on the line before it. Not once a blank line
    follows it, nor past a few lines (each line of a held block parses it again)."""
    last = blocks[-1]
    first, end = _lines(last)
    if end < len(line_starts) - 1 or end - first > _HELD_LINES:
        return False
    start = line_starts[first]
    if _DEFINITION_START.match(source, start) is None:
        before = _lines(blocks[-2])[1] if len(blocks) > 1 else 0
        if first <= before or not source[line_starts[first - 1] : start].strip():
            return False  # no definition just before it: a block or a blank line is
        if _TITLE_START.match(source, start) is None:
            return False
        while (
            first - 1 > before and source[line_starts[first - 2] : line_starts[first - 1]].strip()
        ):
            first -= 1  # to the start of the definitions before it
        text = source[line_starts[first - 1] :]
    else:
        text = source[start:]
    return any(
        not _top_level_blocks(block_parser().parse(text + ending)) for ending in _DEFINITION_ENDS
    )


def _complete_definitions_end(env: dict[str, Any], line_starts: list[int], before: int) -> int:
    """Where the link reference definitions that markdown-it found in a text before line
    `before` (from `env`, its env for the text) end, as far as they are complete; 0 for none.
    Where the lines before `before` make no block, they are definitions and blank lines: those
    before the last definition are complete without it (the parser began a block there), and
    the rest parses alone as it did after them; the last one is complete too if a blank line
    follows it (else its title may come on its next line)."""
    definitions = (*env.get("references", {}).values(), *env.get("duplicate_refs", ()))
    maps = [definition["map"] for definition in definitions if definition["map"][0] < before]
    if not maps:
        return 0
    start, end = max(maps)
    limit = min(before, len(line_starts) - 1)
    return line_starts[limit] if end < limit else line_starts[start]


def _is_complete(block: Token, source: str, line_starts: list[int], n_lines: int) -> bool:
    """Whether the last block can no longer change, whatever text comes next."""
    start, end = _lines(block)
    if block.type in _COMPLETE_WHEN_LINE_ENDS:
        if block.type != "heading_open" or "|" not in source[line_starts[start] : line_starts[end]]:
            return True
        # A heading with a pipe is a table's head if a delimiter row follows it: the next
        # line decides.
        return end < n_lines
    if block.type == "fence":
        if end - 1 <= start:
            return False
        line = source[line_starts[end - 1] : line_starts[end] - 1]
        return _closing_fence(block.markup).fullmatch(line) is not None
    if block.type in _END_AT_BLANK_LINE:
        # A complete blank line after it ends it.
        if end < n_lines and not source[line_starts[end] : line_starts[end + 1]].strip():
            return True
    # A line after it, not its own (link reference definitions, which make no block), ends it
    return bool(source[line_starts[end] :].strip()) if end < n_lines else False


@dataclass(frozen=True)
class Drawn:
    """Words being written, drawn as they will render if their marks close where they end
    (`drawn_as_closed`): the HTML, how much of the words it shows (what follows waits), and
    where in the HTML, how many elements down, text after them goes (None: it is drawn again
    as it grows); whether a link's destination is being written (not drawn)."""

    html: str
    to: int
    at: int | None = None
    depth: int = 0
    hidden: bool = False


def drawn_as_closed(
    piece: str, preceding: str, render: Callable[[str], str | None], *, seldom_as_text: bool = False
) -> Drawn | None:
    """`piece`, words whose marks are still being written (a pending span's, a table cell's),
    drawn as they will render if those marks close where it ends: without its end that may
    yet be a closing mark (`_HELD_END`, a link's closing parenthesis), its brackets that
    nothing closed yet escaped, a link whose destination is being written with none (not
    drawn), then the marks that close what is open (`_closed`). `render` renders such words
    inline, or gives None if a mark is left open (`render_words`): None then, the words are
    drawn as text; so too, with `seldom_as_text`, if a mark left open seldom closes
    (`_often_closes`: a cell's, where nothing else looks at its marks). `preceding`: the
    characters before them (two: a variation selector belongs to the character before it)."""
    core = piece.rstrip(_HELD_END)
    if core.endswith(")") and _OPEN_DESTINATION.search(core, 0, len(core) - 1):
        core = core[:-1]  # (a link's closing parenthesis: it waits for what follows)
    if not core:
        return Drawn("", 0, 0)
    to = len(core)
    simple = _SIMPLY_OPEN.fullmatch(core)
    if simple is not None and preceding[-1:].isspace():
        # A code span or an emphasis of plain words, open: as markdown-it renders it once
        # closed, without a render (most spans, as their first word comes)
        if seldom_as_text and simple.group("mark")[0] == "_":
            return None
        tag = _SIMPLE_TAGS[simple.group("mark")[:2]]
        drawn = f"<{tag}>{escape(simple.group('words'), quote=False)}</{tag}>"
        at = None if _ENTITY_END.search(core) else len(drawn) - len(tag) - 3
        return Drawn(drawn, to, at, 1)
    hidden = _OPEN_DESTINATION.search(core)
    if hidden is not None:
        core = core[: hidden.start()] + "]()"
    core, closing, elements, seldom = _closed(core, preceding)
    if seldom and seldom_as_text:
        return None
    html = render(core + closing)
    if html is None:
        return None
    if hidden is not None:
        link = html.rfind(' href=""')
        if link >= 0:
            return Drawn(html[:link] + html[link + 8 :], to, hidden=True)
        return None
    if _ENTITY_END.search(core):
        return Drawn(html, to)  # (an entity may go on)
    # Where the words being written end: before the elements the closing marks end
    ends = _CLOSING_TAGS.search(html)
    assert ends is not None
    tags = [match.start() for match in _CLOSING_TAG.finditer(html, ends.start())]
    if len(tags) < elements:
        return Drawn(html, to)
    at = tags[len(tags) - elements] if elements else len(html)
    if not html[:at].endswith(escape(core[-1], quote=False)):
        return Drawn(html, to)
    return Drawn(html, to, at, elements)


def _open_link(piece: str) -> int | None:
    """Where the link whose destination or title `piece` ends in being written starts its
    "](" (or in its closing parenthesis, which waits for what follows); None if none."""
    core = piece.rstrip(_HELD_END)
    link = _OPEN_DESTINATION.search(core, 0, len(core) - core.endswith(")"))
    return None if link is None else link.start()


# What opens a parenthetical or a quotation, before a mark that opens an emphasis inside it
_OPENING_PUNCTUATION = "([\"'\u201c\u2018"


def _often_closes(run: str, before: str, after: str) -> bool:
    """Whether an emphasis's or a strikethrough's marks (`run`, between the text `before`
    them, its last two characters, and the character `after`, "" at the end) that may open
    one are drawn as they will render if they close: after a blank or a CJK character (whose
    text has no blanks; or its variation selector), before a letter, a digit, a code span or
    a link; a double mark before punctuation too ('**"Save"**', "**.env**", "**(optional)**"),
    a single one before a quote or a parenthesis; and a double mark after a letter before a
    CJK opening bracket or quote ("Git**（注）**"; at the end, until what follows shows).
    Not "2**10", "f(*args", "*.py", "**/*.js", nor any underscore's ("__init__",
    "_private"): they seldom close, and would draw the words after them formatted until
    their line or cell ended."""
    if run[0] == "_":
        return False
    if before[-1:] in _OPENING_PUNCTUATION and (len(before) < 2 or before[-2].isspace()):
        # An opening parenthesis or quote after a blank, before a word: " (**optional**)",
        # ' "*Note*"' (not ' "*" wildcard', " (**) bound": those seldom close)
        return not after or after.isalnum() or after in "`["
    if not (before[-1:].isspace() or cjk_before(before)):
        return before[-1:].isalnum() and len(run) > 1 and after in _CJK_OPENING  # ("": wait)
    if not after or after.isalnum() or after in "`[":
        return True
    if len(run) > 1:
        return not after.isspace() and after not in "*/"
    return after in "\"'(\u201c\u2018"


def _closed(core: str, preceding: str) -> tuple[str, str, int, bool]:
    """A pending span's text drawn as if its marks closed where it ends: `core` with its
    brackets that no "]" closes escaped (text until a link's destination follows), the marks
    that close its emphases, strikethroughs and code span still open, innermost first, and
    the number of elements they end (a run of three stars ends two: a bold in an emphasis);
    and whether a mark left open seldom closes (`_often_closes`).
    An approximation of CommonMark's delimiter rules: the render says whether it holds
    (`render_words` finds no mark left open). `preceding`: the characters before `core` (as
    `drawn_as_closed` has them)."""
    opened: list[str] = []
    seldom: list[bool] = []  # for each run opened, whether it seldom closes
    brackets: list[int] = []
    i, n = 0, len(core)
    while i < n:
        mark = core[i]
        if mark == "\\":
            i += 2
            continue
        if mark == "[":
            brackets.append(i)
        elif mark == "]" and brackets:
            brackets.pop()
        elif mark in "*_~`":
            j = i + 1
            while j < n and core[j] == mark:
                j += 1
            if mark == "`":
                runs = _BACKTICKS.finditer(core, j)
                closing = next((run.end() for run in runs if run.end() - run.start() == j - i), -1)
                if closing < 0:
                    opened.append(core[i:j])  # a code span to the end
                    seldom.append(False)
                    break
                i = closing
                continue
            before = core[i - 2 : i] if i > 1 else (preceding + core[:i])[-2:]
            flanking = flanks(before, core[j : j + 1])
            opens, closes = flanking.opens(mark), flanking.closes(mark)
            if mark == "~" and j - i != 2:
                opens = closes = False
            if closes and any(run[0] == mark for run in opened):
                while opened.pop()[0] != mark:
                    seldom.pop()
                seldom.pop()
            elif opens:
                opened.append(core[i:j])
                seldom.append(not _often_closes(core[i:j], before, core[j : j + 1]))
            i = j
            continue
        i += 1
    for at in reversed(brackets):
        core = core[:at] + "\\" + core[at:]
    elements = sum(1 if run[0] in "`~" else len(run) // 2 + len(run) % 2 for run in opened)
    return core, "".join(reversed(opened)), elements, any(seldom)
