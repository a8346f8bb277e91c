"""Event dispatch shared by the app's two consumers (the WebSocket one and the streaming one)."""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer

Source = Callable[[], Awaitable[dict[str, Any]]]


class Inbox:
    """The messages the sources gave, for one consumer to take in order: a deque and one
    waiter (an asyncio.Queue costs every idle socket another kilobyte or two)."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: collections.deque[Any] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def fail(self, error: BaseException) -> None:
        """The dispatching task raises `error` when it comes to it."""
        self.put(_Failed(error))

    def put(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()


class _Failed:
    """A source's exception, carried through the inbox to the dispatching task."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def dispatch_many(
    sources: list[Source],
    dispatch: Callable[[Any], Awaitable[None]],
    inbox: Inbox | None = None,
) -> None:
    """Channels' `await_many_dispatch`, cheaper per message: one long-lived task per source
    feeds one inbox, where Channels runs `asyncio.wait` over all the sources and starts a new
    task for every message (at 50 streams, a tenth of the WebSocket consumer's time per frame).
    Whoever holds `inbox` can also put messages in it directly (the in-process channel layer).

    Messages are dispatched one at a time, in the order each source gave them; an exception a
    source raises comes out of this function when its turn comes, as it does from Channels'.
    """
    if inbox is None:
        inbox = Inbox()

    async def pump(source: Source) -> None:
        this = asyncio.current_task()
        try:
            while True:
                message = await source()
                # A source can swallow a cancellation (on Python 3.11 an `asyncio.wait_for`
                # inside it may): then the pump must stop by itself, or closing never ends.
                if this is not None and this.cancelling():
                    return
                inbox.put(message)
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            inbox.put(_Failed(error))

    pumps = [asyncio.ensure_future(pump(source)) for source in sources]
    try:
        while True:
            message = await inbox.get()
            if isinstance(message, _Failed):
                raise message.error
            await dispatch(message)
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


class DirectEventDispatch:
    """Handle channel-layer events without Channels' per-event connection cleanup, and take
    them in with `dispatch_many`.

    `AsyncConsumer.dispatch` runs `aclose_old_connections()` (a hop to Django's one shared
    sync thread) before every handler. For a delta that touches no database it only queues
    the delta behind other database work; measured at 200 streams it was the largest cost
    in the relay. Handlers here that do use the database go through `database_sync_to_async`,
    which closes old connections itself. WebSocket protocol events keep the default.
    """

    channel_layer_alias: str
    channel_layer: Any
    channel_name: str
    scope: dict[str, Any]
    base_send: Any

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """`AsyncConsumer.__call__` with `dispatch_many` in place of `await_many_dispatch`."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        sources: list[Source] = [receive]
        inbox = Inbox()
        detach: Callable[[], None] | None = None
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            attach = getattr(self.channel_layer, "attach", None)
            if attach is not None:
                # In process: the layer puts the channel's messages in the inbox as they are
                # sent (no queue, and no task woken in between).
                detach = attach(self.channel_name, inbox)
            else:
                sources.append(functools.partial(self.channel_layer.receive, self.channel_name))
        self.base_send = send
        try:
            await dispatch_many(sources, self.dispatch, inbox)
        except StopConsumer:
            pass
        finally:
            if detach is not None:
                detach()

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message["type"].startswith("websocket."):
            await super().dispatch(message)  # type: ignore[misc]
            return
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
