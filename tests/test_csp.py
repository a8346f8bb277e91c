"""chat.middleware.CSPMiddleware: django-csp's headers, the settings' policy built once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.exceptions import CSPNonceError
from csp.middleware import CSPMiddleware as DjangoCSPMiddleware
from django.http import HttpResponse
from django.test import RequestFactory

from chat.middleware import CSPMiddleware

REPORT_ONLY = {"DIRECTIVES": {"default-src": ["'self'"], "report-uri": "/csp-report/"}}


def _answer(middleware: type, path: str, status: int, change: Callable[..., Any]) -> Any:
    request = RequestFactory().get(path)
    response = HttpResponse(status=status)
    tool = middleware(lambda request: response)
    tool.process_request(request)
    change(request, response)
    return request, tool.process_response(request, response)


CHANGES: dict[str, Callable[..., Any]] = {
    "plain": lambda request, response: None,
    "nonce used": lambda request, response: str(request.csp_nonce),
    "own policy": lambda request, response: setattr(
        response, "_csp_update", {"img-src": ["https://example.com"]}
    ),
    "own report-only policy": lambda request, response: setattr(
        response, "_csp_replace_ro", {"default-src": ["'none'"]}
    ),
    "exempt": lambda request, response: setattr(response, "_csp_exempt", True),
    "exempt from report-only": lambda request, response: setattr(response, "_csp_exempt_ro", True),
    "header set already": lambda request, response: response.__setitem__(HEADER, "x"),
}


@pytest.mark.parametrize("change", list(CHANGES))
@pytest.mark.parametrize("path", ["/", "/excluded/page/"])
@pytest.mark.parametrize("status", [200, 404])
@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("report_only", [False, True])
def test_the_headers_are_django_csps(
    settings: Any, change: str, path: str, status: int, debug: bool, report_only: bool
) -> None:
    settings.DEBUG = debug
    settings.CONTENT_SECURITY_POLICY = {
        **settings.CONTENT_SECURITY_POLICY,
        "EXCLUDE_URL_PREFIXES": ["/excluded/"],
    }
    if report_only:
        settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = REPORT_ONLY
    for _ in range(2):  # built, then remembered
        _, expected = _answer(DjangoCSPMiddleware, path, status, CHANGES[change])
        _, answered = _answer(CSPMiddleware, path, status, CHANGES[change])
        for header in (HEADER, HEADER_REPORT_ONLY):
            assert answered.get(header) == expected.get(header), header


def test_a_changed_setting_changes_the_header(settings: Any) -> None:
    _, before = _answer(CSPMiddleware, "/", 200, CHANGES["plain"])
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'none'"]}}
    _, after = _answer(CSPMiddleware, "/", 200, CHANGES["plain"])
    assert "script-src 'self'" in before[HEADER]
    assert after[HEADER] == "default-src 'none'"


def test_a_nonce_asked_for_after_the_header_is_written_is_refused() -> None:
    request, _ = _answer(CSPMiddleware, "/", 200, CHANGES["plain"])
    with pytest.raises(CSPNonceError):
        str(request.csp_nonce)
