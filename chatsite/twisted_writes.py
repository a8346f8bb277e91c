"""Daphne's TCP connections send a write at once when nothing is waiting before it.

Twisted buffers every write and sends it only when the reactor next finds the socket writable:
per WebSocket frame that is an epoll registration, a pass of the event loop, the send and an
epoll deregistration, about a fifth of the relay's CPU in a profile of 100 streams. asyncio's
own transports (and so uvicorn) try the send first and buffer only what the kernel did not take;
`install()` gives Twisted's TCP connections the same path.

Order and back-pressure are kept: the fast path runs only while Twisted's buffers are empty,
the connection is open (not closing, aborted or half-closed), no pull producer waits for the
buffer to drain (Twisted asks it for more only then), no file descriptor is queued (Unix
sockets) and `startTLS` has not wrapped it (a TLS listener's encrypted bytes do take it);
whatever the kernel does not take, and any socket error, goes to Twisted's own `write`, which
buffers it and reports a lost connection as it always does.
"""

from __future__ import annotations

import errno
import sys
from typing import Any

_RETRY_LATER = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.EINTR)


def install() -> bool:
    """Patch `twisted.internet.tcp.Connection` once, where daphne has loaded Twisted; True if the
    fast path is (now) in place."""
    if "twisted.internet" not in sys.modules:
        return False  # not under daphne: nothing to do
    from twisted.internet import tcp

    connection: Any = tcp.Connection
    if getattr(connection.write, "sends_at_once", False):
        return True
    buffered_write = connection.write

    def write(self: Any, data: bytes) -> None:
        if (
            data
            and type(data) is bytes
            and not self.TLS
            and self.connected
            and not self.disconnecting
            and not self._aborting
            and not self._writeDisconnected
            and not self._tempDataBuffer
            and len(self.dataBuffer) == self.offset
            and (self.producer is None or self.streamingProducer)
            and not getattr(self, "_sendmsgQueue", None)
        ):
            try:
                sent = self.socket.send(data)
            except OSError as error:
                if error.errno not in _RETRY_LATER:
                    buffered_write(self, data)  # the reactor reports the lost connection
                    return
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        buffered_write(self, data)

    write.sends_at_once = True  # type: ignore[attr-defined]
    connection.write = write
    return True
