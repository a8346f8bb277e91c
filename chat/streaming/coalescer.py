"""Many small deltas in, few frames out: the first at once, then at most one per window, with
the offsets in the reply where each frame's text starts. The window widens while the process
is behind (its event loop late), so that it sends fewer, larger frames. No Django here."""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)

LAG_INTERVAL = 0.02  # at least this many seconds between two readings of the loop's lag
LAG_SMOOTHING = 0.3  # weight of the newest reading
LAG_IGNORED = 0.002  # a loop this late is not behind: light load keeps the base window
LAG_FACTOR = 2.0  # seconds of window added per second of lag beyond LAG_IGNORED


class Lag(Protocol):
    def acquire(self) -> None: ...
    def release(self) -> None: ...
    def observe(self, due: float, now: float) -> None: ...
    @property
    def seconds(self) -> float: ...


class LoopLag:
    """How late this event loop runs a timer, smoothed. It keeps no timer of its own: the
    coalescers' frame timers tell it how late they ran (`observe`), and it takes at most one
    reading every LAG_INTERVAL seconds. A timer of its own woke the process 50 times a second
    while anything streamed: a third of its wakeups with one stream at 50 tokens/s. (It does
    not see a loop blocked only between frames: after one frame and before the delta that
    arms the next, or after a window's end and before the delta that sends the frame. Steady
    load, which delays the frames themselves, it reads.) When nobody holds it
    (`acquire`/`release`) it reads 0."""

    def __init__(self, interval: float = LAG_INTERVAL) -> None:
        self.interval = interval
        self.seconds = 0.0
        self._users = 0
        self._last = -math.inf

    def acquire(self) -> None:
        self._users += 1

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            self._users = 0
            self.seconds = 0.0
            self._last = -math.inf

    def observe(self, due: float, now: float) -> None:
        """A timer due at `due` ran at `now` (loop time)."""
        if now - self._last < self.interval:
            return
        self._last = now
        late = max(now - due, 0.0)  # uvloop runs a timer up to half a millisecond early
        self.seconds += LAG_SMOOTHING * (late - self.seconds)


_loop_lags: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopLag] = (
    weakref.WeakKeyDictionary()
)


def loop_lag() -> LoopLag:
    """The running loop's lag gauge, shared by its coalescers."""
    loop = asyncio.get_running_loop()
    lag = _loop_lags.get(loop)
    if lag is None:
        lag = _loop_lags[loop] = LoopLag()
    return lag


def adaptive_window(base: float, ceiling: float, lag: float) -> float:
    """The window for a process whose loop is `lag` seconds late: `base` under light load,
    wider the further behind it is, never past `ceiling`."""
    if lag <= LAG_IGNORED or ceiling <= base:
        return base
    return min(ceiling, base + LAG_FACTOR * (lag - LAG_IGNORED))


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
    window. It concatenates, never drops, and keeps the offsets right.

    A frame rides on the wakeup that read a delta: the first delta after the window has passed
    sends it, with what waited for it. Only when no delta comes before the oldest waiting one
    has waited a whole window does the process wake for the frame alone. So no delta waits
    longer than a window (as with a timer at the window's end), and a steady stream's frames
    cost the process no wakeups of their own: at 50 tokens/s and a 30 ms window, a frame
    every 40 ms, each token waiting 0 or 20 ms, where a timer sent one every 30 ms.

    The window is `window` seconds while the process keeps up; with a `max_window` and a `lag`
    gauge it widens, up to `max_window`, while the event loop runs late (see
    `adaptive_window`): each frame costs the relay about as much as the tokens in it, so under
    load fewer, larger frames let it catch up.

    `send` may say that a frame showed nothing (False: the renderer holds its text back until
    what follows tells what it is, a list item's "-" say): such a frame starts no window, so
    the delta after it goes at once, as if it had come with it."""

    def __init__(
        self,
        send: Callable[[Frame], Awaitable[bool | None]],
        window: float,
        *,
        max_window: float = 0.0,
        lag: Lag | None = None,
    ) -> None:
        self._send = send
        self._window = window
        self._max_window = max_window
        self._lag = lag if max_window > window else None
        if self._lag is not None:
            self._lag.acquire()
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._content_offset = 0
        self._reasoning_offset = 0
        self._tool_calls: list[dict[str, str]] | None = None
        self._loop = asyncio.get_running_loop()
        # Frames follow a schedule: the next may go one window after the last one was due,
        # not after its send returned, so slow sends and timer overshoot do not add up.
        self._next_due = -self._max_window - self._window
        self._oldest_at = 0.0  # when the oldest delta not yet sent came
        self._closing = False
        # While the task waits for its next frame: what wakes it, and the timer that will.
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0
        self._task = asyncio.create_task(self._run())

    def push(self, content: str, reasoning: str, tool_calls: list[dict[str, str]] | None) -> None:
        if not content and not reasoning and tool_calls is None:
            return  # a chunk with nothing to show (a role, the usage) sends no frame
        now = self._loop.time()
        if not self._pending():
            self._oldest_at = now
        if content:
            self._content.append(content)
        if reasoning:
            self._reasoning.append(reasoning)
        if tool_calls is not None:
            self._tool_calls = tool_calls
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # a frame is on its way; the task looks for more when it has gone
        if self._timer is None or (now >= self._next_due and self._timer_due > now):
            # The first delta since the last frame sets the task's one wakeup (a delta costs
            # the task no turn of its own), and the first after the window brings it forward
            # to now: the loop sends the frame on its next turn, without sleeping.
            self._arm(waiter)

    async def aclose(self) -> None:
        """Send whatever is pending now, then stop."""
        self._closing = True
        if self._waiter is not None:
            _wake(self._waiter)
        try:
            await self._task
        finally:
            if self._lag is not None:
                self._lag.release()
                self._lag = None

    def window(self) -> float:
        """The window now: wider while the process is behind."""
        if self._lag is None:
            return self._window
        return adaptive_window(self._window, self._max_window, self._lag.seconds)

    def _pending(self) -> bool:
        return bool(self._content or self._reasoning or self._tool_calls is not None)

    def _take(self) -> Frame | None:
        if not self._pending():
            return None
        content, reasoning = "".join(self._content), "".join(self._reasoning)
        frame = Frame(
            self._content_offset, content, self._reasoning_offset, reasoning, self._tool_calls
        )
        self._content_offset += len(content)
        self._reasoning_offset += len(reasoning)
        self._content, self._reasoning, self._tool_calls = [], [], None
        return frame

    async def _next_frame_due(self) -> None:
        """Wait until a frame is due: a delta came after the window passed, or the oldest
        pending one has waited a window, or `aclose` (then at once). A timer and a future:
        under `asyncio.timeout` every window that ran out cancelled the task and raised
        twice."""
        waiter = self._waiter = self._loop.create_future()
        if self._pending():  # deltas came while the last frame was sent
            self._arm(waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _arm(self, waiter: asyncio.Future[None]) -> None:
        """Wake the task for the pending deltas: at once if the window has passed, else when
        the oldest of them has waited a window (a delta that comes after the window's end
        and before that brings it forward, in `push`). At once is a callback scheduled for
        now (a timer on asyncio's loop, a plain callback on uvloop's), not a direct wakeup:
        the loop runs it without sleeping, and how late it runs tells the lag gauge how far
        behind the loop is, on every frame."""
        if self._timer is not None:
            self._timer.cancel()
        now = self._loop.time()
        due = now if now >= self._next_due else max(self._next_due, self._oldest_at + self.window())
        self._timer_due = due
        self._timer = self._loop.call_at(due, self._due, waiter, due)

    def _due(self, waiter: asyncio.Future[None], due: float) -> None:
        if self._lag is not None:
            self._lag.observe(due, self._loop.time())  # how late this timer ran
        _wake(waiter)

    async def _run(self) -> None:
        loop = self._loop
        while True:
            if not self._closing:
                await self._next_frame_due()
            due = max(loop.time(), self._next_due)
            frame = self._take()
            if frame is not None:
                shown: bool | None = True
                try:
                    shown = await self._send(frame)
                except Exception:
                    logger.exception("could not send a frame; clients will resynchronise")
                if shown is not False:
                    self._next_due = due + self.window()
            if self._closing and not self._pending():
                return


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
