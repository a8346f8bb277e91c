"""Many small deltas in, few frames out: the first at once, then at most one per window, with
the offsets in the reply where each frame's text starts. No Django here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass
class Frame:
    """Text to append, with the offsets in the reply where it starts."""

    content_offset: int
    content: str
    reasoning_offset: int
    reasoning: str
    tool_calls: list[dict[str, str]] | None


class FrameCoalescer:
    """Turns many small deltas into few frames: the first goes at once, then at most one per
    `window` seconds. It concatenates, never drops, and keeps the offsets right."""

    def __init__(self, send: Callable[[Frame], Awaitable[None]], window: float) -> None:
        self._send = send
        self._window = window
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._content_offset = 0
        self._reasoning_offset = 0
        self._tool_calls: list[dict[str, str]] | None = None
        self._wakeup = asyncio.Event()
        self._closing = False
        self._closed = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    def push(self, content: str, reasoning: str, tool_calls: list[dict[str, str]] | None) -> None:
        if content:
            self._content.append(content)
        if reasoning:
            self._reasoning.append(reasoning)
        if tool_calls is not None:
            self._tool_calls = tool_calls
        self._wakeup.set()

    async def aclose(self) -> None:
        """Send whatever is pending now, then stop."""
        self._closing = True
        self._closed.set()
        self._wakeup.set()
        await self._task

    def _take(self) -> Frame | None:
        if not (self._content or self._reasoning or self._tool_calls is not None):
            return None
        content, reasoning = "".join(self._content), "".join(self._reasoning)
        frame = Frame(
            self._content_offset, content, self._reasoning_offset, reasoning, self._tool_calls
        )
        self._content_offset += len(content)
        self._reasoning_offset += len(reasoning)
        self._content, self._reasoning, self._tool_calls = [], [], None
        return frame

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        # Frames follow a schedule: the next may go one window after the last one was due,
        # not after its send returned, so slow sends and timer overshoot do not add up.
        next_due = -self._window
        while True:
            await self._wakeup.wait()
            now = loop.time()
            if next_due > now and not self._closing:
                # Wait out the window, unless the stream ends meanwhile: then flush at once.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(next_due - now):
                        await self._closed.wait()
                now = loop.time()
            due = max(now, next_due)
            self._wakeup.clear()
            frame = self._take()
            if frame is not None:
                try:
                    await self._send(frame)
                except Exception:
                    logger.exception("could not send a frame; clients will resynchronise")
                next_due = due + self._window
            if self._closing and not self._wakeup.is_set():
                return
