"""Django's ASGI handler, with the middleware and the view run as one synchronous call, in a
thread kept from one request to the next."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse
from django.http.response import HttpResponseBase
from django.urls import set_script_prefix

# Request threads kept between requests (each with its database connection, on SQLite); more
# requests at once than this get a thread of their own for the time they run, as Django gives
# every request.
KEPT_THREADS = 8


class RequestThread(ThreadPoolExecutor):
    """One thread that runs one request's synchronous work at a time: what Django's handler
    makes anew for every request (asgiref's `ThreadSensitiveContext`)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="http")
        self._last: Future[Any] | None = None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self._last = future = super().submit(fn, *args, **kwargs)
        return future

    @property
    def idle(self) -> bool:
        """Nothing queued or running (one thread runs the calls in order, so the last one
        submitted is the last to finish)."""
        return self._last is None or self._last.done()


class RequestThreads:
    """Request threads lent out one per request, and kept (up to `kept`) for the next ones.

    Under Django's own handler every request gets a new thread: a thread started, and on SQLite
    a database connection opened (and its schema read) for every page, which CONN_MAX_AGE cannot
    keep. Here a request runs in a thread a previous one used, with its connection. A request
    never waits for a thread: while the database is away each one waits the pool's timeout, and
    they must not queue behind each other."""

    def __init__(self, kept: int = KEPT_THREADS) -> None:
        self.kept = kept
        self._idle: list[RequestThread] = []
        self._lock = threading.Lock()

    def take(self) -> RequestThread:
        with self._lock:
            if self._idle:
                return self._idle.pop()  # the most recently used: its connection is warm
        return RequestThread()

    def give_back(self, thread: RequestThread) -> None:
        # A request whose client went away may have left its view running: that thread is not
        # lent again until it is done, it is let go.
        if thread.idle:
            with self._lock:
                if len(self._idle) < self.kept:
                    self._idle.append(thread)
                    return
        # Its database connection is closed as it goes (after the view, if one still runs):
        # left to the garbage collector, a burst of requests left as many connections open.
        thread.submit(_close_connections)
        thread.shutdown(wait=False)

    def close(self) -> None:
        """Close the kept threads' database connections and stop the threads (tests)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for thread in idle:
            thread.submit(_close_connections).result()
            thread.shutdown()


def _close_connections() -> None:
    from django.db import connections

    connections.close_all()


class SyncChainASGIHandler(ASGIHandler):
    """Every view here is synchronous. Django's own ASGI handler builds the middleware chain
    async: each middleware that can run either way (most of ours) then runs its sync hooks
    with a hop of its own to a thread and back (`MiddlewareMixin.__acall__`), about fifteen
    hops a request, each a few hundred microseconds of CPU. Here the request is served as
    under WSGI, in one hop: the request signals, the middleware chain and the view, in a
    thread kept from one request to the next (`threads`)."""

    # A page is sent in one message to the server, not in 64 KiB pieces: each message costs
    # the server a write of its own (a conversation page is some 100 KB).
    chunk_size = 2**20

    def __init__(self) -> None:
        super().__init__()
        self.threads = RequestThreads()

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        # The request's thread-sensitive calls (the request signals, the chain, closing the
        # response) all go to the thread lent for it, as Django's handler sends them to the
        # thread it makes.
        thread = self.threads.take()
        try:
            async with ThreadSensitiveContext(executor=thread):
                await self.handle(scope, receive, send)
        finally:
            self.threads.give_back(thread)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's `ASGIHandler.handle`, with everything synchronous done in one hop
        (`serve`). A client that goes away meanwhile cannot stop a synchronous view; its
        response is dropped by the server."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        try:
            response = await sync_to_async(self.serve, thread_sensitive=True)(scope, body_file)
            try:
                await self.send_response(response, send)
            finally:
                if response.streaming:
                    await sync_to_async(response.close, thread_sensitive=True)()
        finally:
            body_file.close()

    def serve(self, scope: dict[str, Any], body_file: Any) -> HttpResponseBase:
        """The request's response, as `WSGIHandler.__call__` makes it. A response that is not
        streamed is closed here, before it is sent (its content is made already): that sends
        `request_finished` in this hop rather than another."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__  # type: ignore[attr-defined]
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
        assert response is not None
        if not response.streaming:
            response.close()
        return response


def get_asgi_application() -> SyncChainASGIHandler:
    """`django.core.asgi.get_asgi_application` with that handler."""
    django.setup(set_prefix=False)
    return SyncChainASGIHandler()
