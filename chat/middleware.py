"""A clear answer while Redis or the database is away, instead of an error and a traceback;
and the Content-Security-Policy header's text built once (`CSPMiddleware`).

`ServiceUnavailableMiddleware` (Django): a page that meets either away answers 503 at once
(`Retry-After`; a full page reloads itself, an htmx request gets a line to show).
`WebSocketServiceMiddleware` (ASGI): a socket that meets either away, while it opens or later,
closes with 4013 (our Try Again Later), on which the page reconnects. While the database is
known to be away, a socket that opens gets 4013 at once, without waiting on the database.
Neither logs: the outage's one WARNING (chat.outages) says it all.

`PagesNotKeptMiddleware`: no cache keeps a page (HTML): the browser's Back asks for it again,
so a page shown from its history is never one drawn before (its message box's idempotency key
sent again took a new message for the old one, and lost it), nor a signed-out browser's
conversation.

`CSPMiddleware` is django-csp's, building the policy's text once per setting instead of for
every response (`dataclasses.asdict` and `build_policy` twice, some 330 Python calls, more than
a page's CSRF token costs). A response with a policy of its own (django-csp's decorators), or a
request that used its nonce, is answered by django-csp's own code, as before.
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis.exceptions
from asgiref.sync import sync_to_async
from csp import middleware as csp_middleware
from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.utils import build_policy
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils.cache import add_never_cache_headers
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


async def note_outage(error: BaseException) -> bool:
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
            if not await note_outage(error):
                raise
            # Accept first if need be: a refused handshake reads as "not allowed" (403).
            with contextlib.suppress(Exception):  # the socket may be gone already
                if not accepted:
                    await send({"type": "websocket.accept"})
                await send({"type": "websocket.close", "code": TRY_AGAIN_LATER})


# django-csp's per-response policy attributes (its decorators set them); a response with any
# of them is answered by django-csp's own code.
_OWN_POLICY = (
    "_csp_config",
    "_csp_update",
    "_csp_replace",
    "_csp_config_ro",
    "_csp_update_ro",
    "_csp_replace_ro",
)
# Each header, its setting, and the attribute that exempts a response from it.
_HEADERS = (
    (HEADER, "CONTENT_SECURITY_POLICY", "_csp_exempt", False),
    (HEADER_REPORT_ONLY, "CONTENT_SECURITY_POLICY_REPORT_ONLY", "_csp_exempt_ro", True),
)
_policies: dict[bool, str] = {}  # report_only -> the text build_policy gives the settings


@receiver(setting_changed, dispatch_uid="chat.middleware.csp_setting_changed")
def _forget_policies(*, setting: str, **kwargs: Any) -> None:
    if setting in ("CONTENT_SECURITY_POLICY", "CONTENT_SECURITY_POLICY_REPORT_ONLY"):
        _policies.clear()


def _policy(report_only: bool) -> str:
    """`build_policy` of the settings alone (no response's own policy, no nonce)."""
    text = _policies.get(report_only)
    if text is None:
        text = _policies[report_only] = build_policy(report_only=report_only)
    return text


class PagesNotKeptMiddleware(MiddlewareMixin):
    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        if "Cache-Control" not in response and response.get("Content-Type", "").startswith(
            "text/html"
        ):
            add_never_cache_headers(response)
        return response


class CSPMiddleware(csp_middleware.CSPMiddleware):
    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        """django-csp's `process_response`, with the settings' policy built once."""
        if getattr(request, "_csp_nonce", None) is not None or any(
            getattr(response, name, None) is not None for name in _OWN_POLICY
        ):
            return super().process_response(request, response)
        if response.status_code in (500, 404) and settings.DEBUG:
            return response  # (django-csp leaves Django's debug pages alone)
        for header, setting, exempt, report_only in _HEADERS:
            text = _policy(report_only)
            if not text or getattr(response, exempt, False) is not False or header in response:
                continue
            prefixes = (getattr(settings, setting, None) or {}).get("EXCLUDE_URL_PREFIXES") or ()
            if not request.path_info.startswith(tuple(prefixes)):
                response[header] = text
        # As django-csp does: a nonce asked for after the header is written is an error.
        request.csp_nonce = csp_middleware.CheckableLazyObject(  # type: ignore[attr-defined]
            self._csp_nonce_post_response
        )
        return response
