"""The stream client: sends an OpenAI-compatible `/chat/completions` request with `stream: true`
and turns the Server-Sent Events it gets back into typed updates, with the policy around it
(auth, timeouts, retries). No Django here.

It raises the errors of `errors` (their tree opens that module), and retries the retryable
ones only before the first delta.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from .completion import Completion, StreamUpdate
from .errors import (
    UpstreamConnectionError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamTimeout,
    error_message_from,
)
from .sse import SSEDecoder
from .transport import body_reader

logger = logging.getLogger(__name__)

DEFAULT_MAX_RETRIES = 3
DEFAULT_RETRY_BASE_DELAY = 0.5
DEFAULT_RETRY_MAX_DELAY = 20.0
MAX_ERROR_BODY_BYTES = 64 * 1024
MAX_ERROR_MESSAGE_LENGTH = 1000


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = DEFAULT_MAX_RETRIES
    base_delay: float = DEFAULT_RETRY_BASE_DELAY
    max_delay: float = DEFAULT_RETRY_MAX_DELAY

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter; a server's Retry-After wins, within the cap."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


@dataclass(frozen=True)
class Retrying:
    """Yielded before waiting to try again, so the page can say so; and again, `now`, as the
    wait ends and the attempt begins (a slow first token after it is no wait of `delay`)."""

    attempt: int
    delay: float
    reason: str
    now: bool = False


@dataclass(frozen=True)
class StreamTimeouts:
    connect: float = 10.0
    idle: float = 60.0
    total: float = 600.0


class ChatCompletionsClient:
    """Policy (auth, timeouts, retries) around one shared `httpx.AsyncClient`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_key: str = "",
        retry: RetryPolicy | None = None,
        timeouts: StreamTimeouts | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._http = http
        self._api_key = api_key
        self._retry = retry or RetryPolicy()
        self._timeouts = timeouts or StreamTimeouts()
        self._sleep = sleep

    def stream(self, body: dict[str, Any]) -> CompletionStream:
        return CompletionStream(self, {**body, "stream": True})

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _redact(self, error: UpstreamError) -> UpstreamError:
        """Servers sometimes echo the key in an error; it must never reach a page or a log."""
        if self._api_key and len(self._api_key) >= 8:
            for name in ("message", "upstream_message"):
                if isinstance(getattr(error, name, None), str):
                    setattr(error, name, getattr(error, name).replace(self._api_key, "[redacted]"))
            error.args = (error.message,)
        if len(error.message) > MAX_ERROR_MESSAGE_LENGTH:
            error.message = error.message[:MAX_ERROR_MESSAGE_LENGTH] + "…"
            error.args = (error.message,)
        return error

    def _timeout(self) -> httpx.Timeout:
        t = self._timeouts
        return httpx.Timeout(connect=t.connect, read=t.idle, write=t.connect, pool=t.connect)


class CompletionStream:
    """One streamed reply: iterate it for updates (and `Retrying` notices); `completion` holds
    the accumulated reply. Leaving the iteration early closes the upstream connection.

    The total deadline bounds retries here; the caller enforces it around its whole loop
    (a timeout scope must not span a `yield` of an async generator).
    """

    def __init__(self, client: ChatCompletionsClient, body: dict[str, Any]) -> None:
        self._client = client
        self._body = body
        self.completion = Completion()
        self.attempts = 0
        # The model server took the request (an answer under 400): from then on it may bill
        # for it, whether or not its usage comes.
        self.accepted = False

    async def __aiter__(self) -> AsyncIterator[StreamUpdate | Retrying]:
        client = self._client
        deadline = time.monotonic() + client._timeouts.total
        attempt = 0
        while True:
            self.completion = Completion()
            self.attempts = attempt + 1
            delivered = False
            try:
                async for update in self._attempt():
                    delivered = True
                    yield update
                return
            except UpstreamError as exc:
                error = client._redact(exc)
            if delivered or not error.retryable or attempt >= client._retry.max_retries:
                raise error
            retry_after = error.retry_after if isinstance(error, UpstreamHTTPError) else None
            delay = client._retry.delay(attempt, retry_after)
            if time.monotonic() + delay >= deadline:
                raise error
            attempt += 1
            logger.info("upstream attempt %d failed (%s); retrying in %.2fs", attempt, error, delay)
            yield Retrying(attempt=attempt, delay=delay, reason=error.message)
            await client._sleep(delay)
            yield Retrying(attempt=attempt, delay=0.0, reason=error.message, now=True)

    async def _attempt(self) -> AsyncIterator[StreamUpdate]:
        client = self._client
        completion = self.completion
        try:
            async with client._http.stream(
                "POST",
                "chat/completions",
                json=self._body,
                headers=client._headers(),
                timeout=client._timeout(),
            ) as response:
                if response.status_code >= 400:
                    raise await _http_error(response)
                self.accepted = True
                decoder = SSEDecoder()
                read = body_reader(response)
                while piece := await read():
                    for event in decoder.feed(piece):
                        update = completion.feed(event)
                        if update:
                            yield update
                        if completion.done:
                            return
                for event in decoder.close():
                    update = completion.feed(event)
                    if update:
                        yield update
                    if completion.done:
                        return
        except httpx.TransportError as exc:
            if completion.ended:
                # The reply was over (its finish reason came): a connection that then went
                # quiet without [DONE], or closed untidily, loses nothing.
                return
            if isinstance(exc, httpx.TimeoutException):
                raise UpstreamTimeout(_timeout_message(exc, client._timeouts)) from None
            if isinstance(exc, httpx.ConnectError):
                raise UpstreamConnectionError("Could not connect to the model server.") from None
            raise UpstreamConnectionError(
                f"Lost the connection to the model server ({type(exc).__name__})."
            ) from None


def _timeout_message(exc: httpx.TimeoutException, timeouts: StreamTimeouts) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return f"Could not connect to the model server within {timeouts.connect:g} seconds."
    if isinstance(exc, httpx.ReadTimeout):
        return f"The model server sent nothing for {timeouts.idle:g} seconds."
    return "The model server timed out."


async def _http_error(response: httpx.Response) -> UpstreamHTTPError:
    body = b""
    async for piece in response.aiter_bytes():
        body += piece
        if len(body) >= MAX_ERROR_BODY_BYTES:
            break
    message = ""
    try:
        payload = json.loads(body)
        if isinstance(payload, dict):
            message = error_message_from(payload) or ""
        if not message and isinstance(payload, list) and payload and isinstance(payload[0], dict):
            message = error_message_from(payload[0]) or ""  # Google-style [{"error": ...}]
    except ValueError:
        # Not truncated here: the key is redacted first (a cut could split it), then shortened.
        text = body.decode("utf-8", "replace").strip()
        # A proxy's error page (nginx's 502, a traceback page) says nothing a reader can use:
        # its status and reason phrase say it.
        if not _html(response, text):
            message = text
    return UpstreamHTTPError(
        response.status_code,
        message or response.reason_phrase or "error",
        retry_after=_retry_after(response.headers),
    )


def _html(response: httpx.Response, text: str) -> bool:
    return "html" in response.headers.get("content-type", "").lower() or bool(_PAGE.match(text))


_PAGE = re.compile(r"<(?:!doctype\s+html|html|head|body)\b", re.IGNORECASE)


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    if value := headers.get("retry-after-ms"):
        try:
            return float(value) / 1000.0
        except ValueError:
            pass
    if value := headers.get("retry-after"):
        try:
            return float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            return max(0.0, when.timestamp() - time.time())
    return None
