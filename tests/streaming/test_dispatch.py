"""dispatch_many: the consumers' intake, in place of Channels' await_many_dispatch."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.exceptions import ChannelFull, StopConsumer

from chat.streaming.channel_layers import InProcessChannelLayer
from chat.streaming.dispatch import Inbox, dispatch_many


def _source(queue: asyncio.Queue[dict[str, Any]]) -> Any:
    async def receive() -> dict[str, Any]:
        return await queue.get()

    return receive


async def test_messages_are_dispatched_one_at_a_time_in_each_sources_order():
    socket: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    layer: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    seen: list[str] = []
    running = 0

    async def dispatch(message: dict[str, Any]) -> None:
        nonlocal running
        running += 1
        assert running == 1  # never two handlers at once
        await asyncio.sleep(0)
        seen.append(message["n"])
        running -= 1
        if message["n"] == "stop":
            raise StopConsumer

    for i in range(20):
        layer.put_nowait({"n": f"l{i}"})
        if i % 4 == 0:
            socket.put_nowait({"n": f"s{i}"})
    task = asyncio.create_task(dispatch_many([_source(socket), _source(layer)], dispatch))
    await asyncio.sleep(0.05)
    socket.put_nowait({"n": "stop"})
    with pytest.raises(StopConsumer):
        await asyncio.wait_for(task, 2)
    assert [n for n in seen if n.startswith("l")] == [f"l{i}" for i in range(20)]
    assert [n for n in seen if n[0] == "s" and n != "stop"] == [f"s{i}" for i in range(0, 20, 4)]
    assert seen[-1] == "stop"


async def test_an_error_from_a_source_comes_out_and_the_other_sources_stop():
    cancelled = asyncio.Event()

    async def broken() -> dict[str, Any]:
        raise ConnectionError("gone")

    async def idle() -> dict[str, Any]:
        try:
            await asyncio.sleep(60)
        finally:
            cancelled.set()
        return {}

    async def dispatch(message: dict[str, Any]) -> None:
        pass

    with pytest.raises(ConnectionError):
        await asyncio.wait_for(dispatch_many([idle, broken], dispatch), 2)
    assert cancelled.is_set()


async def test_an_attached_inbox_takes_the_channels_messages_in_order_up_to_its_capacity():
    """The in-process layer puts an attached channel's messages straight into the consumer's
    inbox: what was queued before first, then each send, in order; a full inbox drops, as a
    full queue does; once detached, messages queue for `receive` again."""
    layer = InProcessChannelLayer(capacity=3)
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    await layer.send(channel, {"type": "t", "n": 0})  # before the consumer attached
    inbox = Inbox()
    detach = layer.attach(channel, inbox)
    await layer.group_send("g", {"type": "t", "n": 1})
    await layer.send(channel, {"type": "t", "n": 2})
    await layer.group_send("g", {"type": "t", "n": 3})  # the inbox holds 3: dropped
    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "t", "n": 4})
    assert [(await inbox.get())["n"] for _ in range(3)] == [0, 1, 2]
    await layer.group_send("g", {"type": "t", "n": 5})
    assert len(inbox) == 1 and (await inbox.get())["n"] == 5
    detach()
    await layer.group_send("g", {"type": "t", "n": 6})
    assert len(inbox) == 0
    assert (await layer.receive(channel))["n"] == 6
