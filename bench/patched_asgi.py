"""Experiments only: the app with candidate fixes monkeypatched in, to measure a proposed fix
before anyone edits the app. `--only patched` serves `bench.patched_asgi:application`; the
environment variable BENCH_PATCHES (comma-separated) picks the patches:

- `dispatch`: Channels 4.3's AsyncConsumer.dispatch runs `close_old_connections` on the
  thread-sensitive executor before every handler, i.e. one thread hop (and, with
  CONN_MAX_AGE=0, a closed database connection) per delta per socket. Skip it for the
  channel-layer events, whose handlers either touch no database or go through
  `database_sync_to_async`, which closes old connections itself.
- `clean`: InMemoryChannelLayer scans every channel and group membership on every send and
  receive (`_clean_expired`); run that scan at most once a second.
- `coalescer`: FrameCoalescer anchors its window on the time after the send returned, so each
  frame adds the send's duration and the timer's lateness to the next; anchor it on the
  schedule instead.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from chatsite.asgi import application  # sets Django up first

PATCHES = {p.strip() for p in os.environ.get("BENCH_PATCHES", "").split(",") if p.strip()}

if "dispatch" in PATCHES:
    from channels.consumer import AsyncConsumer, get_handler_name

    _dispatch = AsyncConsumer.dispatch
    LAYER_EVENTS = ("message.", "messages.", "conversation.", "generation.", "generate")

    async def dispatch(self: Any, message: dict[str, Any]) -> None:
        if str(message.get("type", "")).startswith(LAYER_EVENTS):
            handler = getattr(self, get_handler_name(message), None)
            if handler is not None:
                await handler(message)
                return
        await _dispatch(self, message)

    AsyncConsumer.dispatch = dispatch  # type: ignore[method-assign]

if "clean" in PATCHES:
    from channels.layers import InMemoryChannelLayer

    _clean = InMemoryChannelLayer._clean_expired

    def clean_expired(self: Any) -> None:
        now = time.monotonic()
        if now - getattr(self, "_bench_cleaned", 0.0) >= 1.0:
            self._bench_cleaned = now
            _clean(self)

    InMemoryChannelLayer._clean_expired = clean_expired  # type: ignore[method-assign]

if "coalescer" in PATCHES:
    import logging

    from chat.generation import FrameCoalescer

    logger = logging.getLogger("chat.generation")

    async def _run(self: Any) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()  # the earliest time the next frame may go
        while True:
            await self._wakeup.wait()
            delay = next_at - loop.time()
            waited = delay > 0 and not self._closing
            if waited:
                await asyncio.sleep(delay)
            self._wakeup.clear()
            frame = self._take()
            if frame is not None:
                # On the schedule when it waited for the window, from now when it did not.
                next_at = (next_at if waited else loop.time()) + self._window
                try:
                    await self._send(frame)
                except Exception:
                    logger.exception("could not send a frame; clients will resynchronise")
            if self._closing and not self._wakeup.is_set():
                return

    FrameCoalescer._run = _run  # type: ignore[method-assign]

__all__ = ["application"]
