"""The frame coalescer: the first delta at once, then one frame per window (wider while the
process is behind); nothing dropped."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from chat.streaming.coalescer import (
    LAG_IGNORED,
    LAG_SMOOTHING,
    Frame,
    FrameCoalescer,
    LoopLag,
    adaptive_window,
)


async def test_first_delta_goes_at_once_and_the_rest_are_joined_into_one_frame():
    frames: list[Frame] = []

    async def send(frame: Frame) -> None:
        frames.append(frame)

    coalescer = FrameCoalescer(send, window=10.0)  # a long window: only aclose flushes
    coalescer.push("a", "", None)
    for _ in range(5):
        await asyncio.sleep(0)
    assert [f.content for f in frames] == ["a"]
    for i in range(100):
        coalescer.push(f"{i},", "", None)
    await asyncio.sleep(0.01)
    assert len(frames) == 1  # still inside the window
    await coalescer.aclose()
    assert len(frames) == 2
    assert frames[1].content == "".join(f"{i}," for i in range(100))
    assert frames[1].content_offset == 1


async def test_offsets_count_content_and_reasoning_separately():
    frames: list[Frame] = []

    async def send(frame: Frame) -> None:
        frames.append(frame)

    coalescer = FrameCoalescer(send, window=0.0)
    coalescer.push("", "think", None)
    await asyncio.sleep(0.01)
    coalescer.push("answer", " more", None)
    await coalescer.aclose()
    assert "".join(f.content for f in frames) == "answer"
    assert "".join(f.reasoning for f in frames) == "think more"
    last = frames[-1]
    assert (last.content_offset, last.reasoning_offset) == (0, 5)


async def test_closing_flushes_at_once_instead_of_waiting_out_the_window():
    frames: list[Frame] = []

    async def send(frame: Frame) -> None:
        frames.append(frame)

    coalescer = FrameCoalescer(send, window=30.0)
    coalescer.push("first", "", None)
    for _ in range(5):
        await asyncio.sleep(0)
    coalescer.push(" last", "", None)
    await asyncio.sleep(0.01)  # the coalescer is now waiting out its 30 s window
    await asyncio.wait_for(coalescer.aclose(), 1)
    assert "".join(f.content for f in frames) == "first last"


async def test_a_frame_rides_on_the_first_delta_after_the_window_instead_of_a_timer():
    frames: list[tuple[float, str]] = []
    loop = asyncio.get_running_loop()

    async def send(frame: Frame) -> None:
        frames.append((loop.time(), frame.content))

    coalescer = FrameCoalescer(send, window=0.6)
    coalescer.push("a", "", None)  # at once
    await asyncio.sleep(0.3)
    coalescer.push("b", "", None)  # inside the window: it waits, at most a window (to 0.9 s)
    await asyncio.sleep(0.4)  # the window has passed (0.6 s) and "b" still waits for a delta
    assert [content for _, content in frames] == ["a"]
    pushed = loop.time()
    coalescer.push("c", "", None)  # this delta's wakeup sends it, with "b"
    for _ in range(5):
        await asyncio.sleep(0)
    assert [content for _, content in frames] == ["a", "bc"]
    assert frames[1][0] - pushed < 0.3  # not at the backstop, 0.9 s after the start
    await coalescer.aclose()


async def test_a_delta_that_no_other_follows_waits_one_window_at_most():
    frames: list[tuple[float, str]] = []
    loop = asyncio.get_running_loop()
    second = asyncio.Event()

    async def send(frame: Frame) -> None:
        frames.append((loop.time(), frame.content))
        if len(frames) == 2:
            second.set()

    coalescer = FrameCoalescer(send, window=0.5)
    coalescer.push("a", "", None)
    await asyncio.sleep(0.05)
    pushed = loop.time()
    assert pushed - frames[0][0] < 0.45  # "b" comes inside the window
    coalescer.push("b", "", None)
    await asyncio.wait_for(second.wait(), 5)
    assert [content for _, content in frames] == ["a", "b"]
    waited = frames[1][0] - pushed
    assert 0.49 <= waited < 1.5  # it waited a window for company, then went alone
    await coalescer.aclose()


async def test_a_frame_that_showed_nothing_starts_no_window():
    """A frame whose text the renderer held back (a list item's "-" before its first word)
    started a window like any other, so the delta that showed it waited that window: 30 ms
    more for such a token at 100 tokens/s (the markdown-heavy benchmark's p99 doubled). The
    delta after it now goes at once."""
    frames: list[tuple[float, str]] = []
    loop = asyncio.get_running_loop()
    second = asyncio.Event()

    async def send(frame: Frame) -> bool:
        frames.append((loop.time(), frame.content))
        if len(frames) == 2:
            second.set()
        return frame.content != "-"  # "-" shows nothing yet

    coalescer = FrameCoalescer(send, window=30.0)
    coalescer.push("-", "", None)
    for _ in range(5):
        await asyncio.sleep(0)
    assert [content for _, content in frames] == ["-"]
    pushed = loop.time()
    coalescer.push(" run", "", None)
    await asyncio.wait_for(second.wait(), 5)  # not a window of 30 s
    assert [content for _, content in frames] == ["-", " run"]
    assert frames[1][0] - pushed < 1
    coalescer.push(" it", "", None)  # " run" showed: a window starts
    await asyncio.sleep(0.05)
    assert len(frames) == 2
    await coalescer.aclose()
    assert [content for _, content in frames] == ["-", " run", " it"]


async def test_frames_of_a_steady_stream_are_a_window_apart_at_least_and_lose_nothing():
    sent: list[tuple[float, Frame]] = []
    loop = asyncio.get_running_loop()

    async def send(frame: Frame) -> None:
        sent.append((loop.time(), frame))

    coalescer = FrameCoalescer(send, window=0.03)
    for i in range(60):
        coalescer.push(f"{i},", "", None)
        await asyncio.sleep(0.007)
    await coalescer.aclose()
    times = [at for at, _ in sent[:-1]]  # the last goes at once on closing
    # uvloop counts whole milliseconds and may run a timer up to one early
    assert all(b - a >= 0.028 for a, b in itertools.pairwise(times))
    assert 3 < len(sent) < 60
    assert "".join(frame.content for _, frame in sent) == "".join(f"{i}," for i in range(60))


async def test_a_delta_with_nothing_in_it_sends_no_frame_and_tool_calls_alone_do():
    frames: list[Frame] = []

    async def send(frame: Frame) -> None:
        frames.append(frame)

    coalescer = FrameCoalescer(send, window=0.0)
    coalescer.push("", "", None)  # a role, or the usage: nothing to show
    await asyncio.sleep(0.01)
    assert frames == []
    coalescer.push("", "", [])  # the tool calls, even none so far, are news
    await coalescer.aclose()
    assert [f.tool_calls for f in frames] == [[]]


class FixedLag:
    """A loop lag gauge that reads what the test says."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.users = 0

    def acquire(self) -> None:
        self.users += 1

    def release(self) -> None:
        self.users -= 1

    def observe(self, due: float, now: float) -> None:
        pass


async def _stream_through(coalescer_lag: FixedLag | None) -> list[Frame]:
    frames: list[Frame] = []

    async def send(frame: Frame) -> None:
        frames.append(frame)

    coalescer = FrameCoalescer(send, window=0.01, max_window=0.2, lag=coalescer_lag)
    for i in range(30):
        coalescer.push(f"c{i} ", f"r{i} " if i % 3 == 0 else "", None)
        await asyncio.sleep(0.01)
    await coalescer.aclose()
    return frames


def _check_frames(frames: list[Frame]) -> None:
    content = reasoning = ""
    for frame in frames:
        assert frame.content_offset == len(content)
        assert frame.reasoning_offset == len(reasoning)
        content += frame.content
        reasoning += frame.reasoning
    assert content == "".join(f"c{i} " for i in range(30))
    assert reasoning == "".join(f"r{i} " for i in range(30) if i % 3 == 0)


async def test_a_process_behind_sends_fewer_larger_frames_with_nothing_lost_or_reordered():
    keeping_up = await _stream_through(FixedLag(0.0))
    behind_gauge = FixedLag(1.0)  # far behind: the window opens to its ceiling
    behind = await _stream_through(behind_gauge)
    _check_frames(keeping_up)
    _check_frames(behind)
    assert len(behind) < len(keeping_up)
    assert behind_gauge.users == 0  # closing the coalescer lets go of the gauge


async def test_the_window_stays_fixed_without_a_ceiling_above_it():
    gauge = FixedLag(1.0)
    coalescer = FrameCoalescer(_discard, window=0.03, max_window=0.03, lag=gauge)
    assert coalescer.window() == 0.03
    assert gauge.users == 0  # not even held
    await coalescer.aclose()


async def _discard(frame: Frame) -> None:
    pass


def test_adaptive_window_keeps_the_base_under_light_load_and_never_passes_the_ceiling():
    assert adaptive_window(0.03, 0.12, 0.0) == 0.03
    assert adaptive_window(0.03, 0.12, 0.001) == 0.03
    widths = [adaptive_window(0.03, 0.12, lag / 1000) for lag in range(0, 200, 5)]
    assert widths == sorted(widths)
    assert 0.03 < widths[3] < 0.12
    assert max(widths) == 0.12


async def _stream_while_behind(coalescer: FrameCoalescer) -> None:
    """Five deltas, each on a loop then blocked for 50 ms: every frame's timer runs late."""
    for _ in range(5):
        coalescer.push("x", "", None)
        await asyncio.sleep(0)
        time.sleep(0.05)  # noqa: ASYNC251 (the loop is blocked on purpose: its timers fire late)
        await asyncio.sleep(0.006)


async def test_loop_lag_reads_a_blocked_loop_as_behind_and_stops_when_released():
    gauge = LoopLag(interval=0.005)
    gauge.acquire()
    coalescer = FrameCoalescer(_discard, window=0.01, max_window=0.2, lag=gauge)
    await _stream_while_behind(coalescer)  # the frames' timers run late: the window opens
    assert gauge.seconds > LAG_IGNORED
    assert coalescer.window() > 0.01
    await coalescer.aclose()
    gauge.release()
    assert gauge.seconds == 0.0


async def test_the_window_narrows_again_once_the_loop_catches_up_while_a_stream_runs():
    """A steady stream's frames go on its deltas' wakeups; each still tells the gauge how late
    the loop ran it, so the window follows the load both ways."""
    gauge = LoopLag(interval=0.005)
    coalescer = FrameCoalescer(_discard, window=0.01, max_window=0.2, lag=gauge)
    await _stream_while_behind(coalescer)
    assert coalescer.window() > 0.01
    for _ in range(40):  # caught up: deltas keep coming, each after the window
        coalescer.push("x", "", None)
        await asyncio.sleep(0.02)
    assert gauge.seconds <= LAG_IGNORED
    assert coalescer.window() == 0.01
    await coalescer.aclose()


async def test_a_process_without_a_window_still_widens_one_while_it_is_behind():
    """CHAT_COALESCE_MS=0 (a frame per delta) keeps its ceiling for a loop that is behind."""
    gauge = LoopLag(interval=0.005)
    coalescer = FrameCoalescer(_discard, window=0.0, max_window=0.12, lag=gauge)
    await _stream_while_behind(coalescer)
    assert coalescer.window() > 0.0
    await coalescer.aclose()


def test_loop_lag_takes_one_reading_an_interval_smoothed_and_never_below_zero():
    gauge = LoopLag(interval=0.02)
    gauge.acquire()
    gauge.observe(due=1.0, now=1.1)  # 100 ms late
    assert gauge.seconds == pytest.approx(LAG_SMOOTHING * 0.1)
    gauge.observe(due=1.0, now=1.11)  # within the interval of the last reading: not taken
    assert gauge.seconds == pytest.approx(LAG_SMOOTHING * 0.1)
    first = gauge.seconds
    gauge.observe(due=1.2, now=1.1995)  # a timer run early (uvloop rounds) is on time
    assert gauge.seconds == pytest.approx(first * (1 - LAG_SMOOTHING))
    gauge.release()
    assert gauge.seconds == 0.0
    gauge.acquire()
    gauge.observe(due=2.0, now=2.0)  # the interval starts again after a release
    assert gauge.seconds == 0.0
    gauge.release()


async def test_loop_lag_reads_a_loop_that_keeps_up_as_on_time():
    """(Its timers run on time only if the machine runs the process on time: on a machine
    busy with other work a run may read late, so it is tried three times.)"""
    readings = []
    for _ in range(3):
        gauge = LoopLag(interval=0.005)
        coalescer = FrameCoalescer(_discard, window=0.01, max_window=0.2, lag=gauge)
        for _ in range(20):
            coalescer.push("x", "", None)
            await asyncio.sleep(0.008)
        readings.append((gauge.seconds, coalescer.window()))
        await coalescer.aclose()
        if gauge.seconds <= LAG_IGNORED:
            break
    assert readings[-1][0] <= LAG_IGNORED, readings
    assert readings[-1][1] == 0.01


async def test_a_held_loop_lag_does_not_wake_an_idle_loop(monkeypatch):
    """The gauge reads the frames' own timers: held while nothing streams, it schedules
    nothing (a timer of its own woke the process 50 times a second)."""
    loop = asyncio.get_running_loop()
    scheduled: list[object] = []
    real_call_at = loop.call_at

    def call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        scheduled.append(callback)
        return real_call_at(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", call_at)
    gauge = LoopLag(interval=0.005)
    coalescer = FrameCoalescer(_discard, window=0.01, max_window=0.2, lag=gauge)
    gauge.acquire()
    await asyncio.sleep(0.05)
    assert [c for c in scheduled if getattr(c, "__self__", None) is gauge] == []
    coalescer.push("x", "", None)  # a frame: its timer (due at once) is read by the gauge
    await asyncio.sleep(0.05)
    assert all(getattr(c, "__self__", None) is not gauge for c in scheduled)
    gauge.release()
    await coalescer.aclose()
