"""The data migrations' one way to render stored replies' HTML anew (the loader skips modules
whose names begin with an underscore)."""

from collections.abc import Callable
from typing import Any


def render_finished_replies(apps: Any, chosen: Callable[[str], bool] = lambda text: True) -> None:
    """Render anew the HTML of every finished reply whose text (its content and reasoning)
    is `chosen`, by today's renderer."""
    from chat.markdown import render_markdown

    Message = apps.get_model("chat", "Message")
    replies = Message.objects.filter(role="assistant").exclude(status__in=["pending", "streaming"])
    batch = []
    for message in replies.only("pk", "content", "reasoning").iterator(chunk_size=500):
        if not chosen(message.content + message.reasoning):
            continue
        message.content_html = render_markdown(message.content)
        message.reasoning_html = render_markdown(message.reasoning) if message.reasoning else ""
        batch.append(message)
        if len(batch) >= 500:
            Message.objects.bulk_update(batch, ["content_html", "reasoning_html"])
            batch = []
    Message.objects.bulk_update(batch, ["content_html", "reasoning_html"])
