"""Autobahn's debug log arguments are made only when a debug line is written
(chatsite.websocket_logs): a socket's handshake no longer pretty-prints its configuration or
colours method names."""

from __future__ import annotations

import pprint
from typing import Any

import pytest
from autobahn import util
from autobahn.twisted import websocket as autobahn_twisted
from autobahn.websocket import protocol as autobahn_protocol
from daphne.ws_protocol import WebSocketFactory
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from chatsite import websocket_logs

CONFIG = [("openHandshakeTimeout", 5, "WebSocketFactory"), ("autoPingInterval", 20.0, "x")]
HANDSHAKE = (
    b"GET /ws/c/x/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1\r\n\r\n"
)


def test_install_is_idempotent() -> None:
    assert websocket_logs.install()
    helpers = [
        getattr(module, name)
        for module in (autobahn_protocol, autobahn_twisted)
        for name in websocket_logs.HELPERS
        if hasattr(module, name)
    ]
    assert len(helpers) == 5 and all(getattr(h, "lazy_text", False) for h in helpers)
    assert websocket_logs.install()
    assert autobahn_protocol.pformat is helpers[0]
    assert autobahn_protocol.hltype.__wrapped__ is util.hltype


def test_a_new_socket_formats_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert websocket_logs.install()
    made: list[Any] = []
    original = pprint.PrettyPrinter.pformat
    monkeypatch.setattr(
        pprint.PrettyPrinter,
        "pformat",
        lambda self, value: made.append(value) or original(self, value),
    )
    hl = util.hl  # what colours a name (with click, when it is installed)
    monkeypatch.setattr(util, "hl", lambda text, **kw: made.append(text) or hl(text, **kw))
    factory = WebSocketFactory(None, server="chatsite-test")
    socket: Any = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    socket.makeConnection(StringTransport())
    socket.dataReceived(HANDSHAKE)
    assert socket.state == autobahn_protocol.WebSocketProtocol.STATE_CONNECTING
    assert made == []


@pytest.mark.parametrize("spec", ["{x}", "\n{x}", "{x!s}", "{x!r}", "{x:>300}"])
def test_a_written_line_reads_as_before(spec: str) -> None:
    assert websocket_logs.install()
    pairs = [
        (autobahn_protocol.pformat(CONFIG), pprint.pformat(CONFIG)),
        (
            autobahn_protocol.hltype(test_install_is_idempotent),
            util.hltype(test_install_is_idempotent),
        ),
        (autobahn_twisted.hlval(40000), util.hlval(40000)),
    ]
    for lazy, text in pairs:
        assert spec.format(x=lazy) == spec.format(x=text)


def test_timings_still_read_as_text() -> None:
    assert websocket_logs.install()
    timings = autobahn_protocol.Timings()
    timings.track("onOpen")
    assert str(timings) == pprint.pformat(timings._timings)
