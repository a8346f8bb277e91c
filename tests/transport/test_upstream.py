"""The network transport chosen in chat/streaming/upstream.py, against a real loopback server,
on each event loop a server process may run on (see conftest.py).

Each test builds the stream client exactly as a generation does (`chat_completions_client()` from
settings) and checks what the transport must honour: connect and idle timeouts, the caller's total
deadline, closing the upstream connection when the reply is abandoned, Retry-After, broken
connections reported as connection errors (not timeouts), the demo transport in demo mode, and
how a body is read: straight from aiohttp's reader, or through httpx where it must be decoded.
"""

from __future__ import annotations

import asyncio
import socket
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from aiohttp import web

from chat.streaming.client import ChatCompletionsClient, Retrying
from chat.streaming.completion import StreamUpdate
from chat.streaming.errors import UpstreamConnectionError, UpstreamHTTPError, UpstreamTimeout
from chat.streaming.transport import body_reader
from chat.streaming.upstream import chat_completions_client, close_http_clients, http_client
from tests.fake_upstream import FakeRequest, FakeUpstream, reply_events

BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def upstream_client(
    settings, fake_upstream: FakeUpstream
) -> AsyncIterator[Callable[..., ChatCompletionsClient]]:
    """`upstream_client(**settings)`: the app's stream client aimed at the fake upstream."""

    def make(**overrides: object) -> ChatCompletionsClient:
        settings.CHAT_DEMO_MODE = False
        settings.OPENAI_BASE_URL = fake_upstream.base_url
        settings.OPENAI_API_KEY = "sk-transport-test"
        settings.CHAT_CONNECT_TIMEOUT = 5.0
        settings.CHAT_IDLE_TIMEOUT = 5.0
        settings.CHAT_MAX_RETRIES = 0
        for name, value in overrides.items():
            setattr(settings, name, value)
        return chat_completions_client()

    yield make
    await close_http_clients()


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    """A loopback port whose accept queue is full, so a new connection attempt just hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(2):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.05)
    yield port
    for sock in [*fillers, server]:
        sock.close()


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def slow_reply(
    request: FakeRequest, *, pause_before: int, pause: float
) -> web.StreamResponse:
    """A normal reply that stops for `pause` seconds before piece `pause_before`."""

    async def before_piece(i: int) -> None:
        if i == pause_before:
            await asyncio.sleep(pause)

    return await request.stream(reply_events(["Hello", ",", " world"]), before_piece=before_piece)


async def test_a_reply_streams_through_the_transport(upstream_client, fake_upstream):
    stream = upstream_client().stream(BODY)
    updates = [u async for u in stream]
    assert stream.completion.content == "Hello, world!"
    texts = [u.content for u in updates if isinstance(u, StreamUpdate)]
    assert texts == ["Hello", ",", " world", "!"]
    assert fake_upstream.requests[0].headers["Authorization"] == "Bearer sk-transport-test"
    assert fake_upstream.requests[0].body["stream"] is True


def gzipped(pieces: list[bytes]) -> list[bytes]:
    """The pieces as one gzip stream, flushed after each, so that each still arrives alone."""
    compressor = zlib.compressobj(wbits=31)
    out = [compressor.compress(piece) + compressor.flush(zlib.Z_SYNC_FLUSH) for piece in pieces]
    out[-1] += compressor.flush()
    return out


@pytest.mark.parametrize("encoding", ["", "gzip"])
async def test_a_body_is_read_from_aiohttp_unless_httpx_must_decode_it(
    upstream_client, fake_upstream, encoding
):
    """A plain stream is read with one call per piece from aiohttp's reader; a gzip-encoded one
    (a proxy may compress) through httpx, which decodes it. Either gives the same reply."""
    tokens = ["Hello", ",", " world"]

    async def plan(request: FakeRequest) -> web.StreamResponse:
        pieces = reply_events(tokens)
        if encoding:
            return await request.stream(gzipped(pieces), headers={"Content-Encoding": encoding})
        return await request.stream(pieces)

    fake_upstream.plan = plan
    client = upstream_client()
    async with http_client().stream("POST", "chat/completions", json=BODY) as response:
        read = body_reader(response)
        direct = type(getattr(read, "__self__", None)).__name__ == "_ByteStream"
        body = b""
        while piece := await read():
            body += piece
    assert direct is (not encoding)
    assert body == b"".join(reply_events(tokens))
    stream = client.stream(BODY)
    [u async for u in stream]
    assert stream.completion.content == "Hello, world"


async def test_demo_mode_still_answers_through_the_demo_transport(upstream_client, settings):
    settings.CHAT_DEMO_TOKENS_PER_SECOND = (5000.0, 5000.0)
    stream = upstream_client(CHAT_DEMO_MODE=True, OPENAI_BASE_URL="").stream(BODY)
    updates = [u async for u in stream]
    assert "demo model" in stream.completion.content
    assert stream.completion.done and len(updates) > 10


async def test_a_server_that_never_accepts_times_out_after_the_connect_timeout(
    upstream_client, unaccepting_port
):
    client = upstream_client(
        CHAT_CONNECT_TIMEOUT=0.3, OPENAI_BASE_URL=f"http://127.0.0.1:{unaccepting_port}/v1"
    )
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout, match=r"connect to the model server within 0\.3 seconds"):
        async for _ in client.stream(BODY):
            pass
    assert time.monotonic() - started < 3


async def test_a_refused_connection_is_a_connection_error_not_a_timeout(upstream_client):
    client = upstream_client(OPENAI_BASE_URL=f"http://127.0.0.1:{closed_port()}/v1")
    # It never connected: not "lost the connection"
    with pytest.raises(UpstreamConnectionError, match=r"^Could not connect to the model server\.$"):
        async for _ in client.stream(BODY):
            pass


@pytest.mark.parametrize(
    ("body", "content_type", "shown"),
    [
        # A proxy's error page (nginx's, a traceback page): its status's reason phrase instead
        (
            "<html><body><h1>502 Bad Gateway</h1><pre>Traceback ...</pre></body></html>",
            "text/html",
            "HTTP 502: Bad Gateway",
        ),
        ("<!DOCTYPE html><title>oops</title>", "text/plain", "HTTP 502: Bad Gateway"),
        # A server's plain-text answer says what went wrong: kept (an XML one too)
        ("model 'x' is still loading", "text/plain", "HTTP 502: model 'x' is still loading"),
        ("<Error>Busy</Error>", "application/xml", "HTTP 502: <Error>Busy</Error>"),
    ],
)
async def test_an_error_answer_that_is_not_json_is_shown_by_its_text_or_its_status(
    upstream_client, fake_upstream, body, content_type, shown
):
    async def plan(request: FakeRequest) -> web.StreamResponse:
        return web.Response(status=502, text=body, content_type=content_type)

    fake_upstream.plan = plan
    with pytest.raises(UpstreamHTTPError) as raised:
        async for _ in upstream_client().stream(BODY):
            pass
    assert str(raised.value) == shown


async def test_a_connection_closed_before_the_response_is_a_connection_error(
    upstream_client, fake_upstream
):
    async def plan(request: FakeRequest) -> web.StreamResponse:
        assert request.http.transport is not None
        request.http.transport.close()
        await asyncio.sleep(5)  # cancelled when aiohttp sees the connection go
        raise AssertionError("unreachable")

    fake_upstream.plan = plan
    with pytest.raises(UpstreamConnectionError, match="Lost the connection"):
        async for _ in upstream_client().stream(BODY):
            pass


async def test_a_reply_that_is_not_http_is_a_connection_error(upstream_client, fake_upstream):
    async def plan(request: FakeRequest) -> web.StreamResponse:
        assert request.http.transport is not None
        request.http.transport.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        request.http.transport.close()
        await asyncio.sleep(5)
        raise AssertionError("unreachable")

    fake_upstream.plan = plan
    with pytest.raises(UpstreamConnectionError, match="Lost the connection"):
        async for _ in upstream_client().stream(BODY):
            pass


async def test_a_pause_mid_stream_longer_than_the_idle_timeout_times_out(
    upstream_client, fake_upstream
):
    async def plan(request: FakeRequest) -> web.StreamResponse:
        return await slow_reply(request, pause_before=2, pause=5)

    fake_upstream.plan = plan
    stream = upstream_client(CHAT_IDLE_TIMEOUT=0.3).stream(BODY)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout, match=r"sent nothing for 0\.3 seconds"):
        async for _ in stream:
            pass
    assert time.monotonic() - started < 3
    assert stream.completion.content == "Hello"
    assert await wait_until(lambda: fake_upstream.requests[0].disconnected)


async def test_the_callers_total_deadline_stops_a_reply_that_keeps_coming(
    upstream_client, fake_upstream
):
    async def plan(request: FakeRequest) -> web.StreamResponse:
        return await request.stream(reply_events(["tick"] * 200), delay=0.05)

    fake_upstream.plan = plan
    stream = upstream_client(CHAT_IDLE_TIMEOUT=0.3).stream(BODY)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.6):  # as chat/streaming/generation.py bounds a reply
            async for _ in stream:
                pass
    assert "tick" in stream.completion.content
    assert await wait_until(lambda: fake_upstream.requests[0].disconnected)
    assert not fake_upstream.requests[0].finished


async def test_cancelling_the_task_closes_the_upstream_connection(upstream_client, fake_upstream):
    async def plan(request: FakeRequest) -> web.StreamResponse:
        return await slow_reply(request, pause_before=2, pause=30)

    fake_upstream.plan = plan
    stream = upstream_client().stream(BODY)
    first = asyncio.Event()

    async def consume() -> None:
        async for update in stream:
            if isinstance(update, StreamUpdate) and update.content:
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_until(lambda: fake_upstream.requests[0].disconnected)


async def test_leaving_the_iteration_early_closes_the_upstream_connection(
    upstream_client, fake_upstream
):
    async def plan(request: FakeRequest) -> web.StreamResponse:
        return await slow_reply(request, pause_before=2, pause=30)

    fake_upstream.plan = plan
    updates = upstream_client().stream(BODY).__aiter__()
    update = await anext(updates)
    assert isinstance(update, StreamUpdate) and update.content == "Hello"
    await updates.aclose()  # type: ignore[attr-defined]
    assert await wait_until(lambda: fake_upstream.requests[0].disconnected)


async def test_a_connection_cut_mid_reply_is_a_connection_error(upstream_client, fake_upstream):
    async def plan(request: FakeRequest) -> web.StreamResponse:
        return await request.stream(reply_events(["Hello", " world"]), cut_after=2)

    fake_upstream.plan = plan
    stream = upstream_client().stream(BODY)
    with pytest.raises(UpstreamConnectionError, match="Lost the connection"):
        async for _ in stream:
            pass
    assert stream.completion.content == "Hello"


async def test_a_429_is_retried_after_its_retry_after_delay(upstream_client, fake_upstream):
    arrived: list[float] = []

    async def plan(request: FakeRequest) -> web.StreamResponse:
        arrived.append(time.monotonic())
        if request.index == 0:
            return await request.error(429, "Slow down", headers={"Retry-After": "1"})
        return await request.stream(reply_events(["ok"]))

    fake_upstream.plan = plan
    stream = upstream_client(CHAT_MAX_RETRIES=2, CHAT_RETRY_MAX_DELAY=20.0).stream(BODY)
    updates = [u async for u in stream]
    retries = [u for u in updates if isinstance(u, Retrying)]
    assert [(u.delay, u.now) for u in retries] == [(1.0, False), (0.0, True)]
    assert "Slow down" in retries[0].reason
    assert stream.completion.content == "ok"
    assert len(arrived) == 2 and arrived[1] - arrived[0] >= 0.95
