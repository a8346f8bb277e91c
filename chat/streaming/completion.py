"""A chat completion as its stream builds it: what each event adds (`StreamUpdate`) and the
reply so far (`Completion`), from any of the chunk shapes real servers send. No Django here."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import UpstreamStreamError, error_message_from
from .sse import ServerSentEvent, SSEDecoder

# What Continue asks of the model, after the reply so far (chat.streaming.generation sends it;
# the demo model answers it).
CONTINUE_PROMPT = (
    "Continue exactly where your previous message stopped. Do not repeat anything, "
    "do not add any preamble."
)

logger = logging.getLogger(__name__)


@dataclass
class ToolCall:
    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""
    type: str = "function"

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


# The most a token count column holds on every database (a PositiveIntegerField).
MAX_TOKEN_COUNT = 2**31 - 1


def token_count(value: Any) -> int | None:
    """A token count the model reported, or None for what is not one: not a whole number,
    negative, or more than the column holds (a reply saved with it would fail to save)."""
    return value if type(value) is int and 0 <= value <= MAX_TOKEN_COUNT else None


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
    # Characters of content, reasoning, refusal and tool calls' arguments so far: a size check
    # per event must not join the whole reply each time.
    size: int = 0

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
            payload = _json_loads(data)
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
        # Usage comes in one or two chunks of a reply; the others are not searched for it (a
        # key of a JSON object cannot hold the word unless the text does, or escapes it).
        return self._feed_chunk(payload, usage="usage" in data or "\\u" in data)

    def _feed_chunk(self, chunk: dict[str, Any], *, usage: bool = True) -> StreamUpdate:
        update = StreamUpdate()
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self.model = chunk["model"]
        if usage:
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
            if usage:
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

    def _text(self, value: Any, parts: list[str]) -> str:
        if isinstance(value, str) and value:
            parts.append(value)
            self.size += len(value)
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
            prompt = token_count(usage.get("prompt_tokens", usage.get("input_tokens")))
            completion = token_count(usage.get("completion_tokens", usage.get("output_tokens")))
            if prompt is not None or completion is not None:
                self.usage = Usage(prompt_tokens=prompt, completion_tokens=completion)

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
                self.size += len(arguments)  # the size limit counts what a call streams too
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


def _json_loads(data: str) -> Any:
    """orjson, several times faster than json on these small chunks; json for what orjson
    refuses and json takes (NaN, integers past 64 bits, lone surrogates), so nothing parses
    differently. A lone surrogate (half of a character, escaped: "\\ud83d") becomes U+FFFD:
    no text with one can be encoded, so it could be neither sent to a page nor saved."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return _whole_characters(json.loads(data))


def _whole_characters(value: Any) -> Any:
    if isinstance(value, str):
        if _SURROGATE.search(value) is None:
            return value
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_whole_characters(item) for item in value]
    if isinstance(value, dict):
        return {_whole_characters(k): _whole_characters(v) for k, v in value.items()}
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


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
