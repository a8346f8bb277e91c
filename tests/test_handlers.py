"""The ASGI handler: requests run in threads kept from one request to the next."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import path

from chatsite.handlers import RequestThread, RequestThreads, SyncChainASGIHandler

seen: list[tuple[str, int, int | None]] = []
gate: dict[str, Any] = {}


def where(request: HttpRequest) -> HttpResponse:
    connection.ensure_connection()
    seen.append(("view", threading.get_ident(), id(connection.connection)))
    return HttpResponse("ok")


def blocked(request: HttpRequest) -> HttpResponse:
    """Waits until `gate["expected"]` requests are in here at once."""
    with gate["lock"]:
        gate["inside"] += 1
        if gate["inside"] == gate["expected"]:
            gate["all_in"].set()
    if not gate["all_in"].wait(timeout=10):
        return HttpResponse("alone", status=500)
    return HttpResponse("together")


urlpatterns = [path("where/", where), path("blocked/", blocked)]


def on_signal(**kwargs: Any) -> None:
    seen.append(("signal", threading.get_ident(), None))


async def get(app: SyncChainASGIHandler, url: str) -> tuple[int, bytes]:
    received = [{"type": "http.request", "body": b""}]
    ended = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if received:
            return received.pop()
        await ended.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": url,
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1234),
    }
    await app(scope, receive, send)
    ended.set()
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture
async def app(settings: Any) -> AsyncIterator[SyncChainASGIHandler]:
    settings.ROOT_URLCONF = __name__
    settings.ALLOWED_HOSTS = ["testserver"]
    seen.clear()
    request_started.connect(on_signal)
    request_finished.connect(on_signal)
    handler = SyncChainASGIHandler()
    yield handler
    request_started.disconnect(on_signal)
    request_finished.disconnect(on_signal)
    await asyncio.to_thread(handler.threads.close)


@pytest.mark.django_db(transaction=True)
async def test_requests_one_after_another_run_in_one_thread_with_one_connection(app, monkeypatch):
    hops: list[object] = []
    submit = RequestThread.submit

    def counted(self: RequestThread, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        hops.append(fn)
        return submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(RequestThread, "submit", counted)
    for _ in range(3):
        assert await get(app, "/where/") == (200, b"ok")
    assert len(hops) == 3  # one hop to a thread a request: signals, middleware and view
    threads = {thread for _, thread, _ in seen}
    connections = {conn for kind, _, conn in seen if kind == "view"}
    # The request signals (which close old connections) run there too, not in threads of
    # their own.
    assert len(threads) == 1 and threading.get_ident() not in threads
    if connection.settings_dict["CONN_MAX_AGE"]:  # kept (SQLite); PostgreSQL has its pool
        assert len(connections) == 1
    assert [kind for kind, _, _ in seen] == ["signal", "view", "signal"] * 3


@pytest.mark.django_db(transaction=True)
async def test_requests_at_once_never_wait_for_each_other_and_few_threads_are_kept(app):
    app.threads.kept = 2
    at_once = 5
    gate.update(lock=threading.Lock(), inside=0, expected=at_once, all_in=threading.Event())
    results = await asyncio.gather(*(get(app, "/blocked/") for _ in range(at_once)))
    assert results == [(200, b"together")] * at_once
    assert len(app.threads._idle) == 2


def test_a_thread_still_busy_is_not_lent_again():
    threads = RequestThreads(kept=4)
    thread = threads.take()
    release = threading.Event()
    thread.submit(release.wait, 10)
    threads.give_back(thread)  # its request went away with the view still running
    assert threads.take() is not thread
    release.set()
    thread.shutdown()
    idle = threads.take()
    threads.give_back(idle)
    assert threads.take() is idle
    idle.shutdown()


@pytest.mark.django_db(transaction=True)
def test_a_thread_not_kept_closes_its_database_connection_as_it_goes():
    """A burst of requests beyond the kept threads left each extra thread's database
    connection open until the garbage collector found it (hundreds after a burst)."""
    from django.db import connections as all_connections

    def connect() -> object:
        all_connections["default"].ensure_connection()
        return all_connections["default"]

    threads = RequestThreads(kept=1)
    kept, extra = threads.take(), threads.take()
    kept_connection = kept.submit(connect).result()
    extra_connection = extra.submit(connect).result()
    threads.give_back(kept)
    threads.give_back(extra)  # one more than the threads kept: it goes
    extra.shutdown(wait=True)
    assert extra_connection.connection is None  # closed, not left open
    assert kept_connection.connection is not None  # kept, with its thread, for the next request
    threads.close()
    assert kept_connection.connection is None
