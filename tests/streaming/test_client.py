"""The stream client over HTTP: the reference example, retries, errors and timeouts.

httpx's MockTransport stands in for the network here, and the shared fake upstream where only a
real socket will do; the end-to-end tests run the whole server against it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from chat.streaming.client import ChatCompletionsClient, Retrying, RetryPolicy, StreamTimeouts
from chat.streaming.completion import StreamUpdate, parse_stream
from chat.streaming.errors import (
    UpstreamConnectionError,
    UpstreamHTTPError,
    UpstreamStreamError,
    UpstreamTimeout,
    sentence,
)
from tests.fake_upstream import FakeRequest, FakeUpstream, chunk, sse

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "streaming-api.txt"
REFERENCE_STREAM = "".join(
    line + "\n\n"
    for line in [
        'data: {"id":"chatcmpl-abc","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}',
        *[
            f'data: {{"id":"chatcmpl-abc","object":"chat.completion.chunk","choices":[{{"index":0,"delta":{{"content":{json.dumps(t)}}},"finish_reason":null}}]}}'
            for t in ["The", " capital", " of", " France", " is", " Paris."]
        ],
        'data: {"id":"chatcmpl-abc","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}',
        "data: [DONE]",
    ]
).encode()


def test_the_reference_example_is_what_the_reference_document_shows():
    if REFERENCE.exists():
        text = REFERENCE.read_text()
        for line in REFERENCE_STREAM.decode().split("\n\n"):
            if line:
                assert line in text


@pytest.mark.parametrize("seed", range(25))
def test_reference_example_split_anywhere_gives_the_same_reply(seed: int):
    rng = random.Random(seed)
    data = REFERENCE_STREAM
    cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 60)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    completion = parse_stream(pieces)
    assert completion.content == "The capital of France is Paris."
    assert completion.finish_reason == "stop"
    assert completion.done


def client_for(handler, **kwargs) -> ChatCompletionsClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://upstream/v1/")
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    client = ChatCompletionsClient(http, api_key="sk-secret-key-123", sleep=sleep, **kwargs)
    client.slept = slept  # type: ignore[attr-defined]
    return client


def sse_response(body: bytes = REFERENCE_STREAM, status: int = 200) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "text/event-stream"}, content=body)


async def collect(client: ChatCompletionsClient):
    stream = client.stream({"model": "m", "messages": []})
    updates = [u async for u in stream]
    return stream, updates


async def test_request_carries_stream_flag_and_key():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return sse_response()

    stream, updates = await collect(client_for(handler))
    assert stream.completion.content == "The capital of France is Paris."
    assert next(u.content for u in updates if isinstance(u, StreamUpdate)) == "The"
    assert json.loads(seen[0].content)["stream"] is True
    assert seen[0].url.path == "/v1/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer sk-secret-key-123"


async def test_429_is_retried_honouring_retry_after_then_succeeds():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(
                429,
                headers={"retry-after-ms": "1500"},
                json={"error": {"message": "Rate limit reached"}},
            )
        return sse_response()

    client = client_for(handler)
    stream, updates = await collect(client)
    retries = [u for u in updates if isinstance(u, Retrying)]
    # Said before the wait, and as the next attempt begins
    assert [(u.attempt, u.delay, u.now) for u in retries] == [(1, 1.5, False), (1, 0.0, True)]
    assert all("Rate limit reached" in u.reason for u in retries)
    assert client.slept == [1.5]  # type: ignore[attr-defined]
    assert stream.completion.content == "The capital of France is Paris."


async def test_retry_after_is_capped():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"retry-after": "3600"}, text="busy")

    client = client_for(handler, retry=RetryPolicy(max_retries=2, max_delay=5))
    with pytest.raises(UpstreamHTTPError) as caught:
        await collect(client)
    assert caught.value.status_code == 503
    assert client.slept == [5, 5]  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_not_retried_and_keep_the_upstreams_message(status: int):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, json={"error": {"message": f"bad thing {status}"}})

    with pytest.raises(UpstreamHTTPError) as caught:
        await collect(client_for(handler))
    assert len(calls) == 1
    assert f"bad thing {status}" in caught.value.message


async def test_the_api_key_is_redacted_from_upstream_errors():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"message": "Bad key sk-secret-key-123"}})

    with pytest.raises(UpstreamHTTPError) as caught:
        await collect(client_for(handler))
    assert "sk-secret-key-123" not in caught.value.message and "[redacted]" in caught.value.message
    assert "sk-secret-key-123" not in str(caught.value)


async def test_connection_errors_are_retried_with_backoff_then_reported():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    client = client_for(handler, retry=RetryPolicy(max_retries=3, base_delay=1, max_delay=100))
    with pytest.raises(UpstreamConnectionError):
        await collect(client)
    slept = client.slept  # type: ignore[attr-defined]
    assert len(slept) == 3
    assert all(0 <= s <= 2**i for i, s in enumerate(slept))  # full jitter within the envelope


async def test_an_error_after_the_first_delta_is_never_retried():
    calls = []

    async def body():
        yield b'data: {"choices":[{"index":0,"delta":{"content":"partial"}}]}\n\n'
        raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    stream = client_for(handler).stream({"model": "m", "messages": []})
    updates = []
    with pytest.raises(UpstreamConnectionError):
        async for update in stream:
            updates.append(update)
    assert len(calls) == 1
    assert stream.completion.content == "partial"


async def test_a_stream_that_just_ends_is_not_marked_ended():
    body = b'data: {"choices":[{"index":0,"delta":{"content":"cut"}}]}\n\n'
    stream, _ = await collect(client_for(lambda request: sse_response(body)))
    assert stream.completion.content == "cut"
    assert not stream.completion.ended


async def test_an_error_event_mid_stream_raises_with_its_message():
    body = (
        b'data: {"choices":[{"index":0,"delta":{"content":"some"}}]}\n\n'
        b'data: {"error": {"message": "The server had an error", "type": "server_error"}}\n\n'
    )
    stream = client_for(lambda request: sse_response(body)).stream({"model": "m", "messages": []})
    with pytest.raises(UpstreamStreamError, match="The server had an error"):
        async for _ in stream:
            pass
    assert stream.completion.content == "some"


async def test_an_idle_upstream_times_out(fake_upstream: FakeUpstream):
    # A real socket: MockTransport cannot make httpx's read timeout fire.
    async def plan(request: FakeRequest) -> web.StreamResponse:
        return await request.stream([sse(chunk("a")), b"data: [DONE]\n\n"], delay=5)

    fake_upstream.plan = plan
    async with httpx.AsyncClient(base_url=fake_upstream.base_url + "/") as http:
        client = ChatCompletionsClient(
            http, timeouts=StreamTimeouts(idle=0.3), retry=RetryPolicy(max_retries=0)
        )
        stream = client.stream({"model": "m", "messages": []})
        with pytest.raises(UpstreamTimeout, match=r"sent nothing for 0\.3 seconds"):
            async for _ in stream:
                pass
        assert stream.completion.content == "a"


async def test_a_connect_timeout_is_retried_then_reported_with_the_setting():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectTimeout("timed out")

    client = client_for(
        handler, timeouts=StreamTimeouts(connect=2.5), retry=RetryPolicy(max_retries=2)
    )
    with pytest.raises(UpstreamTimeout, match=r"connect to the model server within 2\.5 seconds"):
        await collect(client)
    assert len(calls) == 3


def test_a_retrys_reason_ends_as_a_sentence_before_the_notice_goes_on():
    assert sentence("HTTP 429: Rate limit reached") == "HTTP 429: Rate limit reached."
    assert sentence("Could not connect to the model server.") == (
        "Could not connect to the model server."
    )
    assert sentence("HTTP 503: a long message cut…") == "HTTP 503: a long message cut…"
