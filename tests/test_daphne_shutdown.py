"""Daphne's shutdown cancels every socket's consumer, one opened a moment before it too
(chatsite.daphne_shutdown). The end-to-end check, on Redis, is in tests/e2e/test_scale_out.py."""

from __future__ import annotations

import asyncio

import pytest
from daphne.http_protocol import WebRequest
from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from chatsite import daphne_shutdown


def test_install_is_idempotent() -> None:
    assert daphne_shutdown.install()
    patched = Server.kill_all_applications
    assert daphne_shutdown.install()
    assert Server.kill_all_applications is patched


async def test_stopping_cancels_the_sockets_listed_after_an_upgraded_request() -> None:
    """The request a WebSocket was upgraded from ran no application, and daphne lists it until
    its next cleanup pass: a shutdown in that second raised KeyError on it and cancelled
    nothing listed after it."""
    daphne_shutdown.install()
    server = Server(application=None, endpoints=["tcp:port=0:interface=127.0.0.1"])  # never run
    opened_before = asyncio.ensure_future(asyncio.sleep(3600))
    opened_just_now = asyncio.ensure_future(asyncio.sleep(3600))
    finished = asyncio.get_running_loop().create_future()
    finished.set_result(None)
    server.connections = {
        "socket opened before": {"connected": 0.0, "application_instance": opened_before},
        "request upgraded just now": {"connected": 1.0, "disconnected": 1.0},
        "socket opened just now": {"connected": 1.0, "application_instance": opened_just_now},
        "request answered": {"connected": 0.5, "application_instance": finished},
    }
    stopped = asyncio.get_running_loop().create_future()
    server.kill_all_applications().addBoth(stopped.set_result)
    for socket in (opened_before, opened_just_now):
        with pytest.raises(asyncio.CancelledError):
            await socket
    await asyncio.wait_for(stopped, 5)  # Twisted's wait for them all ends once they have


async def test_stopping_closes_each_socket_and_lets_requests_finish(monkeypatch) -> None:
    """An open socket is closed with 4013 (the page reconnects, to another process) as its
    consumer is cancelled: it used to stay open and silent until the process ended, which the
    shutdown's grace period makes long. A request being answered is let finish, for up to
    REQUEST_GRACE_SECONDS, and only then cancelled."""
    monkeypatch.setattr(daphne_shutdown, "REQUEST_GRACE_SECONDS", 0.5)
    daphne_shutdown.install()
    server = Server(application=None, endpoints=["tcp:port=0:interface=127.0.0.1"])  # never run
    closed: list[int | None] = []
    socket = object.__new__(WebSocketProtocol)
    socket.state = WebSocketProtocol.STATE_OPEN
    socket.serverClose = lambda code=None: closed.append(code)  # type: ignore[method-assign]
    consumer = asyncio.ensure_future(asyncio.sleep(3600))
    quick = asyncio.ensure_future(asyncio.sleep(0.1, "answered"))
    slow = asyncio.ensure_future(asyncio.sleep(3600))
    server.connections = {
        socket: {"connected": 0.0, "application_instance": consumer},
        object.__new__(WebRequest): {"connected": 0.0, "application_instance": quick},
        object.__new__(WebRequest): {"connected": 0.0, "application_instance": slow},
    }
    stopped = asyncio.get_running_loop().create_future()
    server.kill_all_applications().addBoth(stopped.set_result)
    assert closed == [4013]
    await asyncio.sleep(0)
    assert consumer.cancelled() and not quick.done() and not slow.done()
    await asyncio.wait_for(stopped, 5)
    assert quick.result() == "answered"
    assert slow.cancelled()


async def test_stopping_closes_a_socket_whose_handshake_was_not_answered_yet() -> None:
    """A socket whose consumer had not accepted it yet (its checks still running) is accepted
    and closed with 4013 like an open one. It was left waiting, its consumer cancelled, until
    daphne's 5 s connect timeout rejected it, and only then did the page try again."""
    daphne_shutdown.install()

    async def consumer_still_checking(scope, receive, send) -> None:
        await asyncio.sleep(3600)

    server = Server(
        application=consumer_still_checking, endpoints=["tcp:port=0:interface=127.0.0.1"]
    )
    server.connections = {}
    here = IPv4Address("TCP", "127.0.0.1", 8000)
    socket = WebSocketFactory(server, server=server.server_name).buildProtocol(here)
    socket._raw_query_string = b""  # set by the HTTP request it is upgraded from
    wire = StringTransport(hostAddress=here, peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
    socket.makeConnection(wire)
    socket.dataReceived(
        b"GET /ws/c/1/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    await asyncio.sleep(0)
    (details,) = server.connections.values()
    consumer = details["application_instance"]
    assert socket.state == WebSocketProtocol.STATE_CONNECTING and wire.value() == b""

    stopped = asyncio.get_running_loop().create_future()
    server.kill_all_applications().addBoth(stopped.set_result)
    await asyncio.wait_for(stopped, 5)
    assert consumer.cancelled()
    response, _, frames = wire.value().partition(b"\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 101 ")
    assert frames == b"\x88\x02" + daphne_shutdown.TRY_AGAIN_LATER.to_bytes(2, "big")
