from typing import Any

from django.conf import settings
from django.http import HttpRequest


def upstream(request: HttpRequest) -> dict[str, Any]:
    """Whether the demo model answers (never the URL or key of a real one)."""
    return {"demo_mode": settings.CHAT_DEMO_MODE}
