"""Server-Sent Events decoding (WHATWG "event stream interpretation"): bytes split anywhere
in, whole events out. No Django here."""

from __future__ import annotations

import codecs
from typing import NamedTuple


class ServerSentEvent(NamedTuple):
    # A tuple: one is made per event, and a frozen dataclass takes twice as long to make.
    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None


class SSEDecoder:
    """Incremental event-stream parser: feed it bytes split anywhere, get whole events.

    Follows the WHATWG rules (UTF-8 with a leading BOM dropped; LF, CRLF or CR line ends;
    comment lines; `field:value` with one optional space; multi-line data joined by LF), with
    one leniency real servers need: an event left without its blank line when the stream ends
    is still dispatched (many servers omit the newline after `data: [DONE]`), and one for old
    llama.cpp servers: a non-standard `error:` field line is taken as an `error` event.
    """

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_start = True
        # Text after the last line end, as the pieces it came in: joined once, when its line
        # ends, so a long line arriving in small reads costs time in proportion to its length.
        self._pending: list[str] = []
        self._pending_cr = False  # the last chunk ended with CR: a following LF belongs to it
        self._data: list[str] = []
        self._event = ""
        self._last_id = ""
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        return self._feed_text(self._text.decode(chunk))

    def close(self) -> list[ServerSentEvent]:
        """End of stream: a last line without a line end, and an undispatched event, count."""
        events = self._feed_text(self._text.decode(b"", final=True))
        if self._pending:
            line, self._pending = "".join(self._pending), []
            event = self._process_line(line)
            if event:
                events.append(event)
        event = self._dispatch()
        if event:
            events.append(event)
        return events

    def _feed_text(self, text: str) -> list[ServerSentEvent]:
        if self._at_start and text:
            self._at_start = False
            if text[0] == "\ufeff":
                text = text[1:]
        if not text:
            return []  # e.g. an empty piece: it must not forget a pending CR
        if self._pending_cr and text[0] == "\n":
            text = text[1:]
        self._pending_cr = False
        if not text:
            return []
        if "\r" in text:
            self._pending_cr = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        tail = lines.pop()
        if lines:
            if self._pending:
                self._pending.append(lines[0])
                lines[0] = "".join(self._pending)
                self._pending = []
            events = []
            for line in lines:
                event = self._process_line(line)
                if event:
                    events.append(event)
        else:
            events = []
        if tail:
            self._pending.append(tail)
        return events

    def _process_line(self, line: str) -> ServerSentEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self._retry = int(value)
        elif name == "error":
            # llama.cpp servers of 2025 sent `error: {...}` instead of `data:` lines.
            self._event = "error"
            self._data.append(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerSentEvent(
            data="\n".join(data), event=event or "message", id=self._last_id, retry=self._retry
        )
