"""HTML fragments that the WebSocket sends: htmx out-of-band swaps keyed by element id.

Element ids of a reply with primary key N: `mN` the whole message; `cN` its rendered blocks,
`tN` the open tail after them and `xN` the code element of a code block still streaming there
(or the text of a list's item still being written, or a table being written), `wN` the
pending span in the tail's text (a paragraph's or an item's) from a mark not closed yet
(`chat.progressive.Tail`), `zN` the body of a table's row being written (or the item being
written of a list nested in the tail's item);
`rN`, `uN`, `yN`, `vN`, `qN` the same for its reasoning, inside `dN`, the collapsed thinking
section with summary `gN`; `kN` its tool calls; `sN` its status line; `eN` its end (footer,
actions, stats).
Most frames are tiny (`beforeend` appends of escaped text), so framing costs a few dozen
bytes per frame; a settled block is sent once, as HTML rendered once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from html import escape  # Django's escape is this, behind a lazy-text check per call

from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

from . import articles
from .markdown import CODE_FRAME_CLOSE, code_frame_open
from .models import Conversation, Message
from .progressive import (
    TABLE_CLOSE,
    ProgressiveRenderer,
    RenderStep,
    Tail,
    formatted_html,
    pending_html,
)

MESSAGE_TEMPLATE = "chat/conversation.html#message"
TITLE_TEMPLATE = "chat/conversation.html#title"


@dataclass(frozen=True)
class TextField:
    """The element ids of one progressively rendered text of reply N: its settled blocks,
    its open tail, the code element inside the tail while a code block streams (or a list
    item's text, or a table), the pending span in the tail's text, and the body of the row
    being written of a table in the tail."""

    blocks: str
    tail: str
    code: str
    pending: str
    row: str

    def ids(self, message_id: int) -> tuple[str, str, str]:
        return f"{self.blocks}{message_id}", f"{self.tail}{message_id}", f"{self.code}{message_id}"


CONTENT = TextField("c", "t", "x", "w", "z")
REASONING = TextField("r", "u", "y", "v", "q")


def tail_html(field: TextField, message_id: int, tail: Tail) -> str:
    """The open tail: escaped text, or a code block still streaming (unhighlighted, in the
    same frame and with the same language label it keeps once it is highlighted), or a list's
    item still being written, as the list's next item (its text as written), where the item
    will stand once it settles (a list's first item as the list; its first line rendered, then
    its code block, or the list nested in it, as they are written), or a heading being written,
    or a table with the rows written so far, the row being
    written last (its cells that ended rendered, the others as written), or a table's head
    being written (its cells so, in the head row the table will have; after the paragraph
    whose lines it follows, rendered, where it interrupts one), or a quote (its last
    paragraph's text without its lines' markers, after its paragraphs before it, rendered)."""
    pending_id = f"{field.pending}{message_id}"
    if tail.kind == "text":
        return formatted_html(tail, pending_id)
    _, _, code_id = field.ids(message_id)
    if tail.kind == "table":
        row = _table_row(f"{field.row}{message_id}", tail.cells, tail.aligns)
        return f'<table id="{code_id}" class="tail-table">{tail.table[7:]}{row}</table>'
    if tail.kind == "head":
        cells = "".join(f"<th>{cell}</th>" for cell in tail.cells)
        head = f'<thead id="{field.row}{message_id}" class="tail-head"><tr>{cells}</tr></thead>'
        return f'{tail.head_before}<table id="{code_id}" class="tail-table">{head}</table>'
    if tail.kind == "item":
        tag = f'ol start="{int(tail.number)}"' if tail.number else "ul"
        css = "tail-list" if tail.opens else "tail-item"
        if tail.item_rendered is not None:  # drawn as it renders so far (a table in it)
            before, after = tail.item_rendered
            if before.endswith(TABLE_CLOSE):  # (where the rows it gains go: `item_rows_html`)
                row_id = f"{field.row}{message_id}"
                end = f'<tbody id="{row_id}" class="tail-rows"></tbody>{TABLE_CLOSE}'
                before = before[: -len(TABLE_CLOSE)] + end
            item = _rendered_so_far(code_id, tail, (before, after))
            return f'<{tag} class="{css}"><li>{item}</li></{tag[:2]}>'
        text = formatted_html(tail, pending_id)
        if tail.item_list:  # its first line, then the list nested in it
            nested = tail.item_list
            row_id = f"{field.row}{message_id}"
            written = f'<li id="{row_id}">{_sub_item_written(code_id, tail, text)}</li>'
            intro = _item_intro_html(tail)
            item = (
                f'{intro}<{nested} class="tail-sublist">{tail.item_list_items}{written}</{nested}>'
            )
            return f'<{tag} class="{css}"><li>{item}</li></{tag[:2]}>'
        if tail.item_paragraph:  # its first paragraph, then its second being written
            paragraph = f'<p class="tail-paragraph"><span id="{code_id}">{text}</span></p>'
            return f'<{tag} class="{css}"><li>{_item_intro_html(tail)}{paragraph}</li></{tag[:2]}>'
        if tail.item_intro is not None:  # its first line, then its code block
            block = tail.item_block.rstrip("\n") or (
                f'{code_frame_open(tail.item_language)}<pre class="streaming-code">'
                f'<code id="{code_id}">{escape(tail.item_code)}</code></pre>{CODE_FRAME_CLOSE}'
            )
            item = f"<span>{tail.item_intro}</span>{block}"
            if tail.item_block:  # the item's text after its block, once it comes
                item += f'<span id="{code_id}">{text if tail.item_after else ""}</span>'
            return f'<{tag} class="{css}"><li>{item}</li></{tag[:2]}>'
        return f'<{tag} class="{css}"><li><span id="{code_id}">{text}</span></li></{tag[:2]}>'
    if tail.kind == "heading":
        text = formatted_html(tail, pending_id)
        tag = f"h{tail.level}"
        return f'<{tag} class="tail-heading"><span id="{code_id}">{text}</span></{tag}>'
    if tail.kind == "quote" and tail.quote_rendered is not None:  # a quote of other blocks
        return _rendered_so_far(code_id, tail, tail.quote_rendered)
    if tail.kind == "quote":
        text = formatted_html(tail, pending_id)
        quote = f'{tail.quote_before}<p><span id="{code_id}">{text}</span></p>'
        return f'<blockquote class="tail-quote">{quote}</blockquote>'
    return (
        f'{code_frame_open(tail.language)}<pre class="streaming-code"><code id="{code_id}">'
        f"{escape(tail.text)}</code></pre>{CODE_FRAME_CLOSE}"
    )


def _sub_item_written(code_id: str, tail: Tail, text: str = "") -> str:
    """The nested list's item being written: its text (`text`, drawn), or its lines rendered
    (a line after its first: its code, a list nested in it), the line being written's text
    in its place."""
    if tail.item_list_written is None:
        return f'<span id="{code_id}">{text}</span>'
    return _rendered_so_far(code_id, tail, tail.item_list_written)


def _rendered_so_far(code_id: str, tail: Tail, drawn: tuple[str, str]) -> str:
    """A block drawn as it renders so far: its lines before its last rendered, then its line
    being written, and what follows that line's place."""
    line = escape(tail.text) if tail.line_html is None else tail.line_html
    return f'{drawn[0]}<span id="{code_id}" class="tail-line">{line}</span>{drawn[1]}'


def _item_intro_html(tail: Tail) -> str:
    """An item's first line, rendered: a paragraph of its own in a loose item."""
    tag = "p" if tail.item_loose else "span"
    return f"<{tag}>{tail.item_intro}</{tag}>"


def _table_row(row_id: str, cells: tuple[str, ...], aligns: tuple[str, ...]) -> str:
    """A table's row being written: a body of its own, the rows whose lines end going in
    before it (its cells are then drawn again, as when they do not only grow), hidden while
    its cells are empty; each cell aligned as its column (`aligns`), as the row will be."""
    drawn = "".join(
        f'<td class="{align}">{cell}</td>' if align else f"<td>{cell}</td>"
        for cell, align in zip(cells, (*aligns, *[""] * len(cells)), strict=False)
    )
    return f'<tbody id="{row_id}" class="tail-row"><tr>{drawn}</tr></tbody>'


def held_paragraph(renderer: ProgressiveRenderer) -> tuple[str, int] | None:
    """A continuation's open tail as it begins, if it is one paragraph: its HTML as the page
    showed it when the reply was cut, and where that text ends (what follows, white space
    included, is drawn after it as text). Drawn as plain text instead, it lost its formatting
    the moment Continue began. Any other open block is drawn as the tail draws it: a list's
    item, a heading, a table or a quote of one paragraph as such, another quote as text."""
    tail = renderer.tail
    text = tail.text.rstrip()
    if tail.kind != "text" or not text:
        return None
    html = renderer.tail_rendered().strip()
    if not (html.startswith("<p>") and html.endswith("</p>") and html.count("<p>") == 1):
        return None
    return html, renderer.settled + len(text)


def held_tail_html(held: tuple[str, int], text: str) -> str:
    """The open tail of `text` while it still starts with the paragraph the reply was cut at
    (`held_paragraph`): that paragraph as it was shown, then what came after it, as text."""
    held_html, end = held
    return f'<div class="held-tail markdown">{held_html}</div>{escape(text[end:])}'


def text_step(field: TextField, message_id: int, step: RenderStep, tail: Tail) -> str:
    """What one render step changes on the page: settled blocks appended once, then the tail
    redrawn (a block settled, a code block opened) or, most often, a few characters appended
    (to the pending span while a mark in the tail's text is open; its words are drawn
    formatted once it closes)."""
    blocks_id, tail_id, code_id = field.ids(message_id)
    parts = [_blocks_change(blocks_id, step)]
    text_id = tail_id if tail.kind == "text" else code_id
    pending_id = f"{field.pending}{message_id}"
    if step.item_rows_html and not step.tail_replaced:
        # Rows a table last in the item being written gained, at its end (`tail_html`)
        row_id = f"{field.row}{message_id}"
        parts.append(f'<table hx-swap-oob="beforebegin:#{row_id}">{step.item_rows_html}</table>')
    if step.sub_items_html and not step.tail_replaced:
        # Items of the list nested in the open item that settled, before its item being
        # written, whose text is drawn anew (as it is, most often: words without marks)
        row_id = f"{field.row}{message_id}"
        parts.append(f'<ul hx-swap-oob="beforebegin:#{row_id}">{step.sub_items_html}</ul>')
        if not step.sub_item_redrawn:
            plain = not (step.span_html or step.formatted or step.pending is not None)
            text = escape(step.appended) if plain else ""
            parts.append(f'<span id="{code_id}" hx-swap-oob="innerHTML">{text}</span>')
            if plain:
                return "".join(parts)
    if step.sub_item_redrawn and not step.tail_replaced:
        # The nested list's item being written, drawn anew as a line of it began
        row_id = f"{field.row}{message_id}"
        written = _sub_item_written(code_id, tail)
        return "".join(parts) + f'<div id="{row_id}" hx-swap-oob="innerHTML">{written}</div>'
    if step.tail_replaced:
        html = tail_html(field, message_id, tail)
        parts.append(f'<div id="{tail_id}" hx-swap-oob="innerHTML">{html}</div>')
    elif tail.kind in ("table", "head"):  # (a head's row: `row_id` too)
        row_id = f"{field.row}{message_id}"
        if step.rows_html:  # rows whose lines ended, before the row being written
            parts.append(f'<table hx-swap-oob="beforebegin:#{row_id}">{step.rows_html}</table>')
        cells_set = enumerate(tail.cells, 1) if step.row_redrawn else step.cells_set
        for column, cell in cells_set:  # the row being written, again, or cells of it
            at = f"#{row_id} > tr > :nth-child({column})"
            parts.append(f'<span hx-swap-oob="innerHTML:{at}">{cell}</span>')
        for column, html in step.row_cells:
            at = f"#{row_id} > tr > :nth-child({column})"
            parts.append(f'<span hx-swap-oob="beforeend:{at}">{html}</span>')
        for column, depth, html in step.cells_inserted:  # where a cell's words are written
            at = f"#{row_id} > tr > :nth-child({column})" + " > :last-child" * depth
            parts.append(f'<span hx-swap-oob="beforeend:{at}">{html}</span>')
    elif step.span_given_up:
        # The pending span's mark was given up on: its text, as text, and the words after it
        # go before the span, which shows the next pending span's words (or goes); or the
        # tail is drawn again, when that is shorter (a mark near the start of its paragraph)
        moved = f'<span hx-swap-oob="beforebegin:#{pending_id}">{step.formatted}</span>'
        if step.pending is None:
            moved += f'<span id="{pending_id}" hx-swap-oob="delete"></span>'
        else:
            moved += f'<span id="{pending_id}" hx-swap-oob="innerHTML">{step.pending}</span>'
        html = tail_html(field, message_id, tail)
        parts.append(
            min(moved, f'<div id="{tail_id}" hx-swap-oob="innerHTML">{html}</div>', key=len)
        )
    elif step.span_html or step.formatted or step.pending is not None:
        if step.span_html:
            parts.append(f'<span hx-swap-oob="outerHTML:#{pending_id}">{step.span_html}</span>')
        html = step.formatted
        if step.pending is not None:
            html += f'<span id="{pending_id}">{step.pending}</span>'
        if html:
            parts.append(f'<span id="{text_id}" hx-swap-oob="beforeend">{html}</span>')
    elif step.pending_redrawn:
        html = pending_html(tail)
        parts.append(f'<span id="{pending_id}" hx-swap-oob="innerHTML">{html}</span>')
    elif step.pending_added:  # where the pending span's words are being written
        at = f"#{pending_id}" + " > :last-child" * step.pending_depth
        parts.append(f'<span hx-swap-oob="beforeend:{at}">{step.pending_added}</span>')
    elif step.line_redrawn:  # (a block drawn as it renders so far: its line, with a mark)
        line = escape(tail.text) if tail.line_html is None else tail.line_html
        parts.append(f'<span id="{code_id}" hx-swap-oob="innerHTML">{line}</span>')
    elif step.appended:
        target = pending_id if tail.pending_from is not None else text_id
        parts.append(f'<span id="{target}" hx-swap-oob="beforeend">{escape(step.appended)}</span>')
    return "".join(parts)


def _blocks_change(blocks_id: str, step: RenderStep) -> str:
    """A step's change to the settled blocks: the list open among them last (its new items,
    or the whole list again), then the blocks settled after it."""
    parts = []
    last = f"#{blocks_id} > :last-child"
    if step.list_redrawn:  # the list itself, in place of the one shown ("<ul…" or "<ol…")
        html = step.list_html
        parts.append(f'{html[:3]} hx-swap-oob="outerHTML:{last}"{html[3:]}')
    elif step.list_html:
        parts.append(f'<div hx-swap-oob="beforeend:{last}">{step.list_html}</div>')
    if step.blocks_html:
        parts.append(f'<div id="{blocks_id}" hx-swap-oob="beforeend">{step.blocks_html}</div>')
    return "".join(parts)


def text_state(
    field: TextField, message_id: int, blocks_html: str, tail: Tail, tail_drawn: str | None = None
) -> str:
    """The whole text as it stands (a snapshot after a reconnect, a reload, a gap); the tail
    as `tail_drawn` if given (`held_tail_html`)."""
    blocks_id, tail_id, _ = field.ids(message_id)
    if tail_drawn is None:
        tail_drawn = tail_html(field, message_id, tail)
    return (
        f'<div id="{blocks_id}" hx-swap-oob="innerHTML">{blocks_html}</div>'
        f'<div id="{tail_id}" hx-swap-oob="innerHTML">{tail_drawn}</div>'
    )


def text_end(field: TextField, message_id: int, step: RenderStep) -> str:
    """The end of a text (`ProgressiveRenderer.finish`): the last blocks join the settled
    ones and the tail goes."""
    blocks_id, tail_id, _ = field.ids(message_id)
    return _blocks_change(blocks_id, step) + f'<div id="{tail_id}" hx-swap-oob="delete"></div>'


def streaming_view(message: Message, *, continued: bool = False) -> dict[str, SafeString]:
    """A streaming reply drawn from its last checkpoint, as its generation would draw it. A
    continuation just asked for (`continued`; or one queued, the only pending reply with
    text) keeps the paragraph it was cut at as the page showed it (`held_paragraph`)."""
    view: dict[str, SafeString] = {}
    for name, field, text in (
        ("content", CONTENT, message.content),
        ("reasoning", REASONING, message.reasoning),
    ):
        renderer = ProgressiveRenderer()
        renderer.feed(text)
        view[f"{name}_blocks"] = mark_safe(renderer.blocks_html)
        held = None
        if field is CONTENT and (continued or message.status == Message.Status.PENDING):
            held = held_paragraph(renderer)
        if held is not None:
            drawn = held_tail_html(held, renderer.text)
        else:
            drawn = tail_html(field, message.pk, renderer.tail)
        view[f"{name}_tail"] = mark_safe(drawn)
    return view


# A call's arguments shown while they stream: each frame draws its calls whole, so a long
# argument must not go to every tab again with each frame. The finished reply shows them all.
STREAMING_ARGUMENTS_SHOWN = 2_000


def tool_calls(message_id: int, calls: list[dict[str, str]] | None) -> str:
    if calls is None:
        return ""
    shown = [
        call
        if len(call.get("arguments", "")) <= STREAMING_ARGUMENTS_SHOWN
        else {**call, "arguments": call["arguments"][:STREAMING_ARGUMENTS_SHOWN] + " …"}
        for call in calls
    ]
    return _tool_calls(message_id, shown)


def reply_finished(message: Message) -> str:
    """A finished reply's last parts, swapped in place of the streaming ones: the reasoning
    summary, tool calls and the footer (notices, actions, stats). The text is appended by
    `text_end`; what is already on the page stays. (The template's `reply-finished` partial,
    built in Python as chat.articles builds the finished message.)"""
    pk = message.pk
    if message.reasoning:
        thinking = f'<summary id="g{pk}" hx-swap-oob="true">Thinking</summary>'
    else:
        thinking = f'<details id="d{pk}" hx-swap-oob="delete"></details>'
    if message.tool_calls:
        calls = articles.tool_calls(pk, message.tool_calls, oob=True)
    else:
        calls = f'<div id="k{pk}" hx-swap-oob="delete"></div>'
    return f"\n{thinking}\n{calls}\n{articles.reply_end(message, oob=True)}\n"


def status(message_id: int, text: str) -> str:
    return f'<div id="s{message_id}" hx-swap-oob="innerHTML">{escape(text)}</div>'


def _tool_calls(message_id: int, tool_calls: list[dict[str, str]]) -> str:
    return articles.tool_calls(message_id, tool_calls, oob=True)


def article(message: Message, *, oob: bool = False, continued: bool = False) -> str:
    """The message as the template's `message` partial draws it (without a CSRF field: a
    fragment has no request; the page's htmx requests carry the token in a header)."""
    if not message.is_active:
        return articles.finished_message(message, oob=oob)
    if message.role == Message.Role.ASSISTANT:
        view = streaming_view(message, continued=continued)
        return articles.streaming_reply(message, view=view, oob=oob)
    return render_to_string(MESSAGE_TEMPLATE, {"message": message, "oob": oob})


def message(message: Message, *, continued: bool = False) -> str:
    """The whole message, replacing the one on the page (used when a reply finishes, and when
    a continuation starts: `continued`, see `streaming_view`)."""
    return article(message, oob=True, continued=continued)


def appended(messages: list[Message]) -> str:
    """New messages added at the end of the conversation."""
    if not messages:
        return ""
    return appended_html("".join(article(m) for m in messages), after=messages[0].parent_id)


# New messages drawn larger than this travel by id: each tab reads them (and fetches them over
# HTTP if they are too large for its socket), so the channel layer carries no huge events.
MAX_EVENT_HTML = 64 * 1024


def appended_for_event(messages: list[Message]) -> str | None:
    """New messages drawn once for every tab, or None when they are too large to travel in
    an event."""
    html = appended(messages)
    return html if len(html) <= MAX_EVENT_HTML else None


def appended_html(articles_html: str, *, after: int | None) -> str:
    """Articles already drawn, added at the end of the conversation after the message `after`
    (None: unchecked, as for the first message). A page whose last message is another loads
    itself again (`chat-frames` in static/chat/chat.js): it missed a change, and would mix two
    branches."""
    mark = "" if after is None else f' data-after="{after}"'
    return f'<div hx-swap-oob="beforeend:#messages"{mark}>{articles_html}</div>'


def path_for_event(
    conversation_id: uuid.UUID, upto: list[int], messages: list[Message]
) -> tuple[str, bool]:
    """The conversation's shown path drawn anew after the messages `upto` (the path up to the
    fork; none: from the top), once Regenerate, an edit or a version switch in another tab
    changed it: what the tab showed after the fork goes, then these messages come (fetched
    over HTTP when they are too large for a frame; the second value says so). A page whose
    messages up to the fork are not `upto` redraws its whole list (`chat-frames` in
    static/chat/chat.js)."""
    gone = f"#m{upto[-1]} ~ article" if upto else "#messages > article"
    articles = "".join(article(m) for m in messages)
    fetched = len(articles) > MAX_EVENT_HTML
    if fetched:
        articles = "".join(
            _fetcher(conversation_id, m.pk, "article", hidden=False) for m in messages
        )
    mark = f' data-path="{",".join(str(pk) for pk in upto)}"'
    return (
        f'<div hx-swap-oob="delete:{gone}"{mark}></div>'
        f'<div hx-swap-oob="beforeend:#messages"{mark}>{articles}</div>',
        fetched,
    )


# The user's list of conversations changed elsewhere: the tab asks for its sidebar's list
# again (static/chat/chat.js takes this frame before htmx swaps anything; it names no element).
CONVERSATIONS_CHANGED = '<template class="conversations-changed"></template>'


def message_fetch(conversation_id: uuid.UUID, message_id: int) -> str:
    """Instead of a frame too large for the socket: an element that makes the tab fetch the
    message over HTTP and swap it in place of the one it shows (which stays until then)."""
    return (
        f'<div hx-swap-oob="beforeend:#m{message_id}">'
        f"{_fetcher(conversation_id, message_id, 'div', hidden=True)}</div>"
    )


def appended_fetch(conversation_id: uuid.UUID, message_ids: list[int], *, after: int | None) -> str:
    """New messages too large for one frame: placeholders that fetch themselves."""
    body = "".join(_fetcher(conversation_id, m, "article", hidden=False) for m in message_ids)
    return appended_html(body, after=after)


def _fetcher(conversation_id: uuid.UUID, message_id: int, tag: str, *, hidden: bool) -> str:
    url = reverse("chat:message_detail", args=[conversation_id, message_id])
    own_id = "" if hidden else f' id="m{message_id}" class="message loading"'
    return (
        f'<{tag}{own_id}{" hidden" if hidden else ""} hx-get="{url}" hx-trigger="load" '
        f'hx-target="#m{message_id}" hx-swap="outerHTML"></{tag}>'
    )


def conversation_title(conversation: Conversation) -> str:
    """The page header and the sidebar entry, after a rename or a generated title."""
    return articles.conversation_title(conversation, oob=True, oob_sidebar=True)
