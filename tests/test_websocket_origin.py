"""Which pages may open a WebSocket: exactly the site's own origins (scheme, host and port)."""

from __future__ import annotations

from typing import Any

import pytest
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings

from chat import services


class Accepting(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()


async def opens(
    origin: str | None,
    *,
    host: str = "chat.example.com",
    scheme: str | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> bool:
    """Whether a handshake from `origin` to `host` gets through to the application."""
    from chatsite.websocket_origin import SiteOriginValidator

    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    comm = WebsocketCommunicator(
        SiteOriginValidator(Accepting.as_asgi()), "/ws/", headers=headers + (extra or [])
    )
    if scheme is not None:
        comm.scope["scheme"] = scheme
    connected, _ = await comm.connect()
    await comm.disconnect()
    return connected


@pytest.fixture(autouse=True)
def site(settings: Any) -> Any:
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = []
    settings.SECURE_PROXY_SSL_HEADER = None
    settings.USE_X_FORWARDED_HOST = False
    return settings


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://chat.example.com", True),
        ("https://chat.example.com", False),  # the handshake came over plain ws
        ("http://chat.example.com:8080", False),
        ("http://chat.example.com:80", False),
        ("http://sub.chat.example.com", False),
        ("http://evil.example", False),
        ("http://chat.example.com.evil.example", False),
        ("null", False),
        ("", False),
        (None, False),
    ],
)
async def test_only_the_sites_own_origin_opens_a_socket(origin: str | None, allowed: bool):
    assert await opens(origin) is allowed


async def test_the_port_in_the_host_header_is_part_of_the_origin():
    assert await opens("http://chat.example.com:8000", host="chat.example.com:8000")
    assert not await opens("http://chat.example.com", host="chat.example.com:8000")
    assert not await opens("http://chat.example.com:8080", host="chat.example.com:8000")


async def test_a_host_outside_allowed_hosts_has_no_own_origin():
    assert not await opens("http://evil.example", host="evil.example")


async def test_a_secure_handshake_accepts_the_https_origin_only():
    assert await opens("https://chat.example.com", scheme="wss")
    assert not await opens("http://chat.example.com", scheme="wss")


PROXIED_HTTPS = [(b"x-forwarded-proto", b"https")]


async def test_behind_a_proxy_x_forwarded_proto_sets_the_scheme(site: Any):
    site.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert await opens("https://chat.example.com", extra=PROXIED_HTTPS)
    assert not await opens("http://chat.example.com", extra=PROXIED_HTTPS)
    assert not await opens("http://chat.example.com:8080", extra=PROXIED_HTTPS)
    assert not await opens("https://chat.example.com:8443", extra=PROXIED_HTTPS)
    assert await opens("http://chat.example.com", extra=[(b"x-forwarded-proto", b"http")])


async def test_x_forwarded_proto_is_ignored_unless_the_proxy_header_is_configured():
    assert not await opens("https://chat.example.com", extra=PROXIED_HTTPS)


async def test_csrf_trusted_origins_are_accepted_exactly(site: Any):
    site.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com", "https://*.example.org"]
    assert await opens("https://chat.example.com")
    assert await opens("https://a.example.org")
    assert not await opens("http://a.example.org")
    assert not await opens("https://chat.example.com:8443")


async def test_x_forwarded_host_counts_only_when_configured(site: Any):
    forwarded = [(b"x-forwarded-host", b"chat.example.com")]
    assert not await opens("http://chat.example.com", host="127.0.0.1:8001", extra=forwarded)
    site.USE_X_FORWARDED_HOST = True
    assert await opens("http://chat.example.com", host="127.0.0.1:8001", extra=forwarded)


# --- The real WebSocket stack (chatsite.asgi), with a logged-in session ------------------------


@pytest.fixture
def conversation(user: Any) -> Any:
    return services.conversation_create(owner=user)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://chat.example.com", True),
        ("http://chat.example.com:8080", False),
        ("http://chat.example.com", False),
    ],
)
async def test_an_authenticated_socket_opens_from_the_https_site_only(
    site: Any, conversation: Any, alice_session: str, origin: str, allowed: bool
):
    from chatsite.asgi import websocket_application

    site.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    cookie = f"{django_settings.SESSION_COOKIE_NAME}={alice_session}".encode()
    comm = WebsocketCommunicator(
        websocket_application,
        f"/ws/c/{conversation.pk}/",
        headers=[
            (b"host", b"chat.example.com"),
            (b"origin", origin.encode()),
            (b"cookie", cookie),
            *PROXIED_HTTPS,
        ],
    )
    connected, _ = await comm.connect()
    await comm.disconnect()
    assert connected is allowed
