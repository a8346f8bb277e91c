"""Daphne's HTTP requests leave a POST's form body to Django (chatsite.daphne_requests): Twisted
parsed it into `request.args` on the event loop first, which daphne never reads.

Each test feeds a real daphne `HTTPFactory` protocol bytes over Twisted's StringTransport; a
stand-in server records the requests daphne hands on."""

from __future__ import annotations

from typing import Any

import pytest
from daphne.http_protocol import HTTPFactory
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web import http

from chatsite import daphne_requests


class RecordingServer:
    """What daphne's protocol asks of its server, for a request it hands on."""

    root_path = ""
    request_buffer_size = 8192
    server_name = "chatsite-test"
    http_timeout = None
    proxy_forwarded_address_header = None
    proxy_forwarded_port_header = None
    proxy_forwarded_proto_header = None
    ws_factory = None

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.queues: list[Any] = []

    def protocol_connected(self, protocol: Any) -> None:
        self.requests.append(protocol)

    def protocol_disconnected(self, protocol: Any) -> None:
        pass

    def log_action(self, *args: Any) -> None:
        pass

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        queue = _Queue()
        self.queues.append((scope, queue))
        return queue


class _Queue:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def put_nowait(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


def post(body: bytes, content_type: bytes) -> tuple[Any, list[dict[str, Any]]]:
    server = RecordingServer()
    factory: Any = HTTPFactory(server)
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(
        b"POST /login/ HTTP/1.1\r\nHost: testserver\r\nContent-Type: "
        + content_type
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    (request,) = server.requests
    (scope, queue) = server.queues[0]
    assert scope["method"] == "POST" and scope["path"] == "/login/"
    return request, queue.messages


def test_install_is_idempotent() -> None:
    assert daphne_requests.install()
    assert daphne_requests.install()


@pytest.mark.parametrize(
    "body, content_type",
    [
        (
            b"username=alice&password=secret&" + b"a=b&" * 2_000,
            b"application/x-www-form-urlencoded",
        ),
        (
            b'--XX\r\nContent-Disposition: form-data; name="f"\r\n\r\nvalue\r\n--XX--\r\n',
            b"multipart/form-data; boundary=XX",
        ),
    ],
)
def test_a_form_body_reaches_the_application_unparsed_and_whole(
    body: bytes, content_type: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    daphne_requests.install()
    parsed: list[bytes] = []
    real_parse = http.parse_qs
    monkeypatch.setattr(http, "parse_qs", lambda qs, *a: parsed.append(qs) or real_parse(qs, *a))
    request, messages = post(body, content_type)
    assert request.args == {}
    assert parsed == []  # (a query string would still be parsed: there is none)
    assert b"".join(m["body"] for m in messages if m["type"] == "http.request") == body


def test_without_it_twisted_parses_every_form_body() -> None:
    """What the patch turns off: Twisted's own default."""
    request = http.Request(_Channel())
    assert request._parsePOSTFormSubmission is True


class _Channel:
    transport = StringTransport()

    def getPeer(self) -> Any:
        return IPv4Address("TCP", "127.0.0.1", 40000)

    def getHost(self) -> Any:
        return IPv4Address("TCP", "127.0.0.1", 8000)
