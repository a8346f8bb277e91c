"""Daphne's TCP writes go out at once when nothing waits before them (chatsite.twisted_writes),
and keep Twisted's order, buffering and connection-loss reporting otherwise.

Each test drives a real `twisted.internet.tcp.Connection` over a socket pair, with Twisted's
MemoryReactorClock standing in for the reactor: what the reactor would be asked to watch shows in
its `writers`."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from twisted.internet import main, tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock

from chatsite import twisted_writes


@pytest.fixture
def pair() -> Iterator[tuple[tcp.Connection, socket.socket, MemoryReactorClock]]:
    assert twisted_writes.install()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    reactor = MemoryReactorClock()
    connection = tcp.Connection(ours, Protocol(), reactor=reactor)  # type: ignore[arg-type]
    connection.connected = True
    yield connection, theirs, reactor
    ours.close()
    theirs.close()


def received(theirs: socket.socket, size: int) -> bytes:
    theirs.settimeout(2)
    data = b""
    while len(data) < size:
        chunk = theirs.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def drain(connection: tcp.Connection, theirs: socket.socket, size: int) -> bytes:
    """Read `size` bytes, letting the connection flush its buffer as the reactor would."""
    theirs.setblocking(False)
    data = b""
    for _ in range(100_000):
        if connection in connection.reactor.writers:
            assert connection.doWrite() in (None, main.CONNECTION_DONE)  # done: closing
        try:
            data += theirs.recv(1 << 20)
        except BlockingIOError:
            pass
        if len(data) >= size:
            break
    return data


def test_a_write_goes_out_at_once_without_the_reactor(pair):
    connection, theirs, reactor = pair
    connection.write(b"frame one")
    connection.write(b"frame two")
    assert not reactor.writers  # nothing left for the reactor to flush
    assert received(theirs, 18) == b"frame oneframe two"


def test_what_the_kernel_does_not_take_is_buffered_and_later_writes_keep_their_order(pair):
    connection, theirs, reactor = pair
    big = bytes(range(256)) * 40_000  # 10 MB: more than a socket pair's buffers hold
    connection.write(big)
    assert connection in reactor.writers  # the rest waits for the reactor
    connection.write(b"after")  # must not overtake the buffered rest
    assert drain(connection, theirs, len(big) + 5) == big + b"after"
    assert not reactor.writers
    connection.write(b"again at once")
    assert not reactor.writers
    assert received(theirs, 13) == b"again at once"


def test_a_closed_peer_is_reported_as_a_lost_connection(pair):
    connection, theirs, reactor = pair
    theirs.close()
    connection.write(b"x" * 100_000)  # the send fails (EPIPE) or the kernel takes a little
    connection.write(b"y")
    assert connection in reactor.writers
    results = {connection.doWrite() for _ in range(50)}
    assert main.CONNECTION_LOST in results


def test_a_disconnected_or_closing_connection_takes_twisteds_own_path(pair):
    connection, theirs, reactor = pair
    connection.connected = False
    connection.write(b"dropped")  # Twisted drops writes on a lost connection
    assert not reactor.writers
    connection.connected = True
    connection.disconnecting = True
    connection.write(b"queued")  # a closing connection flushes through the reactor
    assert connection in reactor.writers
    assert drain(connection, theirs, 6) == b"queued"


def test_install_is_idempotent():
    assert twisted_writes.install()
    first = tcp.Connection.write
    assert twisted_writes.install()
    assert tcp.Connection.write is first


def test_a_pull_producer_is_asked_for_more_as_the_buffer_drains(pair):
    """Twisted asks a pull (non-streaming) producer for its next chunk only from `doWrite`, once
    the buffer is empty: its writes must go through the buffer, or it would never be asked."""
    connection, theirs, reactor = pair

    class Chunks:
        def __init__(self) -> None:
            self.left = 5

        def resumeProducing(self) -> None:
            if self.left:
                self.left -= 1
                connection.write(b"chunk")

        def stopProducing(self) -> None:
            pass

    producer = Chunks()
    connection.registerProducer(producer, False)  # registering asks for the first chunk
    assert drain(connection, theirs, 25) == b"chunk" * 5
    assert producer.left == 0


def test_an_aborted_connection_sends_nothing_more(pair):
    connection, theirs, reactor = pair
    connection.abortConnection()
    connection.write(b"after the abort")
    theirs.setblocking(False)
    with pytest.raises(BlockingIOError):
        theirs.recv(100)
