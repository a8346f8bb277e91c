"""Daphne's text messages go out as one frame built at once (chatsite.websocket_frames): the
same bytes and traffic counts as autobahn's general path, which still takes every other case.

Each test drives a real daphne `WebSocketProtocol`, built by daphne's factory and connected to
Twisted's StringTransport, which records what would go on the wire."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from autobahn.exception import Disconnected, PayloadExceededError
from autobahn.websocket.protocol import WebSocketProtocol as Autobahn
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from chatsite import websocket_frames

STATS = (
    "outgoingWebSocketMessages",
    "outgoingOctetsAppLevel",
    "outgoingOctetsWebSocketLevel",
    "outgoingWebSocketFrames",
    "outgoingOctetsWireLevel",
)


def general_send(protocol: Any, content: Any, binary: bool = False) -> None:
    """What daphne's serverSend did before: autobahn's `sendMessage`."""
    protocol.sendMessage(content if binary else content.encode("utf8"), binary)


@pytest.fixture
def opened() -> Iterator[tuple[Any, StringTransport]]:
    assert websocket_frames.install()
    factory = WebSocketFactory(None, server="chatsite-test")
    protocol: Any = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.client_addr = ["127.0.0.1", 40000]
    protocol.state = Autobahn.STATE_OPEN  # as after the handshake
    transport.clear()
    yield protocol, transport


def stats(protocol: Any) -> tuple[int, ...]:
    return tuple(getattr(protocol.trafficStats, name) for name in STATS)


def test_install_is_idempotent() -> None:
    assert websocket_frames.install()
    first = WebSocketProtocol.serverSend
    assert websocket_frames.install()
    assert WebSocketProtocol.serverSend is first
    assert getattr(first, "writes_frames", False)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_the_frame_is_autobahns_byte_for_byte(opened: Any, size: int) -> None:
    protocol, transport = opened
    text = ("é" * (size // 2)) + ("a" * (size % 2))  # two bytes a character, in UTF-8
    assert len(text.encode()) == size
    before = stats(protocol)

    protocol.serverSend(text)
    fast, fast_stats = transport.value(), stats(protocol)
    transport.clear()
    general_send(protocol, text)
    general = transport.value()

    assert fast == general
    assert fast[0] == 0x81  # FIN, text
    assert fast.endswith(text.encode())
    # The traffic counts grew by as much on both paths.
    grown = [after - start for after, start in zip(fast_stats, before, strict=True)]
    assert [b - a for a, b in zip(fast_stats, stats(protocol), strict=True)] == grown
    assert grown == [1, size, size, 1, len(fast)]


def test_binary_takes_the_general_path(opened: Any) -> None:
    protocol, transport = opened
    protocol.serverSend(b"\x00\x01", True)
    assert transport.value() == b"\x82\x02\x00\x01"  # FIN, binary


def test_a_closing_socket_refuses_as_autobahn_does(opened: Any) -> None:
    protocol, transport = opened
    protocol.state = Autobahn.STATE_CLOSING
    with pytest.raises(Disconnected):
        protocol.serverSend("late")
    assert transport.value() == b""


def test_fragmenting_is_autobahns(opened: Any) -> None:
    protocol, transport = opened
    protocol.autoFragmentSize = 4
    protocol.serverSend("abcdefghij")
    # Three frames: text "abcd" without FIN, two continuations, the last with FIN.
    assert transport.value() == b"\x01\x04abcd\x00\x04efgh\x80\x02ij"


def test_an_oversized_message_is_refused_as_autobahn_does(opened: Any) -> None:
    protocol, transport = opened
    protocol.maxMessagePayloadSize = 8
    with pytest.raises(PayloadExceededError):
        protocol.serverSend("123456789")
    assert transport.value() == b""
    protocol.serverSend("12345678")  # at the limit: sent
    assert transport.value() == b"\x81\x0812345678"


def test_a_frame_queued_before_keeps_its_place(opened: Any) -> None:
    protocol, transport = opened
    triggered: list[bool] = []
    protocol._trigger = lambda: triggered.append(True)  # the reactor would drain the queue
    protocol.sendData(b"\x81\x05first", sync=True)  # queued, not yet written
    protocol.serverSend("second")
    assert transport.value() == b""
    assert [data for data, _ in protocol.send_queue] == [b"\x81\x05first", b"\x81\x06second"]
    assert triggered


def test_frame_logging_takes_the_general_path(opened: Any) -> None:
    protocol, transport = opened
    logged: list[Any] = []
    protocol.logFrames = True
    protocol.logTxFrame = lambda *args: logged.append(args)
    protocol.serverSend("hi")
    assert transport.value() == b"\x81\x02hi"
    assert logged  # autobahn's path logged the frame
