"""The frame coalescer: the first delta at once, then one frame per window; nothing dropped."""

from __future__ import annotations

import asyncio

from chat.streaming.coalescer import Frame, FrameCoalescer


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
