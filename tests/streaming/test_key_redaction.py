"""No piece of the API key reaches an error message, wherever the upstream echoes it.

Redacting after a cut would let a key split by the cut through in part; this puts the key at
every offset of a long error text, in every shape of error the stream client reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from chat.streaming.client import (
    MAX_ERROR_MESSAGE_LENGTH,
    ChatCompletionsClient,
    Retrying,
    RetryPolicy,
)
from chat.streaming.errors import UpstreamError

KEY = "sk-proj-Q7vLm2XcR9tKpZ4wYb8NhJd3Fs6GaE1u"
FILLER = "."  # no piece of the key can come from it
LONGEST = MAX_ERROR_MESSAGE_LENGTH + 200
OFFSETS = range(0, LONGEST + 1)


def key_pieces_in(text: str) -> list[str]:
    """Every 6-character piece of the key found in `text` (any longer piece contains one)."""
    return [KEY[i : i + 6] for i in range(len(KEY) - 5) if KEY[i : i + 6] in text]


def text_with_key_at(offset: int) -> str:
    return FILLER * offset + KEY + FILLER * (LONGEST - offset)


def sse(payload: str, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


# Each shape turns an error text into an upstream response the client must report as an error.
HTTP_SHAPES: dict[str, Callable[[str], httpx.Response]] = {
    "plain text body": lambda text: httpx.Response(400, text=text),
    "error.message": lambda text: httpx.Response(400, json={"error": {"message": text}}),
    "error as a string": lambda text: httpx.Response(400, json={"error": text}),
    "error without a message": lambda text: httpx.Response(400, json={"error": {"code": text}}),
    "error.metadata.raw": lambda text: httpx.Response(
        400, json={"error": {"metadata": {"raw": text}}}
    ),
    "detail": lambda text: httpx.Response(422, json={"detail": text}),
    "a list of errors": lambda text: httpx.Response(400, json=[{"error": {"message": text}}]),
}
SSE_SHAPES: dict[str, Callable[[str], bytes]] = {
    "error event with a message": lambda text: sse(json.dumps({"error": {"message": text}})),
    "error event without a message": lambda text: sse(json.dumps({"error": {"type": text}})),
    "error event as plain text": lambda text: sse(text, event="error"),
    "finish_reason error": lambda text: sse(
        json.dumps(
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "error", "error": text}]}
        )
    ),
}


def shapes(table: dict[str, object]) -> list[str]:
    return list(table)


async def error_for(
    response: httpx.Response, *, retries: int = 0
) -> tuple[UpstreamError, list[Retrying]]:
    def handler(request: httpx.Request) -> httpx.Response:
        return response

    async def sleep(seconds: float) -> None:
        pass

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://upstream/v1/")
    client = ChatCompletionsClient(
        http, api_key=KEY, retry=RetryPolicy(max_retries=retries), sleep=sleep
    )
    notices: list[Retrying] = []
    try:
        async for update in client.stream({"model": "m", "messages": []}):
            if isinstance(update, Retrying):
                notices.append(update)
    except UpstreamError as exc:
        return exc, notices
    finally:
        await http.aclose()
    raise AssertionError("the upstream's error was not reported")


def leaks(error: UpstreamError, notices: list[Retrying]) -> list[str]:
    texts = [error.message, str(error), *(n.reason for n in notices)]
    texts.append(getattr(error, "upstream_message", ""))
    return key_pieces_in("\n".join(texts))


@pytest.mark.parametrize("shape", shapes(HTTP_SHAPES))
async def test_no_piece_of_the_key_in_an_http_error_at_any_offset(shape: str):
    leaked = {}
    for offset in OFFSETS:
        error, notices = await error_for(HTTP_SHAPES[shape](text_with_key_at(offset)))
        if pieces := leaks(error, notices):
            leaked[offset] = pieces
    assert not leaked, f"key pieces leaked at offsets {sorted(leaked)[:5]}…: {leaked}"


@pytest.mark.parametrize("shape", shapes(SSE_SHAPES))
async def test_no_piece_of_the_key_in_a_stream_error_at_any_offset(shape: str):
    leaked = {}
    for offset in OFFSETS:
        body = SSE_SHAPES[shape](text_with_key_at(offset))
        response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
        error, notices = await error_for(response)
        if pieces := leaks(error, notices):
            leaked[offset] = pieces
    assert not leaked, f"key pieces leaked at offsets {sorted(leaked)[:5]}…: {leaked}"


async def test_no_piece_of_the_key_in_the_retry_notices():
    for offset in range(0, LONGEST + 1, 7):
        response = httpx.Response(503, text=text_with_key_at(offset))
        error, notices = await error_for(response, retries=2)
        assert len(notices) == 4  # two retries, each said before its wait and as it begins
        assert not leaks(error, notices), offset


async def test_the_message_is_still_cut_to_its_limit():
    """The redaction must not cost the length limit."""
    error, _ = await error_for(httpx.Response(400, text=text_with_key_at(10)))
    assert "[redacted]" in error.message
    assert len(error.message) <= MAX_ERROR_MESSAGE_LENGTH + 1
