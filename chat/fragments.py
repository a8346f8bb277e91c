"""HTML fragments that the WebSocket sends: htmx out-of-band swaps keyed by element id.

Element ids of a reply with primary key N: `mN` the whole message, `cN` its text, `rN` its
reasoning, `kN` its tool calls, `sN` its status line. Deltas are tiny (`beforeend` appends of
escaped text), so the framing costs a few dozen bytes per frame.
"""

from __future__ import annotations

from django.template.loader import render_to_string
from django.utils.html import escape

from .models import Conversation, Message

MESSAGE_TEMPLATE = "chat/conversation.html#message"
TOOL_CALLS_TEMPLATE = "chat/conversation.html#tool-calls"
TITLE_TEMPLATE = "chat/conversation.html#title"


def delta(
    message_id: int, content: str, reasoning: str, tool_calls: list[dict[str, str]] | None
) -> str:
    parts = []
    if reasoning:
        parts.append(f'<span id="r{message_id}" hx-swap-oob="beforeend">{escape(reasoning)}</span>')
    if content:
        parts.append(f'<span id="c{message_id}" hx-swap-oob="beforeend">{escape(content)}</span>')
    if tool_calls is not None:
        parts.append(_tool_calls(message_id, tool_calls))
    return "".join(parts)


def snapshot(
    message_id: int, content: str, reasoning: str, tool_calls: list[dict[str, str]]
) -> str:
    return (
        f'<div id="r{message_id}" hx-swap-oob="innerHTML">{escape(reasoning)}</div>'
        f'<div id="c{message_id}" hx-swap-oob="innerHTML">{escape(content)}</div>'
        f'<div id="s{message_id}" hx-swap-oob="innerHTML"></div>'
        + _tool_calls(message_id, tool_calls)
    )


def status(message_id: int, text: str) -> str:
    return f'<div id="s{message_id}" hx-swap-oob="innerHTML">{escape(text)}</div>'


def _tool_calls(message_id: int, tool_calls: list[dict[str, str]]) -> str:
    return render_to_string(
        TOOL_CALLS_TEMPLATE, {"message_id": message_id, "tool_calls": tool_calls, "oob": True}
    )


def message(message: Message) -> str:
    """The whole message, replacing the one on the page (used when a reply finishes)."""
    return render_to_string(MESSAGE_TEMPLATE, {"message": message, "oob": True})


def appended(messages: list[Message]) -> str:
    """New messages added at the end of the conversation."""
    if not messages:
        return ""
    body = "".join(render_to_string(MESSAGE_TEMPLATE, {"message": m}) for m in messages)
    return f'<div hx-swap-oob="beforeend:#messages">{body}</div>'


def conversation_title(conversation: Conversation) -> str:
    """The page header and the sidebar entry, after a rename or a generated title."""
    return render_to_string(
        TITLE_TEMPLATE, {"conversation": conversation, "oob": True, "oob_sidebar": True}
    )
