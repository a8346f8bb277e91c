"""What can keep the upstream from finishing a reply, and the message of an error object in
whichever shape a server sends it. No Django here.

    UpstreamError                   anything that kept the upstream from finishing a reply
    ├── UpstreamHTTPError           the upstream answered with an HTTP error status
    ├── UpstreamConnectionError     could not connect, or the connection broke
    ├── UpstreamTimeout             connect timeout, idle gap between chunks, or total deadline
    └── UpstreamStreamError         the stream itself carried an error event

Each carries `retryable`; the client retries only those, and only before the first delta.
And `transient`: the refusal may pass (an overloaded server, a rate limit), so what it cut short
may be asked for again later (a Continue stays offered).
"""

from __future__ import annotations

import json
from typing import Any

RETRYABLE_STATUS_CODES = frozenset({408, 409, 429})
# A stream that ended as it should with nothing in it (no text, no thinking, no tool call)
EMPTY_REPLY = "The model sent an empty reply."
CONTENT_FILTERED = "The model server's content filter stopped the reply before it began."
SPENT_BEFORE_TEXT = "The model reached its token limit before writing anything."


def sentence(text: str) -> str:
    """`text` ending as a sentence does, for another to follow it ("HTTP 429: Slow down")."""
    return text if text.endswith((".", "!", "?", "…", "。")) else f"{text}."


class UpstreamError(Exception):
    """The upstream did not finish a reply. `message` is safe to show to the user."""

    retryable = False

    @property
    def transient(self) -> bool:
        return self.retryable

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UpstreamHTTPError(UpstreamError):
    def __init__(self, status_code: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.upstream_message = message
        self.retry_after = retry_after
        self.retryable = _may_pass(status_code)


class UpstreamConnectionError(UpstreamError):
    retryable = True


class UpstreamTimeout(UpstreamError):
    retryable = True


class UpstreamStreamError(UpstreamError):
    def __init__(self, message: str, code: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code

    @property
    def transient(self) -> bool:
        """An error event whose code is an HTTP status that may pass (429, 503, 529: some
        servers answer 200 and then send their overload as an event). Not retried by the
        client, as before: the event may come after text."""
        try:
            status = int(self.code) if self.code is not None else 0
        except (TypeError, ValueError):
            return False
        return _may_pass(status)


def _may_pass(status: int) -> bool:
    """An HTTP status that a later try may not meet: a timeout, a conflict, a rate limit, a
    server error or overload."""
    return status in RETRYABLE_STATUS_CODES or status >= 500


def error_message_from(payload: dict[str, Any]) -> str | None:
    """The human-readable message of an error object in any of the shapes servers send."""
    error = payload.get("error")
    if isinstance(error, dict):
        message = error.get("message") or error.get("msg") or error.get("detail")
        if isinstance(message, str) and message:
            return message
        metadata = error.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("raw"), str):
            return metadata["raw"]
        return json.dumps(error)  # the client redacts the key, then shortens it
    if isinstance(error, str) and error:
        return error
    if payload.get("object") == "error" or payload.get("type") == "error":
        message = payload.get("message") or payload.get("detail")
        return (
            message
            if isinstance(message, str) and message
            else "The model server reported an error."
        )
    if "choices" not in payload and isinstance(payload.get("detail"), str):
        return payload["detail"]
    return None
