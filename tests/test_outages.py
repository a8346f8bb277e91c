"""Outages: logged once each way, and a clear answer to pages and sockets meanwhile."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import OperationalError
from django.urls import reverse

from chat import outages, services
from chat.middleware import TRY_AGAIN_LATER, WebSocketServiceMiddleware
from chat.outages import ChannelLayerAway, Outage
from chat.routing import websocket_urlpatterns
from chat.socket_auth import socket_auth_stack
from tests.sockets import closed_with


@pytest.fixture(autouse=True)
def services_back():
    yield
    outages.database.came_back()
    outages.redis.came_back()


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(caplog):
    outage = Outage("Redis")
    with caplog.at_level(logging.INFO, logger="chat.outages"):
        for _ in range(5):
            outage.went_away(ConnectionError("Connection refused"))
        assert outage.away and outage.away_for() > 0 and outage.back_for() == 0
        outage.came_back()
        outage.came_back()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "Redis is unreachable (ConnectionError: Connection refused); riding it out"),
        ("INFO", "Redis is back after 0.0 s"),
    ]
    assert not any(r.exc_info for r in caplog.records)  # no traceback for an expected fault
    assert not outage.away and outage.returns == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("htmx", [False, True])
def test_a_page_that_meets_the_database_away_answers_503_and_logs_only_the_outage(
    alice_client, monkeypatch, caplog, htmx
):
    def away(**kwargs: Any) -> None:
        raise OperationalError("connection failed: Connection refused")

    monkeypatch.setattr("chat.views.selectors.conversation_sidebar_page", away)
    headers = {"HX-Request": "true"} if htmx else {}
    with caplog.at_level(logging.INFO):
        response = alice_client.get(reverse("chat:start"), headers=headers)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    body = response.content.decode()
    if htmx:  # a line the page shows where the action failed
        assert response["Content-Type"].startswith("text/plain") and "unavailable" in body
    else:  # a page that reloads itself
        assert '<meta http-equiv="refresh" content="5">' in body
    assert outages.database.away
    # Django logs every 5xx as an error with the request; this one is expected.
    assert not [r for r in caplog.records if r.name == "django.request"]


def test_an_error_that_is_not_an_outage_is_left_to_django():
    from chat.middleware import ServiceUnavailableMiddleware

    middleware = ServiceUnavailableMiddleware(lambda request: None)
    assert middleware.process_exception(None, ValueError("a bug")) is None  # type: ignore[arg-type]


async def sent_by(app: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    await WebSocketServiceMiddleware(app)({"type": "websocket"}, receive, send)
    return sent


async def test_a_socket_that_meets_redis_away_while_opening_is_accepted_and_closed_4013():
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ChannelLayerAway("Connection refused")

    # Accepted first: a refused handshake would read as "not allowed".
    assert await sent_by(app) == [
        {"type": "websocket.accept"},
        {"type": "websocket.close", "code": TRY_AGAIN_LATER},
    ]


async def test_an_open_socket_that_meets_redis_away_is_closed_4013():
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept"})
        raise ChannelLayerAway("Connection reset by peer")

    sent = await sent_by(app)
    assert sent[1:] == [{"type": "websocket.close", "code": TRY_AGAIN_LATER}]


async def test_a_socket_whose_consumer_has_a_bug_still_raises():
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        await sent_by(app)


@pytest.fixture
def database_away(monkeypatch):
    """The database found away, and every probe finds it away still."""
    monkeypatch.setattr(outages, "_next_database_probe", 0.0)
    monkeypatch.setattr(outages, "_database_probes", 0)
    monkeypatch.setattr(outages, "_database_accepts_connections", lambda: False)
    outages.database.went_away(OperationalError("connection failed: Connection refused"))


def orm_thread_busy(seconds: float) -> asyncio.Future[None]:
    """The ORM's one thread, which every socket's database calls share, busy for `seconds`: as
    while other sockets' calls each wait the pool's timeout for a database that is away."""
    return asyncio.ensure_future(sync_to_async(time.sleep)(seconds))


async def test_a_socket_that_opens_while_the_database_is_away_is_closed_4013_at_once(
    database_away,
):
    busy = orm_thread_busy(2.0)
    reached = []

    def read_session() -> None:
        reached.append(True)
        raise OperationalError("couldn't get a connection after 1.00 sec")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await database_sync_to_async(read_session)()  # as the session middleware does

    started = time.monotonic()
    sent = await sent_by(app)
    answered_in = time.monotonic() - started
    await busy
    assert sent == [
        {"type": "websocket.accept"},
        {"type": "websocket.close", "code": TRY_AGAIN_LATER},
    ]
    # Not queued behind the busy thread: daphne drops a handshake that takes 5 s, with no
    # HTTP answer for the page to retry on.
    assert answered_in < 1.0 and not reached


async def test_a_socket_opens_as_usual_once_a_probe_finds_the_database_back(
    database_away, monkeypatch
):
    monkeypatch.setattr(outages, "_database_accepts_connections", lambda: True)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept"})

    assert await sent_by(app) == [{"type": "websocket.accept"}]


@pytest.mark.django_db(transaction=True)
async def test_an_open_socket_asked_for_a_reply_while_the_database_is_away_closes_4013_untried(
    user, alice_session, monkeypatch
):
    conversation = await sync_to_async(services.conversation_create)(owner=user)
    comm = WebsocketCommunicator(
        WebSocketServiceMiddleware(socket_auth_stack(URLRouter(websocket_urlpatterns))),
        f"/ws/c/{conversation.pk}/",
        headers=[(b"cookie", f"{settings.SESSION_COOKIE_NAME}={alice_session}".encode())],
    )
    assert (await comm.connect())[0]
    monkeypatch.setattr(outages, "_next_database_probe", 0.0)
    monkeypatch.setattr(outages, "_database_accepts_connections", lambda: False)
    outages.database.went_away(OperationalError("connection failed: Connection refused"))
    tried = []

    async def session_is_current(**kwargs: Any) -> bool:
        tried.append(kwargs)  # would hold the ORM's thread for the pool's timeout, then fail
        return True

    monkeypatch.setattr("chat.consumers.socket_auth.session_is_current", session_is_current)
    await comm.send_to(text_data=json.dumps({"resync": 1}))
    assert await closed_with(comm) == TRY_AGAIN_LATER
    assert not tried
    await comm.disconnect()


async def test_until_a_query_finds_the_database_back_a_caller_is_let_through_once_a_second(
    database_away, monkeypatch
):
    # The probe finds the database, but the pool has not reconnected yet: every caller let
    # through holds the ORM's thread for the pool's timeout, and fails.
    monkeypatch.setattr(outages, "_database_accepts_connections", lambda: True)
    clock = SimpleNamespace(monotonic=lambda: 1000.0)
    monkeypatch.setattr(outages, "time", clock)
    let_through = []
    for tick in range(1000):  # 10 s
        clock.monotonic = lambda tick=tick: 1000.0 + tick / 100
        if await outages.database_answers():
            let_through.append(tick / 100)
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(let_through)]
    assert gaps == [0.1, 0.2, 0.4, 0.8] + [1.0] * (len(gaps) - 4)
    outages.database.came_back()  # a query found it
    assert await outages.database_answers()
    outages.database.went_away(OperationalError("connection failed: Connection refused"))
    clock.monotonic = lambda: 1020.0
    assert await outages.database_answers()  # probes start over from the shortest delay
    clock.monotonic = lambda: 1020.1
    assert await outages.database_answers()
