"""From raw timestamps and frames to the numbers in the report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.clients import BaselineResult, StreamResult
from bench.page import ReplyView, reference


def ws_wire_bytes(payload: str) -> int:
    """A server-to-client text frame: unmasked header (2, 4 or 10 bytes) plus the payload."""
    size = len(payload.encode())
    return size + (2 if size < 126 else 4 if size < 65536 else 10)


def pct(values: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


@dataclass
class StreamStats:
    ok: bool
    error: str = ""
    tokens: int = 0
    kind: str = "plain"
    chunks: int = 0
    latency: list[float] = field(default_factory=list)  # per chunk, s, window included
    latency_ex: list[float] = field(default_factory=list)  # window's waiting subtracted
    sent_at: list[float] = field(default_factory=list)  # the upstream's send time per chunk
    ttft: float = math.nan  # submit -> first text on the client
    ttft_upstream: float = math.nan  # the upstream's own: request received -> first chunk
    submitted: float = 0.0
    first_text: float = 0.0
    last_text: float = 0.0
    finished: float = 0.0  # the final article arrived
    upstream_done: float = 0.0  # the upstream wrote [DONE]
    delta_frames: int = 0  # frames that changed the reply's text
    block_frames: int = 0  # ... of them, frames that settled blocks or drew the tail again
    frames: int = 0
    wire_bytes: int = 0
    text_bytes: int = 0
    framing_per_delta: list[int] = field(default_factory=list)
    final_bytes: int = 0
    other_bytes: int = 0
    snapshots: int = 0
    reply_id: int | None = None

    @property
    def added_ttft(self) -> float:
        return self.ttft - self.ttft_upstream


def analyse_stream(
    result: StreamResult, record: dict[str, Any] | None, window: float
) -> StreamStats:
    shape = result.shape
    stats = StreamStats(ok=False, tokens=shape.tokens, kind=shape.kind, chunks=shape.chunks)
    stats.reply_id = result.reply_id
    stats.submitted = result.submitted
    if result.error or result.reply_id is None:
        stats.error = result.error or "no reply id"
        return stats
    if record is None:
        stats.error = "the upstream has no record of this stream"
        return stats
    sent: list[float] = record["sent"]
    stats.upstream_done = record.get("done") or 0.0
    ref = reference(shape.tokens, shape.kind, shape.chunk)
    view = ReplyView(result.reply_id)
    arrivals: list[tuple[float, int, int]] = []  # (time, text length so far, frame index)
    for index, (t, frame) in enumerate(result.frames):
        wire = ws_wire_bytes(frame)
        stats.frames += 1
        stats.wire_bytes += wire
        change = view.apply(frame)
        if change.final:
            stats.final_bytes += wire
            stats.finished = t
            continue
        if not change.text:
            stats.other_bytes += wire
            continue
        have = ref.states.get(view.state())
        if have is None:
            stats.error = (
                f"frame {index} leaves the reply in a state the app's renderer never reaches "
                f"with this text: {frame[:200]!r}"
            )
            return stats
        if change.snapshot:  # a resync: the whole text so far
            stats.snapshots += 1
        else:
            stats.delta_frames += 1
            if change.appended_only:
                stats.framing_per_delta.append(wire - change.appended_wire - change.status_wire)
            else:
                stats.block_frames += 1
        arrivals.append((t, have, index))
    expected = ref.text
    stats.text_bytes = len(expected.encode())
    if view.blocks != ref.final_html:
        stats.error = (
            f"the reply's final HTML on the client differs from render_markdown(text): "
            f"{len(view.blocks)} chars, expected {len(ref.final_html)} (first difference at "
            f"{_first_difference(view.blocks, ref.final_html)})"
        )
        return stats
    if not arrivals or arrivals[-1][1] != ref.end:
        got = arrivals[-1][1] if arrivals else 0
        stats.error = (
            f"the text streamed to {got} of {len(expected)} chars (shown whole at {ref.end})"
        )
        return stats
    if len(sent) != shape.chunks:
        stats.error = f"upstream sent {len(sent)} of {shape.chunks} chunks"
        return stats
    if not stats.finished:
        stats.error = "no final message"
        return stats
    # Which frame brought each chunk, and when.
    ends = shape.chunk_ends()
    chunk_frame: list[int] = []
    arrival_at: list[float] = []
    k = 0
    for end in ends:
        # (a chunk that changed nothing on the page after the last state came with it)
        while arrivals[k][1] < min(end, ref.end):
            k += 1
        chunk_frame.append(k)
        arrival_at.append(arrivals[k][0])
    # The coalescing window's own waiting: an ideal coalescer with no cost sends frame k at
    # max(its newest chunk's send time, the previous frame + window); the first at once.
    ideal: dict[int, float] = {}
    previous = -math.inf
    for j, k in enumerate(chunk_frame):
        newest = sent[j]
        if j + 1 < len(chunk_frame) and chunk_frame[j + 1] == k:
            continue  # not the newest chunk of its frame
        ideal[k] = max(newest, previous + window)
        previous = ideal[k]
    stats.latency = [a - u for a, u in zip(arrival_at, sent, strict=True)]
    stats.latency_ex = [a - ideal[k] for a, k in zip(arrival_at, chunk_frame, strict=True)]
    stats.sent_at = list(sent)
    stats.first_text = arrivals[0][0]
    stats.last_text = arrivals[-1][0]
    stats.ttft = stats.first_text - result.submitted
    stats.ttft_upstream = sent[0] - record["received"]
    stats.ok = True
    return stats


def _first_difference(a: str, b: str) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


@dataclass
class BaselineStats:
    ok: bool
    error: str = ""
    latency: list[float] = field(default_factory=list)
    added_ttft: float = math.nan
    submitted: float = 0.0
    first_text: float = 0.0
    last_text: float = 0.0
    tokens: int = 0


def analyse_baseline(result: BaselineResult, record: dict[str, Any] | None) -> BaselineStats:
    stats = BaselineStats(ok=False, tokens=result.shape.tokens, submitted=result.submitted)
    if result.error or record is None:
        stats.error = result.error or "the upstream has no record of this stream"
        return stats
    sent = record["sent"]
    if len(result.arrivals) != len(sent):
        stats.error = f"got {len(result.arrivals)} of {len(sent)} chunks"
        return stats
    stats.latency = [a - u for a, u in zip(result.arrivals, sent, strict=True)]
    stats.added_ttft = (result.arrivals[0] - result.submitted) - (sent[0] - record["received"])
    stats.first_text = result.arrivals[0]
    stats.last_text = result.arrivals[-1]
    stats.ok = True
    return stats


def summary(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    """p50, p90, p99, max (in ms by default)."""
    if not values:
        return {"p50": math.nan, "p90": math.nan, "p99": math.nan, "max": math.nan}
    arr = np.asarray(values) * scale
    return {
        "p50": float(np.percentile(arr, 50)),
        "p90": float(np.percentile(arr, 90)),
        "p99": float(np.percentile(arr, 99)),
        "max": float(arr.max()),
    }
