"""Outages: logged once each way, and a clear answer to pages and sockets meanwhile."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import OperationalError
from django.urls import reverse

from chat import outages
from chat.middleware import TRY_AGAIN_LATER, WebSocketServiceMiddleware
from chat.outages import ChannelLayerAway, Outage


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
