from typing import Any

from django.conf import settings
from django.http import HttpRequest

# Set by chat.js when the person hides the demo model's notice: the pages leave it out.
DEMO_NOTICE_COOKIE = "chat_demo_notice"


def demo_notice_shown(request: HttpRequest) -> bool:
    """Whether a page shows the demo model's notice: while the demo model answers, until the
    person hides it in this browser."""
    return settings.CHAT_DEMO_MODE and request.COOKIES.get(DEMO_NOTICE_COOKIE) != "hidden"


def upstream(request: HttpRequest) -> dict[str, Any]:
    """Whether the pages show the demo model's notice (never the URL or key of a real
    model)."""
    return {
        "demo_notice": demo_notice_shown(request),
        "demo_notice_cookie": DEMO_NOTICE_COOKIE,
    }
