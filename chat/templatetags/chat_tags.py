import functools
import json
import uuid
from datetime import timedelta
from typing import Any

from django import template
from django.conf import settings
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.utils.safestring import SafeString, mark_safe
from django_htmx.jinja import django_htmx_script, htmx_script

from .. import articles, fragments, links
from ..article_cache import DrawnArticle
from ..markdown import render_markdown
from ..selectors import SidebarPage

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


_ANY_ID = uuid.UUID(int=0)
MESSAGE_ARTICLE = "chat/conversation.html#message-article"


@register.simple_tag
def chat_url(name: str, *args: Any) -> str:
    """`{% url name arg ... %}`, reversed once per name (chat.links)."""
    return links.url(name, *args)


@register.simple_tag
def sidebar_items(sidebar: SidebarPage) -> SafeString:
    """The sidebar's `items` partial: the `items-markup` partial of templates/chat/_sidebar.html,
    byte for byte, built here (the list page draws nothing else)."""
    escape = articles.escape
    url = escape(links.url("chat:conversation_sidebar"))
    mode = listed = more = ""
    if sidebar.archived and sidebar.first:
        back = f"{url}?current={escape(sidebar.current)}" if sidebar.current else url
        mode = (
            '\n  <li class="list-mode">Archived\n'
            f'    <button id="list-back" type="button" class="link" hx-get="{back}"\n'
            '            hx-target="#conversation-list" hx-swap="innerHTML">Back to all</button>'
            "</li>\n"
        )
    if sidebar.entries:
        listed = f"\n  {sidebar_entries(sidebar)}\n"
    elif sidebar.first:
        if sidebar.query:
            text = f"Nothing matches “{escape(sidebar.query)}”."
        elif sidebar.archived:
            text = "No archived conversations."
        else:
            text = "No conversations yet."
        listed = f'\n  <li class="muted">{text}</li>\n'
    if sidebar.next_cursor:
        more = (
            '\n  <li class="load-more">\n'
            f'    <button type="button" hx-get="{url}?{escape(sidebar.next_params)}"\n'
            '            hx-trigger="click, intersect once" hx-target="closest li" '
            'hx-swap="outerHTML">Show more</button>\n'
            "  </li>\n"
        )
    return mark_safe(f"\n{mode}\n{listed}\n{more}\n")


@register.simple_tag
def sidebar_entries(sidebar: SidebarPage) -> SafeString:
    """The sidebar's list items: built here rather than in a template loop, which cost about
    0.1 ms an entry, most of a page's time with 50 of them."""
    # The URL as urls.py has it, formatted for each entry.
    url = links.url("chat:conversation_detail", _ANY_ID).replace(str(_ANY_ID), "{}")
    # Compared as text: the UUIDs' own == is a Python call per entry.
    current = str(sidebar.current) if sidebar.current is not None else None
    parts = []
    for heading, item in sidebar.entries:
        if heading:
            parts.append(f'<li class="group-heading"><h2>{articles.escape(heading)}</h2></li>')
        pk = str(item.pk)
        mark = ' aria-current="page"' if pk == current else ""
        title = articles.escape(item.title or "New conversation")
        link = f'<a id="conv-link-{pk}" href="{url.format(pk)}"{mark}>{title}</a>'
        if item.archived and not sidebar.archived:  # a search's: say it is archived
            link = f'<li class="archived">{link}<span class="archived-mark">Archived</span></li>'
        else:
            link = f"<li>{link}</li>"
        parts.append(link)
    return mark_safe("\n".join(parts))


# The page head's files: their URLs cannot change while the process runs (the static files
# storage and its manifest are read at startup), so each is found once per process and setting.


@register.simple_tag
def asset(path: str) -> str:
    """`{% static path %}`, found once."""
    return _asset(path, settings.STATIC_URL)


@functools.cache
def _asset(path: str, static_url: str) -> str:
    return static(path)


@register.simple_tag(takes_context=True)
def htmx_scripts(context: template.Context, extensions: str) -> SafeString:
    """django-htmx's `{% htmx_script extensions=... %}`, drawn once (per nonce, if any),
    without its debug script (`htmx_script_tags`)."""
    return htmx_script_tags(extensions, context.get("csp_nonce"))


def htmx_script_tags(extensions: str, nonce: Any) -> SafeString:
    """The `htmx_scripts` tag's output for a context whose `csp_nonce` is `nonce`: htmx and
    its extensions, without django-htmx's debug script. With DEBUG on, that script drew
    Django's error page over the whole page for any action answered 400, 403, 404 or 500,
    which the page explains itself (static/chat/chat.js): a message sent in a conversation
    deleted in another tab left the page for a yellow "Page not found", and what was typed
    with it."""
    if nonce is not None:
        return _without_debug(htmx_script(extensions=extensions, nonce=nonce), nonce)
    return _htmx_scripts(extensions, settings.STATIC_URL, settings.DEBUG)


@functools.cache
def _htmx_scripts(extensions: str, static_url: str, debug: bool) -> SafeString:
    return _without_debug(htmx_script(extensions=extensions), None)


def _without_debug(tags: SafeString, nonce: Any) -> SafeString:
    debug = django_htmx_script(nonce=nonce)
    return mark_safe(tags.replace(debug, "")) if debug else tags  # (django-htmx's own tags)


@register.simple_tag(takes_context=True)
def message_list(context: template.Context, messages: Any) -> SafeString:
    """`{% for message in messages %}{% partial message %}{% endfor %}`, built in one go (each
    message is built by chat.articles; a loop of partials cost some 15 microseconds a message)."""
    return articles_html(
        messages,
        csrf_token=context.get("csrf_token"),
        oob=bool(context.get("oob")),
        continued=context.get("continued"),
    )


def articles_html(
    messages: Any, *, csrf_token: Any, oob: bool, continued: int | None = None
) -> SafeString:
    """The `message_list` tag's output for a context with this `csrf_token` and `oob` (and
    the reply a Continue has just restarted, `continued`: see `fragments.streaming_view`)."""
    parts = []
    for message in messages:
        if isinstance(message, DrawnArticle):
            parts.append(message.html(csrf_token))
        elif not message.is_active:
            parts.append(articles.finished_message(message, oob=oob, csrf_token=csrf_token))
        elif message.role == "assistant":
            view = fragments.streaming_view(message, continued=message.pk == continued)
            parts.append(articles.streaming_reply(message, view=view, oob=oob))
        else:
            parts.append(
                render_to_string(
                    MESSAGE_ARTICLE, {"message": message, "oob": oob, "csrf_token": csrf_token}
                )
            )
    return mark_safe("".join(parts))


@register.simple_tag(takes_context=True)
def streaming_reply(context: template.Context, message: Any) -> SafeString:
    """The `message` partial of a reply still generated, built by chat.articles."""
    view = fragments.streaming_view(message)
    return mark_safe(articles.streaming_reply(message, view=view, oob=bool(context.get("oob"))))


@register.simple_tag(takes_context=True)
def finished_message(context: template.Context, message: Any) -> SafeString:
    """The `message` partial of a message that is not streaming, built by chat.articles (or
    drawn already, by chat.article_cache)."""
    if isinstance(message, DrawnArticle):
        return mark_safe(message.html(context.get("csrf_token")))
    return mark_safe(
        articles.finished_message(
            message, oob=bool(context.get("oob")), csrf_token=context.get("csrf_token")
        )
    )
