"""Daphne sends an application's text message as one WebSocket frame, written at once.

Every frame the relay sends went through autobahn's general path: `sendMessage` (type asserts,
compression and fragmentation checks), `sendFrame` (bit by bit header, the masking decision)
and `sendData` (a log call whose arguments, coloured with click, are built even when the log
level drops them), about half the CPU of sending a frame in a profile of 50 streams.
`install()` gives daphne's `serverSend` a short path for the case the relay always is: a text
message on an open socket with no compression, no fragmenting, no masking, no frame or octet
logging and nothing queued before it. It builds the same bytes (RFC 6455 section 5.2: FIN and
the text opcode, the payload length in 7, 16 or 64 bits, no mask from a server), counts them in
autobahn's traffic statistics as `sendMessage` would, and writes them to the transport. Any
other case (binary data, a closing socket, a negotiated extension, an oversized message) takes
autobahn's own path, which raises or queues as it always did.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")
_FIN_TEXT = 0x81  # FIN, opcode 1 (text)


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final text frame carrying `payload` (a server's frame)."""
    n = len(payload)
    if n <= 125:
        return _SHORT.pack(_FIN_TEXT, n) + payload
    if n <= 0xFFFF:
        return _MEDIUM.pack(_FIN_TEXT, 126, n) + payload
    return _LONG.pack(_FIN_TEXT, 127, n) + payload


def install() -> bool:
    """Patch `daphne.ws_protocol.WebSocketProtocol.serverSend` once, where daphne is loaded;
    True if the short path is (now) in place."""
    if "daphne.ws_protocol" not in sys.modules:
        return False  # not under daphne: nothing to do
    from autobahn.websocket.protocol import WebSocketProtocol as Autobahn
    from daphne.ws_protocol import WebSocketProtocol

    protocol: Any = WebSocketProtocol
    if getattr(protocol.serverSend, "writes_frames", False):
        return True
    general_send = protocol.serverSend
    open_state = Autobahn.STATE_OPEN
    ground = Autobahn.SEND_STATE_GROUND

    def serverSend(self: Any, content: Any, binary: bool = False) -> None:
        if (
            not binary
            and type(content) is str
            and self.state == open_state
            and self.send_state == ground
            and self._perMessageCompress is None
            and not self.autoFragmentSize
            and not self.maskServerFrames
            and not self.send_queue
            and not self.logFrames
            and not self.logOctets
            and not self.trackedTimings
        ):
            payload = content.encode("utf8")
            n = len(payload)
            if not 0 < self.maxMessagePayloadSize < n:
                raw = text_frame(payload)
                stats = self.trafficStats
                stats.outgoingWebSocketMessages += 1
                stats.outgoingOctetsAppLevel += n
                stats.outgoingOctetsWebSocketLevel += n
                stats.outgoingWebSocketFrames += 1
                stats.outgoingOctetsWireLevel += len(raw)
                self.transport.write(raw)
                return
        general_send(self, content, binary)

    serverSend.writes_frames = True  # type: ignore[attr-defined]
    protocol.serverSend = serverSend
    return True
