"""The stream client: sends an OpenAI-compatible `/chat/completions` request with `stream: true`
and turns the Server-Sent Events it gets back into typed updates. No Django here.

Errors raised while streaming:

    UpstreamError                   anything that kept the upstream from finishing a reply
    ├── UpstreamHTTPError           the upstream answered with an HTTP error status
    ├── UpstreamConnectionError     could not connect, or the connection broke
    ├── UpstreamTimeout             connect timeout, idle gap between chunks, or total deadline
    └── UpstreamStreamError         the stream itself carried an error event

Each carries `retryable`; the client retries only those, and only before the first delta.
"""

from __future__ import annotations

import asyncio
import codecs
import email.utils
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

logger = logging.getLogger(__name__)

DEFAULT_MAX_RETRIES = 3
DEFAULT_RETRY_BASE_DELAY = 0.5
DEFAULT_RETRY_MAX_DELAY = 20.0
RETRYABLE_STATUS_CODES = frozenset({408, 409, 429})
MAX_ERROR_BODY_BYTES = 64 * 1024
MAX_ERROR_MESSAGE_LENGTH = 1000


# --- Errors --------------------------------------------------------------------------------


class UpstreamError(Exception):
    """The upstream did not finish a reply. `message` is safe to show to the user."""

    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UpstreamHTTPError(UpstreamError):
    def __init__(self, status_code: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.upstream_message = message
        self.retry_after = retry_after
        self.retryable = status_code in RETRYABLE_STATUS_CODES or status_code >= 500


class UpstreamConnectionError(UpstreamError):
    retryable = True


class UpstreamTimeout(UpstreamError):
    retryable = True


class UpstreamStreamError(UpstreamError):
    def __init__(self, message: str, code: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code


# --- Server-Sent Events (WHATWG "event stream interpretation") ------------------------------


@dataclass(frozen=True)
class ServerSentEvent:
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


# --- Chat completion chunks ----------------------------------------------------------------


@dataclass
class ToolCall:
    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""
    type: str = "function"

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class StreamUpdate:
    """What one event added to the reply: text to show now."""

    content: str = ""
    reasoning: str = ""
    refusal: str = ""
    tool_calls_changed: bool = False

    def __bool__(self) -> bool:
        return bool(self.content or self.reasoning or self.refusal or self.tool_calls_changed)


@dataclass
class Completion:
    """The reply accumulated so far, and how the stream ended."""

    content_parts: list[str] = field(default_factory=list)
    reasoning_parts: list[str] = field(default_factory=list)
    refusal_parts: list[str] = field(default_factory=list)
    tool_calls: dict[int, ToolCall] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str = ""
    done: bool = False  # saw `data: [DONE]`

    @property
    def content(self) -> str:
        return "".join(self.content_parts)

    @property
    def reasoning(self) -> str:
        return "".join(self.reasoning_parts)

    @property
    def refusal(self) -> str:
        return "".join(self.refusal_parts)

    @property
    def ended(self) -> bool:
        """The upstream said the reply is over (as opposed to the connection just stopping)."""
        return self.done or self.finish_reason is not None

    def tool_call_list(self) -> list[dict[str, str]]:
        return [call.as_dict() for _, call in sorted(self.tool_calls.items())]

    def feed(self, event: ServerSentEvent) -> StreamUpdate:
        """Add one event's contribution. Raises UpstreamStreamError for an error event."""
        data = event.data.strip()
        if data == "[DONE]":
            self.done = True
            return StreamUpdate()
        try:
            payload = json.loads(data)
        except ValueError:
            if event.event == "error":
                raise UpstreamStreamError(data or "The model server reported an error.") from None
            logger.debug("ignoring a non-JSON event of %d bytes", len(data))
            return StreamUpdate()
        if not isinstance(payload, dict):
            if event.event == "error":
                text = payload if isinstance(payload, str) and payload else data
                raise UpstreamStreamError(text or "The model server reported an error.")
            return StreamUpdate()
        message = error_message_from(payload)
        if event.event == "error" or message is not None:
            error = payload.get("error")
            code = error.get("code") if isinstance(error, dict) else payload.get("code")
            if message is None and isinstance(payload.get("message"), str) and payload["message"]:
                message = payload["message"]  # an error event's own {code, message, type}
            raise UpstreamStreamError(message or data, code=code)
        return self._feed_chunk(payload)

    def _feed_chunk(self, chunk: dict[str, Any]) -> StreamUpdate:
        update = StreamUpdate()
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self.model = chunk["model"]
        self._take_usage(chunk)
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return update
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            # With n > 1 the reply is choice 0; a choice without index is taken by position.
            if choice.get("index", position) != 0:
                continue
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                # Legacy completion-style chunks carry the text directly.
                delta = {"content": choice["text"]} if isinstance(choice.get("text"), str) else {}
            if delta:  # most chunks carry one short string; an empty delta carries nothing
                self._take_delta(delta, update)
            finish_reason = choice.get("finish_reason")
            if isinstance(finish_reason, str) and finish_reason:
                if finish_reason == "error":
                    raise UpstreamStreamError(
                        error_message_from(choice)
                        or "The model server ended the reply with an error."
                    )
                self.finish_reason = finish_reason
            self._take_usage(choice)
        return update

    def _take_delta(self, delta: dict[str, Any], update: StreamUpdate) -> None:
        # Content is a string, or (Mistral's Magistral) a list of text and thinking parts.
        content = delta.get("content")
        text, thinking = (content, "") if isinstance(content, str) else _text_parts(content)
        if text:
            update.content += self._text(text, self.content_parts)
        if "refusal" in delta:
            update.refusal += self._text(_joined_text(delta["refusal"]), self.refusal_parts)
        reasoning = _joined_text(delta.get("reasoning_content")) or _joined_text(
            delta.get("reasoning")
        )
        if thinking or reasoning:
            update.reasoning += self._text(thinking + reasoning, self.reasoning_parts)
        fragments = delta.get("tool_calls")
        if isinstance(fragments, list) and fragments:
            update.tool_calls_changed = self._take_tool_calls(fragments)

    @staticmethod
    def _text(value: Any, parts: list[str]) -> str:
        if isinstance(value, str) and value:
            parts.append(value)
            return value
        return ""

    def _take_usage(self, holder: dict[str, Any]) -> None:
        usage = holder.get("usage")
        if not isinstance(usage, dict):
            # Some servers put usage under a vendor key (Groq: x_groq.usage).
            for key, value in holder.items():
                if key.startswith("x_") and isinstance(value, dict):
                    if isinstance(value.get("usage"), dict):
                        usage = value["usage"]
                        break
        if isinstance(usage, dict):
            prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
            completion = usage.get("completion_tokens", usage.get("output_tokens"))
            if isinstance(prompt, int) or isinstance(completion, int):
                self.usage = Usage(
                    prompt_tokens=prompt if isinstance(prompt, int) else None,
                    completion_tokens=completion if isinstance(completion, int) else None,
                )

    def _take_tool_calls(self, fragments: list[Any]) -> bool:
        changed = False
        for fragment in fragments:
            if not isinstance(fragment, dict):
                continue
            raw_function, raw_id = fragment.get("function"), fragment.get("id")
            function: dict[str, Any] = raw_function if isinstance(raw_function, dict) else {}
            call_id = raw_id if isinstance(raw_id, str) else ""
            name = function.get("name")
            named = isinstance(name, str) and bool(name)
            call = self._tool_call_for(fragment.get("index"), call_id, named)
            if call_id and not call.id:
                call.id = call_id
            if isinstance(name, str) and name and not call.name:
                call.name = name
            arguments = function.get("arguments")
            if arguments is not None and not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            if arguments:
                call.arguments += arguments
            if isinstance(fragment.get("type"), str) and fragment["type"]:
                call.type = fragment["type"]
            changed = True
        return changed

    def _tool_call_for(self, index: Any, call_id: str, named: bool) -> ToolCall:
        """The call a fragment belongs to. `tool_calls` is keyed by arrival slot; each call keeps
        the upstream index it was announced with."""
        known = [call for call in self.tool_calls.values() if call_id and call.id == call_id]
        if known:
            return known[0]
        if isinstance(index, int) and not isinstance(index, bool):
            same = [c for _, c in sorted(self.tool_calls.items()) if c.index == index]
            # A fragment naming a function under a different id reuses an index that is taken
            # (Ollama sends every call with index 0); other id changes continue the call.
            if same and not (named and call_id and same[-1].id and same[-1].id != call_id):
                return same[-1]
            slot = index if index not in self.tool_calls else max(self.tool_calls) + 1
            return self.tool_calls.setdefault(slot, ToolCall(index=index))
        # No index: a new id, or a second name without one, starts a new call; anything else
        # continues the latest call.
        latest = self.tool_calls[max(self.tool_calls)] if self.tool_calls else None
        if latest is None or call_id or (named and latest.name):
            slot = max(self.tool_calls, default=-1) + 1
            return self.tool_calls.setdefault(slot, ToolCall(index=slot))
        return latest


def _joined_text(value: Any) -> str:
    """Text and thinking of a content value run together (None, the usual case, is "")."""
    if value is None:
        return ""
    return value if isinstance(value, str) else "".join(_text_parts(value))


def _text_parts(value: Any) -> tuple[str, str]:
    """(text, thinking) of a content value: a string, a `{"text": ...}` object, or a list of
    parts such as `{"type": "text", "text": ...}` and `{"type": "thinking", "thinking": [...]}`."""
    if isinstance(value, str):
        return value, ""
    if isinstance(value, dict):
        if value.get("type") == "thinking":
            return "", "".join(_text_parts(value.get("thinking")))
        text = value.get("text")
        return (text, "") if isinstance(text, str) else ("", "")
    if isinstance(value, list):
        parts = [_text_parts(item) for item in value]
        return "".join(p[0] for p in parts), "".join(p[1] for p in parts)
    return "", ""


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


def parse_stream(pieces: Iterable[bytes]) -> Completion:
    """Parse a whole stream given as byte pieces, exactly as the network path does."""
    completion = Completion()
    decoder = SSEDecoder()
    for piece in pieces:
        for event in decoder.feed(piece):
            completion.feed(event)
            if completion.done:
                return completion
    for event in decoder.close():
        completion.feed(event)
        if completion.done:
            break
    return completion


# --- The HTTP side ---------------------------------------------------------------------------


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
    """Yielded before waiting to try again, so the page can say so."""

    attempt: int
    delay: float
    reason: str


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
                decoder = SSEDecoder()
                async for piece in response.aiter_bytes():
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
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(_timeout_message(exc, client._timeouts)) from None
        except httpx.TransportError as exc:
            if completion.ended:
                return  # the reply was over; a connection closed untidily after it loses nothing
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
        message = body.decode("utf-8", "replace").strip()
    return UpstreamHTTPError(
        response.status_code,
        message or response.reason_phrase or "error",
        retry_after=_retry_after(response.headers),
    )


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
