"""One reply's text as a tab shows it, rebuilt from the WebSocket frames, and where in the
reply's text each frame leaves it.

A streaming reply N is its settled blocks (`cN`, rendered HTML appended once per block) and
its open tail (`tN`: text, or a code block still streaming whose `<code id="xN">` gets the
text, or a list's item still being written, in a `<span id="xN">` (the item being written of a
list nested in it, `<li id="zN">`, when it has one), or a table whose head has
come, `<table id="xN">`, with its rows so far and the row being written, `<tbody id="zN">`,
last, or a table's head being written, `<thead id="zN">`; a list's items also go into the
list last among the blocks). A paragraph's or an item's text has its words drawn formatted
once their marks close, and the text after a mark still open in a pending span
(`<span id="wN">`). The blocks and the text the tail shows
together say how much of the text a tab has: `Reference` maps each such state to the offset
in the text, found by feeding the known text chunk by chunk to the app's own
`chat.progressive.ProgressiveRenderer` (it has no Django in it).
"""

from __future__ import annotations

import functools
import html
import re
from dataclasses import dataclass, field

from bench.tokens import Shape
from chat.progressive import formatted_html, with_list_change

OOB = re.compile(
    r'<(\w+) (?:id="([a-z])(\d+)"[^>]*?hx-swap-oob="([^"]+)"'
    # A change to the list last among a reply's blocks (`chat.fragments.text_step`), the
    # pending span in the tail's text drawn formatted, rows added to a table in the tail, or
    # text added to a cell of its row being written
    r'|hx-swap-oob="(beforeend|outerHTML|beforebegin|innerHTML):#([a-z])(\d+)'
    r'((?: > :last-child)*)(?: > tr > :nth-child\((\d+)\)((?: > :last-child)*))?")[^>]*>'
)
# A table's row being written, last in the tail (or its head being written: the tail's row)
ROW = re.compile(r'<(?:tbody|thead) id="z\d+"[^>]*>')
PENDING = re.compile(r'<span id="w\d+">')
TAG = re.compile(r"<[^>]+>")
# The end of a reply: its footer swapped in (`message.finished` with only what changes), or
# the whole message rendered from the database (a tab that missed a frame).
FINAL = re.compile(
    r'<div id="e(\d+)" class="reply-end"[^>]*hx-swap-oob="true"'
    r'|<article id="m(\d+)"[^>]*hx-swap-oob="true"'
)
# A code block's, or a list item's, text, or a table being written
CODE = re.compile(r'<(code|span|table) id="[xy]\d+"[^>]*>')
LANGUAGE = re.compile(r'<div class="code-lang">(.*?)</div>')

State = tuple[int, str, str, str]  # blocks' length, tail kind, code language, tail text


def shown_text(html_text: str) -> str:
    return html.unescape(TAG.sub("", html_text))


def final_of(frame: str) -> int | None:
    """The id of the reply this frame ends, if it ends one."""
    match = FINAL.search(frame)
    return int(match.group(1) or match.group(2)) if match else None


def _element_end(text: str, tag: str, start: int) -> tuple[int, int]:
    """Where the element whose opening tag ends at `start` closes: (inner end, outer end)."""
    depth = 1
    for match in re.finditer(rf"<(/?){tag}\b[^>]*>", text[start:]):
        depth += -1 if match.group(1) else 1
        if depth == 0:
            return start + match.start(), start + match.end()
    raise ValueError(f"unclosed <{tag}> in {text[start - 80 : start + 80]!r}")


@dataclass
class Change:
    """What one frame did to the reply's text."""

    text: bool = False  # it changed the blocks or the tail
    blocks: bool = False  # blocks were appended (settled) or set (a snapshot)
    snapshot: bool = False  # the whole text was set again
    appended_only: bool = True  # nothing but text appended to the tail
    appended_wire: int = 0  # bytes of the appended text as sent (escaped)
    status_wire: int = 0  # bytes of the status line's change (it goes with the first text)
    final: bool = False


@dataclass
class ReplyView:
    """Reply N on a tab: `apply` each frame in order."""

    message_id: int
    blocks: str = ""
    tail_kind: str = "text"
    language: str = ""
    tail: str = ""  # the tail's text, or the code so far (its HTML)

    def state(self) -> State:
        return (len(self.blocks), self.tail_kind, self.language, shown_text(self.tail))

    def apply(self, frame: str) -> Change:
        change = Change()
        rid = str(self.message_id)
        position = 0
        while match := OOB.search(frame, position):
            tag, kind, number, swap, list_swap, list_kind, list_number, chain, column, down = (
                match.groups()
            )
            inner_end, position = _element_end(frame, tag, match.end())
            if list_swap:
                kind, number = list_kind, list_number
            if number == rid and kind == "s":
                change.status_wire += len(frame[match.start() : position].encode())
            if number != rid or kind not in "ctxwz":
                continue
            inner = frame[match.end() : inner_end]
            change.text = True
            if kind == "z" and list_swap == "beforebegin" and self.tail_kind == "item":
                change.appended_only = False  # items of a list nested in the open item,
                continue  # before its item being written, whose text is then drawn anew
            if kind == "z":  # a table's row being written (last in the table): rows added
                change.appended_only = False  # before it, or a cell of it added to or set
                row = ROW.search(self.tail)
                assert row is not None, self.tail
                if column is None:
                    self.tail = self.tail[: row.start()] + inner + self.tail[row.start() :]
                    continue
                cells = [
                    m for m in re.finditer(r"<(t[dh])\b[^>]*>", self.tail) if m.start() > row.end()
                ]
                start = cells[int(column) - 1].end()
                close = _element_end(self.tail, cells[int(column) - 1].group(1), start)[0]
                for _ in range(down.count(":last-child")):  # where its words are written:
                    close = self.tail.rindex("</", start, close)  # its open elements end it
                kept = self.tail[start:close] if list_swap == "beforeend" else ""
                self.tail = self.tail[:start] + kept + inner + self.tail[close:]
            elif kind == "w" and list_swap == "beforeend":  # the pending span's words grew:
                # in its last element child so many levels down (its open elements end it)
                depth = chain.count(":last-child")
                pending = PENDING.search(self.tail)
                assert pending is not None, self.tail
                end = len(self.tail)
                for _ in range(depth + 1):
                    end = self.tail.rindex("</", pending.end(), end)
                self.tail = self.tail[:end] + inner + self.tail[end:]
                change.appended_wire += len(inner.encode())
            elif kind == "w" and swap == "innerHTML":  # the pending span drawn again
                change.appended_only = False
                pending = PENDING.search(self.tail)
                assert pending is not None and self.tail.endswith("</span>"), self.tail
                self.tail = self.tail[: pending.end()] + inner + "</span>"
            elif kind == "w" and list_swap:  # the pending span drawn formatted (last in the tail)
                change.appended_only = False
                pending = PENDING.search(self.tail)
                assert pending is not None and self.tail.endswith("</span>"), self.tail
                self.tail = self.tail[: pending.start()] + f"<span>{inner}</span>"
            elif list_swap:  # items added to the list last among the blocks, or drawn again
                change.blocks = True
                change.appended_only = False
                redrawn = list_swap == "outerHTML"
                drawn = frame[match.start() : position] if redrawn else inner
                drawn = re.sub(r' hx-swap-oob="[^"]*"', "", drawn, count=1)
                self.blocks = with_list_change(self.blocks, drawn, redrawn)
            elif kind == "c":
                change.blocks = True
                change.appended_only = False
                if swap == "innerHTML":
                    change.snapshot = True
                    self.blocks = inner
                else:
                    self.blocks += inner
            elif swap == "beforeend":  # text appended to the tail, its code or its pending span
                if kind == "w":  # the pending span is last in the tail
                    self.tail = self.tail.removesuffix("</span>") + inner + "</span>"
                else:
                    if PENDING.search(inner) or "<span>" in inner:
                        change.appended_only = False  # words formatted, or a pending span
                    self.tail += inner
                change.appended_wire += len(inner.encode())
            elif swap == "innerHTML" and kind == "x":  # a nested list's item drawn anew
                change.appended_only = False
                self.tail = inner
            elif swap == "innerHTML":  # the tail drawn again
                change.appended_only = False
                self._set_tail(inner)
            elif swap == "delete":
                change.appended_only = False
                self.tail_kind, self.language, self.tail = "text", "", ""
        final = final_of(frame)
        if final == self.message_id:
            change.final = True
            article = re.search(rf'<div id="c{rid}"[^>]*>', frame)
            if article and "<article" in frame[: article.start()]:
                # The whole message from the database: its content is the final text.
                self.blocks = frame[article.end() : _element_end(frame, "div", article.end())[0]]
                self.tail_kind, self.language, self.tail = "text", "", ""
        return change

    def _set_tail(self, inner: str) -> None:
        code = CODE.search(inner)
        if code is None:
            self.tail_kind, self.language, self.tail = "text", "", inner
            return
        language = LANGUAGE.search(inner[: code.start()])
        self.tail_kind = {"code": "code", "span": "item", "table": "table"}[code.group(1)]
        if inner.startswith("<h"):
            self.tail_kind = "heading"  # a heading being written: its text in the span
        elif inner.startswith("<blockquote"):
            self.tail_kind = "quote"  # a quote of one paragraph: its text in the span
        self.language = html.unescape(language.group(1)) if language else ""
        end = _element_end(inner, code.group(1), code.end())[0]
        self.tail = inner[code.end() : end]


@dataclass
class Reference:
    """Every state the app's renderer passes through while a shape's text streams, with the
    offset in the text each one shows, and the final rendered HTML."""

    text: str
    states: dict[State, int] = field(default_factory=dict)
    final_html: str = ""
    # Where the whole text is shown: the offset of the last state, where text that changes
    # nothing on the page (a table's cell ended by its pipe) may follow
    end: int = 0


@functools.lru_cache(maxsize=16)
def reference(tokens: int, kind: str, chunk: int = 1) -> Reference:
    from chat.markdown import render_markdown
    from chat.progressive import ProgressiveRenderer

    shape = Shape("reference", tokens, 1.0, chunk, kind=kind)
    found = Reference(shape.text())
    renderer = ProgressiveRenderer()
    found.states[(0, "text", "", "")] = 0
    end = 0
    for piece in shape.chunk_texts():
        renderer.feed(piece)
        end += len(piece)
        tail = renderer.tail
        language = tail.language
        if tail.kind == "code":
            shown = tail.text
        elif tail.item_list:  # a list nested in an item: the text of its item being written
            shown = shown_text(formatted_html(tail, "w"))
        elif tail.item_intro is not None and not tail.item_block:  # an item's code block
            shown, language = tail.item_code, tail.item_language
        elif tail.item_intro is not None:  # an item's code block, closed: drawn rendered,
            shown = shown_text(formatted_html(tail, "w")) if tail.item_after else ""  # then text
        elif tail.kind in ("table", "head"):  # (a head being written is drawn in a table)
            shown = shown_text(tail.table + "".join(f"<td>{c}</td>" for c in tail.cells))
        else:
            shown = shown_text(formatted_html(tail, "w"))
        # The first offset with this state: text that changes nothing on the page counts as
        # arrived with the next frame that does.
        kind = "table" if tail.kind == "head" else tail.kind
        if tail.item_intro is not None and not tail.item_list and not tail.item_block:
            kind = "code"
        state = (len(renderer.blocks_html), kind, language, shown)
        found.end = found.states.setdefault(state, end)
    found.final_html = render_markdown(found.text)
    return found
