"""The conversation page and the start page built in Python: the same HTML, byte for byte, as
templates/chat/conversation.html and templates/chat/start.html draw them (with base.html and the
sidebar around them).

The template engine spent about 1.2 ms of CPU on a page's shell (some 3,000 Python calls: two
hundred nodes, seven `{% csrf_token %}`, twenty URL tags), more than the messages and the
sidebar's list it wraps. The templates stay the source of truth: tests/test_pages.py holds
these functions to their output, for pages in every state. Every value is escaped as the
templates' autoescaping would (`articles.escape`); the message list and the sidebar's items are
built as the templates' tags build them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.http import HttpRequest
from django.middleware.csrf import get_token

from . import links
from .articles import conversation_title, csrf_input, escape
from .context_processors import DEMO_NOTICE_COOKIE, demo_notice_shown
from .models import Conversation
from .selectors import SidebarPage
from .templatetags import chat_tags

HTMX_CONFIG = (
    '{"includeIndicatorStyles": false, "attributesToSettle": ["class", "width", "height"], '
    '"allowEval": false, "allowScriptTags": false, "wsReconnectDelay": "full-jitter"}'
)
SKIP_TO_COMPOSER = '<a class="skip-link" href="#composer-text">Skip to message box</a>'
DEMO_NOTICE = (
    '\n<div class="demo-notice" role="note">\n'
    "  <p>You are talking to the built-in <strong>demo model</strong>. To connect a real one, "
    "set <code>OPENAI_BASE_URL</code> and <code>OPENAI_API_KEY</code> (see "
    "<code>.env.example</code>) and restart the server.</p>\n"
    '  <button type="button" class="icon-button icon-close demo-notice-hide" '
    'aria-label="Hide this notice"\n'
    f'          data-cookie="{DEMO_NOTICE_COOKIE}"></button>\n'
    "</div>\n"
)
SIDEBAR_TOGGLE = (
    '<button type="button" class="icon-button icon-menu sidebar-toggle" '
    'aria-label="Conversations"\n'
    '        aria-controls="sidebar" aria-expanded="false"></button>\n'
)


def _base(*, title: str, body: str, csrf_token: str) -> str:
    """templates/base.html with its `title` and `body` blocks, and the composer's skip link."""

    def asset(path: str) -> str:
        return escape(chat_tags.asset(path))

    return (
        "<!doctype html>\n"
        '<html lang="en">\n'
        "<head>\n"
        '  <meta charset="utf-8">\n'
        '  <meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '  <meta name="color-scheme" content="light dark">\n'
        "  \n"
        '  <meta name="htmx-config"\n'
        f"        content='{HTMX_CONFIG}'>\n"
        f"  <title>{title}</title>\n"
        f'  <link rel="icon" href="{asset("chat/favicon.svg")}" type="image/svg+xml">\n'
        f'  <link rel="stylesheet" href="{asset("chat/chat.css")}">\n'
        f'  <link rel="stylesheet" href="{asset("chat/pygments.css")}">\n'
        f"  {chat_tags.htmx_script_tags('hx-ws', None)}\n"
        f'  <script src="{asset("chat/chat.js")}" defer></script>\n'
        f'  <script src="{asset("chat/scroll-boxes.js")}" defer></script>\n'
        "</head>\n"
        f'<body hx-headers=\'{{"X-CSRFToken": "{escape(csrf_token)}"}}\'>\n'
        f"  {SKIP_TO_COMPOSER}\n"
        f"  {body}\n"
        "</body>\n"
        "</html>\n"
    )


def _sidebar(sidebar: SidebarPage, *, user: Any, csrf: str, on_start: bool) -> str:
    """templates/chat/_sidebar.html."""
    url = links.url
    start = url("chat:start")
    items = escape(url("chat:conversation_sidebar"))
    current = escape(sidebar.current) if sidebar.current else ""
    hidden_current = (
        f'<input type="hidden" name="current" value="{current}">' if sidebar.current else ""
    )
    archived = f"{items}?archived=1" + (f"&amp;current={current}" if sidebar.current else "")
    admin = f'<a href="{escape(url("admin:index"))}">Admin</a>' if user.is_staff else ""
    here = ' aria-current="page"' if on_start else ""
    return (
        "\n\n"
        '<nav id="sidebar" class="sidebar" aria-label="Conversations">\n'
        '  <div class="sidebar-top">\n'
        f'    <a class="new-conversation" href="{escape(start)}"'
        f"{here}>New conversation</a>\n"
        '    <button type="button" class="icon-button icon-close sidebar-close" '
        'aria-label="Close conversations"\n'
        '            aria-controls="sidebar"></button>\n'
        "  </div>\n"
        f'  <form class="sidebar-search" role="search" method="get" action="{escape(start)}"\n'
        f'        hx-get="{items}" hx-trigger="input changed delay:250ms from:#sidebar-search, '
        'submit"\n'
        '        hx-target="#conversation-list" hx-swap="innerHTML">\n'
        '    <label for="sidebar-search" class="visually-hidden">Search conversations</label>\n'
        '    <input id="sidebar-search" type="search" name="q" '
        f'value="{escape(sidebar.query)}" placeholder="Search conversations"\n'
        '           autocomplete="off">\n'
        f"    {hidden_current}\n"
        "  </form>\n"
        '  <ul id="conversation-list" class="conversation-list">\n'
        f"    {chat_tags.sidebar_items(sidebar)}\n"
        "  </ul>\n"
        '  <p id="sidebar-status" class="visually-hidden" role="status"></p>\n'
        '  <div class="sidebar-footer">\n'
        f'    <button type="button" class="link archived-toggle" hx-get="{archived}"\n'
        '            hx-target="#conversation-list" hx-swap="innerHTML">Archived</button>\n'
        '    <div class="account">\n'
        f"      <span>{escape(user.get_username())}</span>\n"
        f"      {admin}\n"
        f'      <form method="post" action="{escape(url("logout"))}">{csrf}'
        '<button type="submit" class="link">Log out</button></form>\n'
        "    </div>\n"
        "  </div>\n"
        "</nav>\n"
    )


def _demo_notice(request: HttpRequest) -> str:
    """templates/chat/_demo_notice.html (the `upstream` context processor's `demo_notice`)."""
    return DEMO_NOTICE + "\n" if demo_notice_shown(request) else "\n"


def _conversation_header(conversation: Conversation, *, models: Sequence[str], csrf: str) -> str:
    """The page's `title`, `model-picker`, `prompt-state` and `settings` partials and its
    conversation menu, with the `organize` partial."""
    pk = conversation.pk
    url = links.url
    configure = escape(url("chat:conversation_configure", pk))
    rename = escape(url("chat:conversation_rename", pk))
    organize = escape(url("chat:conversation_organize", pk))
    delete = escape(url("chat:conversation_delete", pk))
    options = "".join(
        f'<option value="{escape(name)}"'
        f"{' selected' if name == conversation.model else ''}>{escape(name)}</option>"
        for name in models
    )
    prompt_mark = (
        '<span class="prompt-mark" title="A system prompt is set">'
        '<span class="visually-hidden">(set)</span></span>'
        if conversation.system_prompt
        else ""
    )
    pinned, archived = conversation.pinned, conversation.archived
    return (
        f"{conversation_title(conversation, oob=False, oob_sidebar=False)}\n"
        "      \n"
        f'<form id="model-form" class="model-form" method="post" action="{configure}"\n'
        f'      hx-post="{configure}" hx-trigger="change" hx-swap="none">{csrf}\n'
        '  <label for="settings-model" class="visually-hidden">Model</label>\n'
        '  <select id="settings-model" class="model-picker" name="model" '
        'title="The model of the next reply">\n'
        f"    {options}\n"
        "  </select>\n"
        "</form>\n\n"
        '      <details class="menu prompt-menu">\n'
        '        <summary class="header-button icon-prompt">\n'
        '<span id="prompt-state" class="prompt-state">\n'
        '  <span class="prompt-label">System prompt</span>\n'
        f"  {prompt_mark}\n"
        "</span>\n"
        "</summary>\n"
        '        <div class="menu-body">\n'
        '<form id="conversation-settings" class="settings-form" method="post"\n'
        f'      action="{configure}"\n'
        f'      hx-post="{configure}" hx-target="this" hx-swap="outerHTML">{csrf}\n'
        '  <label for="settings-system-prompt">System prompt</label>\n'
        '  <textarea id="settings-system-prompt" name="system_prompt" rows="4"\n'
        # A newline after the tag: HTML drops the first one there, which the prompt may begin with.
        '            placeholder="e.g. You are a concise assistant.">\n'
        f"{escape(conversation.system_prompt)}</textarea>\n"
        '  <div class="settings-actions">\n'
        '    <button id="settings-save" type="submit" class="primary">Save system prompt</button>\n'
        "    \n"
        "  </div>\n"
        "</form>\n\n"
        "</div>\n"
        "      </details>\n"
        '      <details class="menu conversation-menu">\n'
        '        <summary class="header-button icon-more" aria-label="Conversation menu">'
        "</summary>\n"
        '        <div class="menu-body">\n'
        "          \n"
        '          <button type="button" class="prompt-item" '
        'aria-controls="conversation-settings">System prompt…</button>\n'
        f'          <form class="rename-form" method="post" action="{rename}"\n'
        f'                hx-post="{rename}"\n'
        f'                hx-target="#conversation-title" hx-swap="outerHTML">{csrf}\n'
        '            <label for="rename-title">Title</label>\n'
        '            <div class="inline-field">\n'
        '              <input id="rename-title" type="text" name="title" '
        f'value="{escape(conversation.title)}" maxlength="200" required>\n'
        '              <button type="submit">Rename</button>\n'
        "            </div>\n"
        "          </form>\n"
        "          \n"
        '<div id="organize" class="organize-actions">\n'
        f'  <form method="post" action="{organize}"\n'
        f'        hx-post="{organize}" hx-target="#organize" hx-swap="outerHTML">{csrf}\n'
        '    <button id="organize-pinned" type="submit" name="pinned" '
        f'value="{"false" if pinned else "true"}">{"Unpin" if pinned else "Pin to the top"}'
        "</button>\n"
        '    <button id="organize-archived" type="submit" name="archived" '
        f'value="{"false" if archived else "true"}">{"Unarchive" if archived else "Archive"}'
        "</button>\n"
        "  </form>\n"
        "</div>\n\n"
        f'          <form class="delete-form" method="post" action="{delete}"\n'
        f'                hx-post="{delete}"\n'
        '                hx-confirm="Delete this conversation and all its messages? '
        f'This cannot be undone.">{csrf}\n'
        '            <button type="submit" class="danger">Delete conversation</button>\n'
        "          </form>\n"
        "        </div>\n"
        "      </details>\n"
    )


def conversation_page(
    request: HttpRequest,
    *,
    conversation: Conversation,
    sidebar: SidebarPage,
    messages: list[Any],
    idempotency_key: uuid.UUID,
    models: Sequence[str],
) -> str:
    """templates/chat/conversation.html with the context `views.conversation_detail` gives it."""
    csrf_token = get_token(request)
    csrf = csrf_input(csrf_token)
    pk = escape(conversation.pk)
    title = escape(conversation.title or "New conversation")
    message_list = chat_tags.articles_html(messages, csrf_token=csrf_token, oob=False)
    composer = escape(links.url("chat:message_create", conversation.pk))
    after = escape((messages[-1].pk if messages else None) or 0)
    body = (
        '\n<div class="layout">\n'
        f"  {_sidebar(sidebar, user=request.user, csrf=csrf, on_start=False)}\n"
        f'  <main class="chat" hx-ext="ws,chat-frames" ws-connect="/ws/c/{pk}/">\n'
        '    <header class="chat-header">\n'
        f"      {SIDEBAR_TOGGLE}\n"
        "      " + _conversation_header(conversation, models=models, csrf=csrf) + "    </header>\n"
        f"    {_demo_notice(request)}\n"
        '    <div id="messages" class="messages" role="log" aria-live="off" '
        'aria-label="Messages" tabindex="0">\n'
        f"      \n{message_list}\n\n\n"
        "    </div>\n"
        '    <button type="button" id="jump-to-latest" class="jump-to-latest" hidden>'
        "Jump to latest ↓</button>\n"
        f'    <form id="composer" class="composer" method="post" action="{composer}"\n'
        f'          hx-post="{composer}" hx-target="#messages" hx-swap="beforeend">\n'
        f"      {csrf}\n"
        f"      {_composer_key(idempotency_key, oob=False)}\n"
        f'      <input type="hidden" name="after" value="{after}">\n'
        + COMPOSER_TAIL
        + '    <div id="announcer" class="visually-hidden" aria-live="polite"></div>\n'
        "  </main>\n"
        "</div>\n"
    )
    return _base(title=f"{title} · chatsite", body=body, csrf_token=csrf_token)


def new_messages(
    request: HttpRequest,
    *,
    conversation: Conversation,
    messages: list[Any],
    idempotency_key: uuid.UUID,
) -> str:
    """The conversation template's `new-messages` partial: a turn's messages, the composer's
    next key and the new title, as `views.message_create` answers the page that sent it."""
    message_list = chat_tags.articles_html(messages, csrf_token=get_token(request), oob=False)
    return (
        f"\n{message_list}\n"
        f"{_composer_key(idempotency_key, oob=True)}"
        f"{conversation_title(conversation, oob=True, oob_sidebar=True)}\n"
    )


def _composer_key(idempotency_key: uuid.UUID, *, oob: bool) -> str:
    """The conversation template's `composer-key` partial."""
    mark = ' hx-swap-oob="true"' if oob else ""
    return (
        '\n<input type="hidden" id="composer-key" name="idempotency_key" '
        f'value="{escape(idempotency_key)}"{mark}>\n'
    )


COMPOSER_TAIL = (
    '      <label for="composer-text" class="visually-hidden">Message</label>\n'
    '      <textarea id="composer-text" name="content" rows="2" required autofocus\n'
    '                placeholder="Send a message"></textarea>\n'
    '      <button type="submit" class="send-button" aria-label="Send"></button>\n'
    '      <button type="button" class="stop-button composer-stop" aria-label="Stop" '
    'title="Stop generating (Escape)"></button>\n'
    '      <p id="composer-error" class="composer-error" role="alert" hidden></p>\n'
    "    </form>\n"
)


def start_page(
    request: HttpRequest,
    *,
    sidebar: SidebarPage,
    idempotency_key: uuid.UUID,
    models: Sequence[str],
    default_model: str,
) -> str:
    """templates/chat/start.html with the context `views.start` gives it."""
    csrf_token = get_token(request)
    csrf = csrf_input(csrf_token)
    options = "".join(
        f'<option value="{escape(name)}"'
        f"{' selected' if name == default_model else ''}>{escape(name)}</option>"
        for name in models
    )
    start = escape(links.url("chat:conversation_start"))
    body = (
        '\n<div class="layout">\n'
        f"  {_sidebar(sidebar, user=request.user, csrf=csrf, on_start=True)}\n"
        '  <main class="chat start">\n'
        '    <header class="chat-header">\n'
        f"      {SIDEBAR_TOGGLE}\n"
        '      <label for="start-model" class="visually-hidden">Model</label>\n'
        '      <select id="start-model" class="model-picker" name="model" form="composer">\n'
        f"        {options}\n"
        "      </select>\n"
        "    </header>\n"
        f"    {_demo_notice(request)}\n"
        '    <div class="start-body">\n'
        "      <h1>What can I help with?</h1>\n"
        f'      <form id="composer" class="composer" method="post" action="{start}"\n'
        f'            hx-post="{start}" hx-swap="none" hx-sync="this:drop">\n'
        f"        {csrf}\n"
        '        <input type="hidden" name="idempotency_key" '
        f'value="{escape(idempotency_key)}">\n' + START_TAIL
    )
    return _base(title="New conversation · chatsite", body=body, csrf_token=csrf_token)


START_TAIL = (
    '        <label for="composer-text" class="visually-hidden">Message</label>\n'
    '        <textarea id="composer-text" name="content" rows="2" required autofocus\n'
    '                  placeholder="Send a message"></textarea>\n'
    '        <button type="submit" class="send-button" aria-label="Send"></button>\n'
    '        <p id="composer-error" class="composer-error" role="alert" hidden></p>\n'
    "      </form>\n"
    '      <ul class="suggestions" aria-label="Suggestions">\n'
    '        <li><button type="button" data-prompt="Explain how a WebSocket differs '
    'from polling over HTTP, with a short example.">\n'
    "          <strong>Explain WebSockets</strong> <span>and how they differ from "
    "polling</span></button></li>\n"
    '        <li><button type="button" data-prompt="Write a Python function that '
    "tells whether a string is a palindrome, ignoring case and punctuation, with "
    'tests.">\n'
    "          <strong>Write a Python function</strong> <span>that spots "
    "palindromes, with tests</span></button></li>\n"
    '        <li><button type="button" data-prompt="Plan three days in Lisbon on a '
    'small budget: what to see, where to eat, how to get around.">\n'
    "          <strong>Plan three days in Lisbon</strong> <span>on a small "
    "budget</span></button></li>\n"
    '        <li><button type="button" data-prompt="Summarise the trade-offs between '
    'PostgreSQL full-text search and a separate search engine.">\n'
    "          <strong>Compare search options</strong> <span>PostgreSQL full-text or "
    "a search engine</span></button></li>\n"
    "      </ul>\n"
    "    </div>\n"
    "  </main>\n"
    "</div>\n"
)
