import json
from datetime import timedelta
from typing import Any

from django import template
from django.utils.safestring import SafeString, mark_safe

from .. import fragments
from ..markdown import render_markdown

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    return mark_safe(render_markdown(text or ""))


@register.filter
def seconds(value: timedelta | None) -> str:
    if value is None:
        return ""
    total = value.total_seconds()
    return f"{total * 1000:.0f} ms" if total < 1 else f"{total:.1f} s"


@register.filter
def pretty_json(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return text


@register.simple_tag
def streaming_view(message: Any) -> dict[str, SafeString]:
    """A streaming reply's text as the page shows it: settled blocks and the open tail."""
    return fragments.streaming_view(message)
