"""Autobahn's debug log arguments are made only when a debug line is written
(chatsite.websocket_logs): a socket's handshake no longer pretty-prints its configuration."""

from __future__ import annotations

import pprint
from typing import Any

import pytest
from autobahn.websocket import protocol as autobahn_protocol
from daphne.ws_protocol import WebSocketFactory
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from chatsite import websocket_logs

CONFIG = [("openHandshakeTimeout", 5, "WebSocketFactory"), ("autoPingInterval", 20.0, "x")]


def test_install_is_idempotent() -> None:
    assert websocket_logs.install()
    assert autobahn_protocol.pformat is websocket_logs.LazyPformat
    assert websocket_logs.install()
    assert autobahn_protocol.pformat is websocket_logs.LazyPformat


def test_a_new_socket_pretty_prints_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert websocket_logs.install()
    printed: list[Any] = []
    original = pprint.PrettyPrinter.pformat
    monkeypatch.setattr(
        pprint.PrettyPrinter,
        "pformat",
        lambda self, value: printed.append(value) or original(self, value),
    )
    factory = WebSocketFactory(None, server="chatsite-test")
    socket: Any = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    socket.makeConnection(StringTransport())
    assert socket.state == autobahn_protocol.WebSocketProtocol.STATE_CONNECTING
    assert printed == []


@pytest.mark.parametrize("spec", ["{attrs}", "\n{attrs}", "{attrs!s}", "{attrs!r}", "{attrs:>300}"])
def test_a_written_line_reads_as_before(spec: str) -> None:
    expected = spec.format(attrs=pprint.pformat(CONFIG))
    assert spec.format(attrs=websocket_logs.LazyPformat(CONFIG)) == expected


def test_timings_still_read_as_text() -> None:
    assert websocket_logs.install()
    timings = autobahn_protocol.Timings()
    timings.track("onOpen")
    assert str(timings) == pprint.pformat(timings._timings)
