"""A fake OpenAI-compatible upstream on loopback, scripted by each test.

It runs an aiohttp server on its own event loop in a background thread. A test sets `plan`, an
async function `(FakeRequest) -> aiohttp response`, and reads back what the server saw: every
request body and header, when each piece was sent, and whether the client hung up.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Plan = Callable[["FakeRequest"], Awaitable[web.StreamResponse]]


def chunk(
    content: str | None = None,
    *,
    finish_reason: str | None = None,
    role: str | None = None,
    **delta_fields: Any,
) -> dict[str, Any]:
    delta: dict[str, Any] = dict(delta_fields)
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def usage_chunk(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "model": "fake-model",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n".encode()


def reply_events(
    tokens: Sequence[str],
    *,
    finish_reason: str | None = "stop",
    usage: tuple[int, int] | None = (11, None),
    done: bool = True,
) -> list[bytes]:
    """The SSE pieces of a normal reply: role, one chunk per token, finish, usage, [DONE]."""
    pieces = [sse(chunk("", role="assistant"))]
    pieces += [sse(chunk(token)) for token in tokens]
    if finish_reason is not None:
        pieces.append(sse(chunk(finish_reason=finish_reason)))
    if usage is not None:
        prompt, completion = usage
        pieces.append(
            sse(usage_chunk(prompt, completion if completion is not None else len(tokens)))
        )
    if done:
        pieces.append(b"data: [DONE]\n\n")
    return pieces


def tool_call_events(call_id: str, name: str, arguments: str = "{}") -> list[bytes]:
    """The SSE pieces of a reply that calls one tool and says nothing."""
    call = {
        "index": 0,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }
    return [
        sse(chunk(role="assistant", tool_calls=[call])),
        sse(chunk(finish_reason="tool_calls")),
        b"data: [DONE]\n\n",
    ]


@dataclass
class FakeRequest:
    index: int
    body: dict[str, Any]
    headers: dict[str, str]
    http: web.Request
    upstream: FakeUpstream
    sent_at: list[float] = field(default_factory=list)  # time.time() of each piece sent
    disconnected: bool = False
    finished: bool = False

    async def stream(
        self,
        pieces: Sequence[bytes],
        *,
        delay: float = 0.0,
        status: int = 200,
        headers: dict[str, str] | None = None,
        before_piece: Callable[[int], Awaitable[None]] | None = None,
        cut_after: int | None = None,
    ) -> web.StreamResponse:
        """Send `pieces`, `delay` seconds apart. `cut_after=N`: drop the connection after N
        pieces without ending the response (a dead server)."""
        response = web.StreamResponse(
            status=status,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                **(headers or {}),
            },
        )
        await response.prepare(self.http)
        try:
            for i, piece in enumerate(pieces):
                if cut_after is not None and i >= cut_after:
                    assert self.http.transport is not None
                    self.http.transport.abort()
                    return response
                if before_piece is not None:
                    await before_piece(i)
                if delay and i:
                    await asyncio.sleep(delay)
                await response.write(piece)
                self.sent_at.append(time.time())
            await response.write_eof()
            self.finished = True
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            self.disconnected = True
            self.upstream.disconnects += 1
            raise
        return response

    async def error(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        body = {"error": {"message": message, "type": "invalid_request_error", "code": status}}
        return web.json_response(body, status=status, headers=headers)


class FakeUpstream:
    def __init__(self) -> None:
        self.requests: list[FakeRequest] = []
        self.disconnects = 0
        self.plan: Plan = self.default_plan
        self.tokens = ["Hello", ",", " world", "!"]
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.arrived = asyncio.Event()  # used by barrier plans, on self.loop

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def call(self, coroutine: Awaitable[Any]) -> Any:
        """Run a coroutine on the fake's loop from the test thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)  # type: ignore[arg-type]

    def reset(self) -> None:
        self.requests.clear()
        self.disconnects = 0
        self.plan = self.default_plan

    async def default_plan(self, request: FakeRequest) -> web.StreamResponse:
        return await request.stream(reply_events(self.tokens))

    async def _chat(self, http: web.Request) -> web.StreamResponse:
        request = FakeRequest(
            index=len(self.requests),
            body=await http.json(),
            headers=dict(http.headers),
            http=http,
            upstream=self,
        )
        self.requests.append(request)
        return await self.plan(request)

    async def _models(self, http: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake-model"}]})
