"""Where the model lives: the one shared httpx client (on aiohttp's HTTP/1.1 engine: `transport`)
and the stream client built from settings."""

from __future__ import annotations

import asyncio
import weakref

import httpx
from django.conf import settings

from .client import ChatCompletionsClient, RetryPolicy, StreamTimeouts
from .demo import DemoTransport
from .transport import NetworkTransport

DEMO_BASE_URL = "http://demo.invalid/v1"

# One AsyncClient per event loop (a client's connection pool belongs to the loop it runs on;
# a server process has one loop, a test run has many).
_http_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def base_url() -> str:
    return DEMO_BASE_URL if settings.CHAT_DEMO_MODE else settings.OPENAI_BASE_URL


def http_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _http_clients.get(loop)
    if client is None or client.is_closed:
        limits = httpx.Limits(
            max_connections=settings.CHAT_MAX_CONCURRENT_GENERATIONS + 10,
            max_keepalive_connections=20,
        )
        transport: httpx.AsyncBaseTransport = (
            DemoTransport(settings.CHAT_DEMO_TOKENS_PER_SECOND)
            if settings.CHAT_DEMO_MODE
            else NetworkTransport(limits=limits)
        )
        client = httpx.AsyncClient(
            base_url=base_url() + "/",
            transport=transport,
            limits=limits,
            timeout=httpx.Timeout(settings.CHAT_CONNECT_TIMEOUT, read=settings.CHAT_IDLE_TIMEOUT),
            follow_redirects=False,
        )
        _http_clients[loop] = client
    return client


def chat_completions_client() -> ChatCompletionsClient:
    return ChatCompletionsClient(
        http_client(),
        api_key=settings.OPENAI_API_KEY,
        retry=RetryPolicy(
            max_retries=settings.CHAT_MAX_RETRIES,
            base_delay=settings.CHAT_RETRY_BASE_DELAY,
            max_delay=settings.CHAT_RETRY_MAX_DELAY,
        ),
        timeouts=StreamTimeouts(
            connect=settings.CHAT_CONNECT_TIMEOUT,
            idle=settings.CHAT_IDLE_TIMEOUT,
            total=settings.CHAT_TOTAL_TIMEOUT,
        ),
    )


async def close_http_clients() -> None:
    for client in list(_http_clients.values()):
        await client.aclose()
    _http_clients.clear()
