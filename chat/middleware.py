"""A clear answer while Redis or the database is away, instead of an error and a traceback.

`ServiceUnavailableMiddleware` (Django): a page that meets either away answers 503 at once
(`Retry-After`; a full page reloads itself, an htmx request gets a line to show).
`WebSocketServiceMiddleware` (ASGI): a socket that meets either away, while it opens or later,
closes with 4013 (our Try Again Later), on which the page reconnects. While the database is
known to be away, a socket that opens gets 4013 at once, without waiting on the database.
Neither logs: the outage's one WARNING (chat.outages) says it all.
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis.exceptions
from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

from . import outages

RETRY_AFTER_SECONDS = 5
# WebSocket close code: the registered 1013 (Try Again Later) in the range open to applications,
# as daphne sends no other; static/chat/chat.js reconnects on it.
TRY_AGAIN_LATER = 4013

# The cache (login throttling, the model list) is Redis too.
_CACHE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

UNAVAILABLE_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{RETRY_AFTER_SECONDS}">
<title>Back in a moment</title>
</head>
<body>
<main>
<h1>Back in a moment</h1>
<p>The chat is briefly unavailable. This page tries again by itself in a few seconds.</p>
</main>
</body>
</html>
"""
UNAVAILABLE_LINE = "The chat is briefly unavailable. Try again in a few seconds."


def _note_outage(error: BaseException) -> bool:
    """Whether `error` means a service is away (noting it so); call from the failed thread."""
    if isinstance(error, outages.DATABASE_ERRORS):
        outages.database_failed(error)
    elif isinstance(error, _CACHE_ERRORS):
        outages.redis.went_away(error)
    elif not isinstance(error, outages.ServiceAway):
        return False
    return True


async def _anote_outage(error: BaseException) -> bool:
    """`_note_outage` from async code: a database error on the ORM's thread, which ran the
    query (its connections are dropped there); any other at once, as that thread may be busy
    (waiting on the database for other sockets)."""
    if isinstance(error, outages.DATABASE_ERRORS):
        return await sync_to_async(_note_outage)(error)
    return _note_outage(error)


class ServiceUnavailableMiddleware(MiddlewareMixin):
    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not _note_outage(exception):
            return None
        if request.headers.get("HX-Request"):
            response = HttpResponse(UNAVAILABLE_LINE, status=503, content_type="text/plain")
        else:
            response = HttpResponse(UNAVAILABLE_PAGE, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        # Django logs every 5xx response as an error; this one is expected, and logged once
        # for the whole outage.
        response._has_been_logged = True  # type: ignore[attr-defined]
        return response


class WebSocketServiceMiddleware:
    """Wraps the whole WebSocket stack: the session and user are read from the database
    before any consumer runs."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        accepted = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal accepted
            if message["type"] == "websocket.accept":
                accepted = True
            await send(message)

        try:
            # Before the session and user are read: queued behind other sockets' calls on the
            # ORM's thread, each waiting the pool's timeout, a handshake would outlast daphne's
            # handshake timeout (5 s), and daphne would drop it without an HTTP answer.
            await outages.database_needed()
            await self.application(scope, receive, tracking_send)
        except Exception as error:
            if not await _anote_outage(error):
                raise
            # Accept first if need be: a refused handshake reads as "not allowed" (403).
            with contextlib.suppress(Exception):  # the socket may be gone already
                if not accepted:
                    await send({"type": "websocket.accept"})
                await send({"type": "websocket.close", "code": TRY_AGAIN_LATER})
