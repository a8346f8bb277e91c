"""A message's `<article>` built in Python: the same markup, byte for byte, as the
`message-article` partial of templates/chat/conversation.html draws it (and the `title`
partial, sent to every tab when a title is generated).

The template engine took 0.4-0.6 ms a message (60-100 nodes), most of a conversation page;
this takes a few dozen microseconds. The template stays the source of truth, and
tests/test_articles.py holds this module to its output for messages in every state (a reply
still generated too, whose text chat.fragments.streaming_view draws). Every value goes
through `escape` as the template's autoescaping would; stored `content_html` and
`reasoning_html` are already sanitized (chat.markdown) and go in as the template's `|safe`
puts them.
"""

from __future__ import annotations

import html
import json
import uuid
from typing import Any

from django.template.defaultfilters import floatformat, linebreaksbr

from . import links
from .models import Conversation, Message

_OOB = ' hx-swap-oob="true"'
_OOB_ATTR = 'hx-swap-oob="true" '


def _url(name: str, conversation_id: uuid.UUID, message_id: int) -> str:
    return links.url(name, conversation_id, message_id)


def escape(value: Any) -> str:
    """`django.utils.html.escape` without its lazy-string wrapper (called some 30 times a
    message): the same characters escaped the same way."""
    return html.escape(str(value))


def _text(value: Any) -> str:
    """`{{ value }}` for the strings and numbers used here (no thousands separators)."""
    return escape(value)


def _pretty_json(text: str) -> str:
    """The `pretty_json` filter (chat.templatetags.chat_tags)."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (TypeError, ValueError):
        return text


def _count(tokens: int | None) -> str:
    return "?" if tokens is None else str(tokens)  # (0 is a count: a reply with no text)


def _seconds(value: Any) -> str:
    """The `seconds` filter (chat.templatetags.chat_tags)."""
    total = value.total_seconds()
    return f"{total * 1000:.0f} ms" if total < 1 else f"{total:.1f} s"


def csrf_input(csrf_token: Any) -> str:
    """`{% csrf_token %}` with this context's token (none when rendered without a request)."""
    if not csrf_token or csrf_token == "NOTPROVIDED":
        return ""
    return f'<input type="hidden" name="csrfmiddlewaretoken" value="{escape(csrf_token)}">'


def finished_message(message: Message, *, oob: bool = False, csrf_token: Any = None) -> str:
    """The `message` partial for a message that is not streaming (`not message.is_active`)."""
    pk = message.pk
    role = message.role
    if role == Message.Role.ASSISTANT:
        body = _finished_reply(message, oob=oob)
        name = "Assistant"
    elif role == Message.Role.TOOL:
        calls = message.tool_calls
        try:
            tool_name = calls[0]["name"]
        except (IndexError, KeyError, TypeError):
            tool_name = ""
        body = (
            '\n    <details class="tool-result-box"><summary>Result of <code>'
            f"{_text(tool_name)}</code></summary>\n"
            '    <pre class="content tool-result"><code>'
            f"{_text(_pretty_json(message.content))}</code></pre></details>\n  "
        )
        name = "Tool result"
    else:
        body = _user_message(message, csrf_token)
        name = "You"
    status = _text(message.status)
    return (
        f'\n<article id="m{pk}" class="message {_text(role)} status-{status}" '
        f'data-status="{status}"\n'
        f"         {_OOB_ATTR if oob else ''}"
        f'aria-label="{_text(message.get_role_display())} message">\n'
        f'  <div class="role"><span class="role-name">{name}</span>{versions(message)}</div>\n'
        f"  {body}\n</article>\n"
    )


def streaming_reply(message: Message, *, view: dict[str, Any], oob: bool = False) -> str:
    """The `message-article` partial for a reply still generated (`message.is_active`), drawn
    from `view` (chat.fragments.streaming_view: its text as it stands)."""
    pk = message.pk
    status = _text(message.status)
    waiting = message.waiting_note
    stop_url = _url("chat:message_stop", message.conversation_id, pk)
    return (
        f'\n<article id="m{pk}" class="message assistant status-{status}" '
        f'data-status="{status}"\n'
        f"         {_OOB_ATTR if oob else ''}"
        f'aria-label="{_text(message.get_role_display())} message">\n'
        f'  <div class="role"><span class="role-name">Assistant</span>{versions(message)}</div>\n'
        "  \n    \n    \n"
        f'      <details id="d{pk}" class="thinking">\n'
        f'        <summary id="g{pk}">Thinking…</summary>\n'
        "        \n"
        f'        <div id="r{pk}" class="reasoning-text markdown">'
        f"{view['reasoning_blocks']}</div>\n"
        f'        <div id="u{pk}" class="streaming-tail">{view["reasoning_tail"]}</div>\n'
        "      </details>\n    \n    "
        f"{tool_calls(pk, message.tool_calls or [], oob=False)}"
        f'\n    <div id="c{pk}" class="content markdown">{view["content_blocks"]}</div>\n    \n'
        f'      <div id="t{pk}" class="streaming-tail">{view["content_tail"]}</div>\n'
        f'      <div id="e{pk}" class="reply-end" data-status="{status}">\n'
        '        <div class="reply-footer">\n'
        f'          <div id="s{pk}" class="status-line" role="status">{waiting}</div>\n'
        "          \n"
        f'          <form hx-post="{stop_url}" hx-swap="none"\n'
        '                class="stop-form" hidden></form>\n'
        "        </div>\n"
        f'        <div ws-send hx-trigger="load" hx-vals=\'{{"resync": {pk}}}\' hidden></div>\n'
        "      </div>\n    \n  \n</article>\n"
    )


def _user_message(message: Message, csrf_token: Any) -> str:
    pk = message.pk
    edit_url = _url("chat:message_edit", message.conversation_id, pk)
    return (
        f'\n    <div class="content user-text">{linebreaksbr(message.content)}</div>\n'
        '    <div class="message-actions">\n'
        f'      <button type="button" class="icon-button icon-copy copy-button" '
        f'data-copy="#m{pk} .user-text"\n'
        '              aria-label="Copy"></button>\n'
        '      <button type="button" class="icon-button icon-edit edit-button" '
        'aria-label="Edit"\n'
        f'              aria-expanded="false" aria-controls="edit-form-{pk}"></button>\n'
        "    </div>\n"
        f'    <form id="edit-form-{pk}" class="edit-form" hidden method="post"\n'
        f'          action="{edit_url}"\n'
        f'          hx-post="{edit_url}"\n'
        f'          hx-target="#messages" hx-swap="innerHTML">{csrf_input(csrf_token)}\n'
        f'      <label for="edit-{pk}" class="visually-hidden">Edit your message</label>\n'
        # A newline after the tag: HTML drops the first one there, which the text may begin with.
        f'      <textarea id="edit-{pk}" name="content" rows="3" required>\n'
        f"{_text(message.content)}</textarea>\n"
        '      <div class="edit-actions">\n'
        '        <button type="button" class="edit-cancel">Cancel</button>\n'
        '        <button type="submit" class="primary">Save and send</button>\n'
        "      </div>\n"
        "    </form>\n  "
    )


def _finished_reply(message: Message, *, oob: bool) -> str:
    pk = message.pk
    parts = ["\n    \n    "]
    if message.reasoning:
        parts.append(
            f'\n      <details id="d{pk}" class="thinking">\n'
            f'        <summary id="g{pk}">Thinking</summary>\n'
            "        \n"
            f'        <div id="r{pk}" class="reasoning-text markdown">'
            f"{message.reasoning_html}</div>\n"
            "        \n"
            "      </details>\n    "
        )
    parts.append("\n    ")
    if message.tool_calls:
        parts.append(tool_calls(pk, message.tool_calls, oob=False))
    parts.append(
        f'\n    <div id="c{pk}" class="content markdown">{message.content_html}</div>\n    \n'
        f"      {reply_end(message, oob=oob)}\n    \n  "
    )
    return "".join(parts)


def tool_calls(message_id: int, calls: list[dict[str, str]], *, oob: bool) -> str:
    """The `tool-calls` partial."""
    sections = "".join(
        '\n    <section class="tool-call">\n'
        f"      <h2>Tool call: <code>{_text(call.get('name') or '…')}</code></h2>\n"
        f"      <pre><code>{_text(_pretty_json(call.get('arguments', '')))}</code></pre>\n"
        "    </section>\n  "
        for call in calls
    )
    return (
        f'\n<div id="k{message_id}" class="tool-calls"'
        f"{_OOB if oob else ''}>\n  {sections}\n</div>\n"
    )


def versions(message: Message) -> str:
    """The `versions` partial: the switcher between the versions of a turn."""
    if message.version_count <= 1:
        return "\n\n"
    previous, following = message.previous_version_id, message.next_version_id
    key = f"v{message.parent_id or '0'}"
    what = "message" if message.role == "user" else "reply"
    number, count = message.version_number, message.version_count
    return (
        "\n\n"
        f'<nav class="versions" aria-label="Versions of this {what}">\n'
        '  <button type="button" class="version-button" '
        f'hx-post="messages/{_text(previous)}/select/"\n'
        f'          aria-label="Previous version" data-focus-key="{key}-previous"\n'
        f"          {'' if previous else 'disabled'}>‹</button>\n"
        f'  <span class="version-count"><span aria-hidden="true">{number} / {count}</span>'
        f'<span class="visually-hidden">version {number} of {count}</span></span>\n'
        '  <button type="button" class="version-button" '
        f'hx-post="messages/{_text(following)}/select/"\n'
        f'          aria-label="Next version" data-focus-key="{key}-next"\n'
        f"          {'' if following else 'disabled'}>›</button>\n"
        "</nav>\n\n"
    )


def reply_end(message: Message, *, oob: bool) -> str:
    """The `reply-end` partial: a finished reply's notices, actions and stats."""
    pk, status, finish = message.pk, message.status, message.finish_reason
    error = _text(message.error)
    notice = ""
    if status == "error":
        notice = f'<p class="reply-error" role="alert">Error: {error}</p>\n  '
    elif status == "interrupted":
        cause = f": {error}" if message.error else "."
        kept = f" {_text(note)}" if (note := message.interrupted_text_note) else ""
        notice = f'<p class="reply-warning">The reply was interrupted{cause}{kept}</p>\n  '
    elif status == "cancelled":
        notice = '<p class="reply-note">Stopped.</p>\n  '
    elif message.error:
        notice = f'<p class="reply-warning">{error}</p>\n  '
    elif finish == "length":
        notice = '<p class="reply-warning">The reply was cut at the token limit.</p>\n  '
    elif finish == "content_filter":
        notice = '<p class="reply-warning">The model\'s content filter stopped this reply.</p>\n  '
    actions = [
        '\n    <button type="button" class="icon-button icon-copy copy-button" '
        f'data-copy="#m{pk} .content"\n'
        f'            data-copy-text="messages/{pk}/text/" aria-label="Copy"></button>\n    '
        if message.content
        else "\n    \n    "
    ]
    if message.stopped_early:
        actions.append(
            '\n      <button type="button" class="icon-button icon-continue labelled '
            'continue-button"\n'
            f'              hx-post="messages/{pk}/continue/">Continue</button>\n    '
        )
    actions.append("\n    ")
    if status != "complete" or finish != "tool_calls":
        if status == "complete":
            retry = (
                '<button type="button" class="icon-button icon-regenerate retry-button"\n'
                f'                hx-post="messages/{pk}/retry/" aria-label="Regenerate"></button>'
            )
        else:
            retry = (
                '<button type="button" class="icon-button icon-regenerate labelled '
                'retry-button"\n'
                f'                hx-post="messages/{pk}/retry/">Retry</button>'
            )
        actions.append(f"\n      \n        {retry}\n      \n    ")
    actions.append("\n    ")
    if message.content:
        actions.append(feedback(message))
    stats = []
    if message.prompt_tokens is not None or message.completion_tokens is not None:
        stats.append(
            '<span title="prompt / completion tokens">'
            f"{_count(message.prompt_tokens)} / {_count(message.completion_tokens)} tokens</span>"
        )
    stats.append("\n    ")
    if message.time_to_first_token:
        stats.append(f"<span>first token {_seconds(message.time_to_first_token)}</span>")
    stats.append("\n    ")
    speed = message.tokens_per_second
    if speed:
        stats.append(f"<span>{floatformat(speed, 1)} tokens/s</span>")
    stats.append("\n    ")
    if finish and finish != "stop":
        stats.append(f'<span class="finish-reason">finish: {_text(finish)}</span>')
    return (
        f'\n<div id="e{pk}" class="reply-end" data-status="{_text(status)}"'
        f"{_OOB if oob else ''}>\n"
        f"  {notice}\n"
        '  <div class="message-actions reply-actions" hx-target="closest article" '
        'hx-swap="outerHTML">'
        f"{''.join(actions)}\n  </div>\n"
        '  <footer class="reply-stats">\n'
        f"    {''.join(stats)}\n"
        "  </footer>\n</div>\n"
    )


def feedback(message: Message, *, saved: str = "") -> str:
    """The `feedback` partial: thumbs up and down, and the comment once rated."""
    pk, rating = message.pk, message.feedback
    note = ""
    if saved == "comment":
        note = '<span class="saved-note" role="status">Comment saved.</span>\n  '
    elif saved:
        said = "Thanks for the feedback." if rating else "Rating removed."
        note = f'<span class="saved-note" role="status">{said}</span>\n  '
    comment = ""
    if rating:
        comment = (
            '\n    <div class="feedback-comment">\n'
            f'      <input id="feedback-{pk}-comment" type="text" name="comment" '
            f'value="{_text(message.feedback_comment)}" placeholder="Add a comment (optional)"\n'
            '             maxlength="5000" aria-label="Comment">\n'
            f'      <button id="feedback-{pk}-save" name="rating" value="{_text(rating)}">'
            "Save comment</button>\n"
            "    </div>\n  "
        )
    up, down = rating == "up", rating == "down"
    return (
        f'\n<form id="feedback-{pk}" class="feedback" hx-post="messages/{pk}/feedback/"\n'
        '      hx-target="this" hx-swap="outerHTML">\n'
        f'  <button id="feedback-{pk}-up" name="rating" value="{"" if up else "up"}" '
        'class="icon-button icon-up"\n'
        f'          aria-pressed="{"true" if up else "false"}" aria-label="Good reply"></button>\n'
        f'  <button id="feedback-{pk}-down" name="rating" value="{"" if down else "down"}" '
        'class="icon-button icon-down"\n'
        f'          aria-pressed="{"true" if down else "false"}" aria-label="Bad reply">'
        "</button>\n"
        f"  {note}\n  {comment}\n</form>\n"
    )


def conversation_title(conversation: Conversation, *, oob: bool, oob_sidebar: bool) -> str:
    """The `title` partial: the page header, and with `oob_sidebar` the sidebar's entry."""
    title = _text(conversation.title or "New conversation")
    sidebar = (
        f'<a id="conv-link-{conversation.pk}" hx-swap-oob="innerHTML">{title}</a>'
        if oob_sidebar
        else ""
    )
    return f'\n<h1 id="conversation-title"{_OOB if oob else ""}>{title}</h1>\n{sidebar}\n'
