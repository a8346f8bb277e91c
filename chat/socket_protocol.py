"""What a tab may say on its WebSocket, and the close code for each way a message breaks the rules.

Messages refused:

    Refused               the socket is closed with `code`; nothing is logged beyond one line
    ├── TooBig            over MAX_MESSAGE_BYTES (1009, "message too big")
    ├── NotText           a binary frame (1003, "unsupported data")
    └── Malformed         not JSON, nested too deep, or not the shape below (4400)

A tab sends one kind of message, `{"resync": <message id>}`, to which htmx's `ws-send` adds
its `HEADERS`. The page never sends anything else, so anything else is a bug or a probe, and
the socket is closed rather than the message ignored: a client that keeps sending it learns
nothing, and the log gets one line instead of a traceback. No Django here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# The largest message a tab sends is a resync with htmx's headers (the page URL among them),
# well under 1 KB; the size is checked before anything is parsed.
MAX_MESSAGE_BYTES = 4096
MAX_MESSAGE_ID = 2**63 - 1  # a BigAutoField

CLOSE_TOO_BIG = 1009
CLOSE_NOT_TEXT = 1003
CLOSE_MALFORMED = 4400
# Not a message rule: the socket's session ended (a logout, a deactivation, an expiry). The
# page does not reconnect on it, as it does on 1006/1011/1012/1013.
CLOSE_SESSION_ENDED = 4401
# Nor this one: the user has CHAT_SOCKETS_PER_USER sockets open in this process already. The
# page says so and does not reconnect.
CLOSE_TOO_MANY_SOCKETS = 4429
# Nor this one: the conversation was deleted (in another tab, or by staff). The page says so.
CLOSE_CONVERSATION_DELETED = 4410


class Refused(Exception):
    """A client message the socket does not take; `code` is the WebSocket close code."""

    code = CLOSE_MALFORMED


class TooBig(Refused):
    code = CLOSE_TOO_BIG


class NotText(Refused):
    code = CLOSE_NOT_TEXT


class Malformed(Refused):
    code = CLOSE_MALFORMED


@dataclass(frozen=True)
class Resync:
    """Send this reply as it stands: a snapshot while it streams, the saved one after."""

    message_id: int

    @classmethod
    def from_value(cls, value: Any) -> Resync:
        # bool is an int in Python; a float or a string is not what the page sends.
        if type(value) is not int or not 0 < value <= MAX_MESSAGE_ID:
            raise Malformed("resync without a message id")
        return cls(value)


# Every message a tab may send, by its one key (besides htmx's HEADERS).
REQUESTS: dict[str, type[Resync]] = {"resync": Resync}


def parse(*, text_data: str | None, bytes_data: bytes | None) -> Resync:
    """The request in one client frame. Raises a `Refused` subclass for anything else."""
    if text_data is None:
        raise NotText("a binary frame")
    # A str has at most as many characters as its UTF-8 has bytes: the length alone rejects
    # a long message without encoding it.
    if len(text_data) > MAX_MESSAGE_BYTES or len(text_data.encode()) > MAX_MESSAGE_BYTES:
        raise TooBig(f"a message over {MAX_MESSAGE_BYTES} bytes")
    try:
        content = json.loads(text_data)
    except RecursionError:  # 4 KB of "[" nests deeper than the interpreter's stack
        raise Malformed("JSON nested too deep") from None
    except ValueError:
        raise Malformed("not JSON") from None
    return _request(content)


def _request(content: Any) -> Resync:
    if not isinstance(content, dict) or not isinstance(content.get("HEADERS", {}), dict):
        raise Malformed("not a JSON object")
    keys = set(content) - {"HEADERS"}
    if len(keys) != 1 or (key := keys.pop()) not in REQUESTS:
        raise Malformed("not a request the page sends")
    return REQUESTS[key].from_value(content[key])


_TAB_NAME = re.compile(r"[a-z0-9]{1,20}")


def tab_name(value: str | None) -> str:
    """A page's name for itself (chat.js: its socket's `?tab=` and its requests' X-Chat-Tab
    header), or "" for anything else."""
    return value if value and _TAB_NAME.fullmatch(value) else ""
