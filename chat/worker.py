"""Running the streaming consumer: inside the web process (no Redis), or as `runworker`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.layers import get_channel_layer
from channels.worker import Worker
from django.conf import settings

logger = logging.getLogger(__name__)


class StreamWorker(Worker):
    """The Channels worker for the `chat-stream` channel."""


class EmbeddedWorkerMiddleware:
    """Starts the streaming consumer on the server's event loop at the first ASGI call.

    Daphne has no lifespan events, and nothing can reach the `chat-stream` channel before the
    first request, so the first call of any kind is early enough.
    """

    def __init__(self, application: Any) -> None:
        self.application = application
        self._started_on: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        loop = asyncio.get_running_loop()
        if self._started_on is not loop:
            self._started_on = loop
            worker = StreamWorker(
                application=self.application,
                channels=[settings.CHAT_STREAM_CHANNEL],
                channel_layer=get_channel_layer(),
            )
            self._task = loop.create_task(worker.arun())
            logger.info("streaming consumer running inside the web process")
        return await self.application(scope, receive, send)
