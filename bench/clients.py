"""The clients: a browser-like chat client per stream (session cookie, CSRF, htmx POST, the
WebSocket), idle WebSockets, and the baseline client that reads the fake upstream directly.

The hot loops only take timestamps and keep raw frames; all parsing happens after the run
(`bench.metrics`), so the client's own work disturbs the measurement as little as it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.page import final_of
from bench.tokens import Shape

REPLY_ID = re.compile(r'<article id="m(\d+)"')


@dataclass
class Target:
    """Where one client goes: a web process, and a logged-in user's conversation."""

    port: int
    session: str
    csrf: str
    conversation: str

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self) -> Any:
        return connect(
            f"ws://127.0.0.1:{self.port}/ws/c/{self.conversation}/",
            additional_headers={"Cookie": f"sessionid={self.session}", "Origin": self.origin},
            compression=None,  # daphne does not negotiate permessage-deflate either
            max_size=None,
            open_timeout=60,
            ping_interval=None,
            close_timeout=2,
        )


@dataclass
class StreamResult:
    shape: Shape
    target: Target
    submitted: float = 0.0  # time.time() just before the POST
    answered: float = 0.0  # the POST's response arrived
    reply_id: int | None = None
    frames: list[tuple[float, str]] = field(default_factory=list)
    error: str = ""


async def _read_reply(ws: ClientConnection, result: StreamResult) -> None:
    frames = result.frames
    async for message in ws:
        frames.append((time.time(), str(message)))
        if 'hx-swap-oob="true"' in message and final_of(str(message)) is not None:
            return


async def run_stream(
    result: StreamResult,
    go: asyncio.Event,
    connected: list[int],
    timeout: float,
    delay: float = 0.0,
) -> StreamResult:
    """Open the socket, wait for `go` and then `delay` seconds, post the message and read
    until the reply is saved."""
    shape, target = result.shape, result.target
    headers = {
        "Cookie": f"sessionid={target.session}; csrftoken={target.csrf}",
        "X-CSRFToken": target.csrf,
        "HX-Request": "true",
        "Origin": target.origin,
    }
    try:
        async with (
            httpx.AsyncClient(base_url=target.origin, timeout=60) as http,
            target.ws() as ws,
        ):
            connected.append(1)
            await go.wait()
            if delay:
                await asyncio.sleep(delay)
            reader = asyncio.create_task(_read_reply(ws, result))
            try:
                async with asyncio.timeout(timeout):
                    result.submitted = time.time()
                    response = await http.post(
                        f"/c/{target.conversation}/messages/",
                        data={"content": shape.message()},
                        headers=headers,
                    )
                    result.answered = time.time()
                    ids = REPLY_ID.findall(response.text)
                    if response.status_code != 200 or len(ids) != 2:
                        result.error = f"POST {response.status_code}: {response.text[:200]}"
                        return result
                    result.reply_id = int(ids[1])
                    await reader
            except TimeoutError:
                result.error = f"no finished reply within {timeout:g} s"
            finally:
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader
    except Exception as exc:  # a failed stream is reported, not fatal to the run
        result.error = result.error or f"{type(exc).__name__}: {exc}"
    return result


@dataclass
class BaselineResult:
    shape: Shape
    submitted: float = 0.0
    arrivals: list[float] = field(default_factory=list)  # one per content chunk, in order
    done: float = 0.0
    error: str = ""


async def run_baseline_stream(
    http: httpx.AsyncClient, shape: Shape, go: asyncio.Event, timeout: float
) -> BaselineResult:
    """The floor: read the upstream's SSE directly with httpx, parse only what is needed."""
    result = BaselineResult(shape)
    body = {
        "model": "bench-model",
        "stream": True,
        "messages": [{"role": "user", "content": shape.message()}],
    }
    await go.wait()
    try:
        async with asyncio.timeout(timeout):
            result.submitted = time.time()
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                buffer = b""
                async for piece in response.aiter_raw():
                    now = time.time()
                    buffer += piece
                    *events, buffer = buffer.split(b"\n\n")
                    for event in events:
                        data = event[6:] if event.startswith(b"data: ") else event
                        if data == b"[DONE]":
                            result.done = now
                            continue
                        choices = json.loads(data).get("choices") or [{}]
                        if choices[0].get("delta", {}).get("content"):
                            result.arrivals.append(now)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


class IdleSockets:
    """Many open WebSockets that only listen."""

    def __init__(self) -> None:
        self.sockets: list[ClientConnection] = []
        self.failures = 0
        self._stack = contextlib.AsyncExitStack()

    async def open(self, targets: list[Target], parallel: int = 50) -> None:
        limit = asyncio.Semaphore(parallel)

        async def one(target: Target) -> None:
            async with limit:
                try:
                    self.sockets.append(await self._stack.enter_async_context(target.ws()))
                except Exception:
                    self.failures += 1

        await asyncio.gather(*(one(t) for t in targets))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(60):
                await self._stack.aclose()
        self.sockets.clear()

    def alive(self) -> int:
        return sum(1 for ws in self.sockets if ws.close_code is None)


class LoopLag:
    """How late this process's event loop wakes up: if the harness lags, every latency it
    measures is late by as much."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> LoopLag:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(10_000_000):
            before = loop.time()
            await asyncio.sleep(self.interval)
            self.lags.append(loop.time() - before - self.interval)

    async def stop(self) -> list[float]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return self.lags
