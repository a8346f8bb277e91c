"""A WebSocket handshake is let through only from the site's own origins: those CSRF trusts.

Channels' `AllowedHostsOriginValidator` compares host names only, so a page on
`http://host:8080` could open an authenticated socket to `https://host`. Here the Origin must
match scheme, host and port: an entry of CSRF_TRUSTED_ORIGINS, or the handshake's own scheme and
Host, the rule Django's CsrfViewMiddleware applies to a POST (SECURE_PROXY_SSL_HEADER,
USE_X_FORWARDED_HOST and ALLOWED_HOSTS included).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain


class SiteOriginValidator:
    """ASGI middleware: the inner application sees only handshakes from the site's origins."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            raise ValueError("SiteOriginValidator guards WebSocket connections only.")
        headers = _headers(scope)
        origins = headers.get("origin", [])
        # Browsers always send one Origin on a handshake; without it there is nothing to trust.
        if len(origins) == 1 and is_site_origin(origins[0], scope=scope, headers=headers):
            return await self.application(scope, receive, send)
        return await WebsocketDenier.as_asgi()(scope, receive, send)


def is_site_origin(origin: str, *, scope: dict[str, Any], headers: dict[str, list[str]]) -> bool:
    """Whether CsrfViewMiddleware would accept a POST from `origin` on this handshake."""
    own = _own_origin(scope, headers)
    if own is not None and origin == own:
        return True
    trusted = settings.CSRF_TRUSTED_ORIGINS
    if origin in trusted and "*" not in origin:
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    wildcards = (urlsplit(entry) for entry in trusted if "*" in entry)
    return any(
        wildcard.scheme == parsed.scheme
        and is_same_domain(parsed.netloc, wildcard.netloc.lstrip("*"))
        for wildcard in wildcards
    )


def _headers(scope: dict[str, Any]) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in scope.get("headers", []):
        headers.setdefault(name.decode("latin1").lower(), []).append(value.decode("latin1"))
    return headers


def _own_origin(scope: dict[str, Any], headers: dict[str, list[str]]) -> str | None:
    """`scheme://host[:port]` of the handshake itself, or None if its host is not allowed."""
    host = _host(headers)
    if host is None:
        return None
    return f"{_scheme(scope, headers)}://{host}"


def _scheme(scope: dict[str, Any], headers: dict[str, list[str]]) -> str:
    """`HttpRequest.scheme` for a handshake: the proxy's header wins only when configured."""
    if settings.SECURE_PROXY_SSL_HEADER:
        meta_name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        values = headers.get(_header_name(meta_name))
        if values:
            return "https" if values[0].split(",", 1)[0].strip() == secure_value else "http"
    return "https" if scope.get("scheme") in {"wss", "https"} else "http"


def _host(headers: dict[str, list[str]]) -> str | None:
    """`HttpRequest.get_host()` for a handshake, None where Django would raise DisallowedHost."""
    if settings.USE_X_FORWARDED_HOST and "x-forwarded-host" in headers:
        host = headers["x-forwarded-host"][0]
    elif "host" in headers:
        host = headers["host"][0]
    else:
        return None
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    domain, _port = split_domain_port(host)
    return host if domain and validate_host(domain, allowed_hosts) else None


def _header_name(meta_name: str) -> str:
    """`HTTP_X_FORWARDED_PROTO` (a request.META key) as the header `x-forwarded-proto`."""
    return meta_name.removeprefix("HTTP_").replace("_", "-").lower()
