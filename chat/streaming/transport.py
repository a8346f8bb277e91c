"""The network transport under the shared httpx client, on aiohttp's HTTP/1.1 engine (about half
the CPU per streamed event of httpx's own), and how the stream client reads a body from it.
No Django here."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import AiohttpResponseStream, map_aiohttp_exceptions

# A body httpx would decode (gzip, br, ...) is read through httpx; these need nothing.
_PLAIN = frozenset({"", "identity"})


class NetworkTransport(AiohttpTransport):
    """httpx-aiohttp's transport with httpx's own error classes.

    httpx-aiohttp 0.2 reports every aiohttp connection error (refused, closed before the
    response) as a connect timeout, and lets protocol errors (a reply that is not HTTP) through
    as aiohttp exceptions; the stream client tells timeouts from broken connections by class.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _httpx_errors():
            response = await super().handle_async_request(request)
        assert isinstance(response.stream, AiohttpResponseStream)
        response.stream = _ByteStream(response.stream)
        return response


class _ByteStream(httpx.AsyncByteStream):
    def __init__(self, inner: AiohttpResponseStream) -> None:
        self._inner = inner
        self.content = inner._aiohttp_response.content  # aiohttp's reader of the body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for piece in self._inner:
                yield piece

    async def read_some(self) -> bytes:
        """What has arrived of the body (waiting for something), b"" at its end: one call,
        where iterating httpx's response resumes five generators, one inside the other. Its
        errors are mapped as `__aiter__`'s are, only when there is one (a piece costs no
        context managers)."""
        try:
            return await self.content.readany()
        except Exception:
            with _httpx_errors(), map_aiohttp_exceptions():
                raise

    async def aclose(self) -> None:
        with _httpx_errors():
            await self._inner.aclose()


def body_reader(response: httpx.Response) -> Callable[[], Awaitable[bytes]]:
    """`read()` -> the next piece of the streamed response's body, b"" at its end, raising
    httpx's errors. Read straight from aiohttp's reader when the body comes from this
    transport and needs no decoding (the stream client reads each event this way); else
    through httpx's `aiter_bytes`, which decodes (a gzip-encoded stream) and serves other
    transports (the demo)."""
    stream = getattr(response.stream, "_stream", None)  # httpx's BoundAsyncStream holds it
    if (
        isinstance(stream, _ByteStream)
        and response.headers.get("content-encoding", "").strip().lower() in _PLAIN
    ):
        return stream.read_some
    pieces = response.aiter_bytes()

    async def read() -> bytes:
        async for piece in pieces:
            if piece:
                return piece
        return b""

    return read


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        cause = exc.__cause__
        if cause is None or isinstance(cause, TimeoutError):
            raise  # a real timeout (aiohttp's timeout errors are TimeoutErrors)
        # Refused or unreachable is a connect error; closed after connecting, a broken read.
        error = httpx.ConnectError if isinstance(cause, aiohttp.ClientConnectorError) else None
        raise (error or httpx.ReadError)(str(cause) or type(cause).__name__) from cause
    except aiohttp.ClientError as exc:
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__) from exc
