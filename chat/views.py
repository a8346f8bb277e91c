"""Views parse the request, check the owner, call a service and render. Nothing else."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required as redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from . import article_cache, limits, pages, selectors, services, socket_protocol
from .forms import (
    ConversationSettingsForm,
    EditForm,
    FeedbackForm,
    MessageForm,
    OrganizeForm,
    RenameForm,
    StartForm,
)
from .model_catalog import available_models, models_for
from .models import Conversation, Message

PAGE = "chat/conversation.html"
SIDEBAR = "chat/_sidebar.html"
SIGNED_OUT = "You were signed out. Log in again to go on."


def login_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Django's `login_required`, but a request the page makes (htmx's) once its session has
    ended is answered 401 with a line to show: htmx followed the redirect to the login page
    and drew that page in place of what was asked for (a message being sent, a reply
    regenerated, the conversation edited), and the message box was emptied."""
    page = redirect_to_login(view)

    @functools.wraps(view)
    def signed_in(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.headers.get("HX-Request") and not request.user.is_authenticated:
            return _plain(SIGNED_OUT, 401)
        return page(request, *args, **kwargs)

    return signed_in


def _opened_as_page(request: HttpRequest) -> bool:
    """The browser itself goes to the address (typed, a bookmark, a link opened in a new
    tab), where the page's own requests fetch a piece of a page from it: browsers say which in
    `Sec-Fetch-Mode`. A piece opened as a page was drawn bare, unstyled and white in dark
    mode; those addresses send the browser to the page the piece belongs to."""
    return request.headers.get("Sec-Fetch-Mode") == "navigate"


# A piece of a page's answer depends on how it was asked for (`_opened_as_page`)
varies_as_opened = vary_on_headers("Sec-Fetch-Mode")


def _conversation_or_404(request: HttpRequest, conversation_id: uuid.UUID) -> Conversation:
    conversation = selectors.conversation_for_user(
        user=request.user, conversation_id=conversation_id
    )
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def _reply_or_404(conversation: Conversation, message_id: int) -> Message:
    return _message_or_404(conversation, message_id, Message.Role.ASSISTANT)


class LoginView(auth_views.LoginView):
    """Django's login page, which names the demo account on a local demo setup."""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "demo_account": selectors.demo_account_open()}


@login_required
@require_GET
def start(request: HttpRequest) -> HttpResponse:
    """The start page: a message box whose first message starts a conversation."""
    # templates/chat/start.html, built by chat.pages.
    page = pages.start_page(
        request,
        sidebar=selectors.conversation_sidebar_page(
            user=request.user, query=request.GET.get("q", "")
        ),
        idempotency_key=uuid.uuid4(),
        models=available_models(),
        default_model=settings.CHAT_MODEL,
    )
    return HttpResponse(page)


@login_required
@require_POST
def conversation_start(request: HttpRequest) -> HttpResponse:
    """The start page's first message: the conversation is made with it, then its page opens
    and shows the reply streaming."""
    form = StartForm(request.POST, models=available_models())
    if not form.is_valid():
        return _invalid(form)
    try:
        user_message, _ = services.conversation_start(
            owner=request.user,  # type: ignore[arg-type]
            content=form.cleaned_data["content"],
            idempotency_key=form.cleaned_data["idempotency_key"],
            model=form.cleaned_data["model"],
        )
    except services.ConversationChanged:
        return _changed()
    except limits.LimitReached as reached:
        return _plain(reached.message, 429)
    url = user_message.conversation.get_absolute_url()
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect(url)
    return HttpResponse(status=204, headers={"HX-Redirect": url})


@login_required
@require_GET
@varies_as_opened
def conversation_sidebar(request: HttpRequest) -> HttpResponse:
    """A page of the sidebar's list: search results, archived conversations, or the page after
    `cursor`; as long as the list the tab had (`shown`), when it draws its list again. Opened
    as a page, the start page with its list searched as asked."""
    if _opened_as_page(request):
        query = request.GET.get("q", "")
        return redirect(reverse("chat:start") + (f"?{urlencode({'q': query})}" if query else ""))
    try:
        current = uuid.UUID(request.GET.get("current", ""))
    except ValueError:
        current = None
    page = selectors.conversation_sidebar_page(
        user=request.user,
        query=request.GET.get("q", ""),
        archived=request.GET.get("archived") == "1",
        cursor=request.GET.get("cursor", ""),
        last_group=request.GET.get("group", ""),
        current=current,
        shown=_count(request.GET.get("shown", "")),
    )
    return render(request, SIDEBAR + "#items", {"sidebar": page})


def _count(text: str) -> int:
    """A count a request gives ("" or not a count: 0)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else 0


@login_required
@require_POST
def conversation_create(request: HttpRequest) -> HttpResponse:
    """An empty conversation (for clients made before the start page)."""
    try:
        conversation = services.conversation_create(owner=request.user)  # type: ignore[arg-type]
    except limits.LimitReached as reached:
        return _plain(reached.message, 429)
    return redirect(conversation)


def _tab(request: HttpRequest) -> str:
    """The tab that sent the request, as it names itself (chat.js), or "": an action that
    changes the path shown tells the conversation's other tabs, not this one."""
    return socket_protocol.tab_name(request.headers.get("X-Chat-Tab"))


def _plain(text: str, status: int) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")


def _changed() -> HttpResponse:
    """A message refused as written on a page that is out of date: the page redraws itself,
    keeping the text, with the reason."""
    response = _plain(CHANGED, 409)
    response["X-Conversation-Changed"] = "1"
    return response


def _busy() -> HttpResponse:
    """A turn refused while a reply streams: the page says so until the reply ends."""
    response = _plain(BUSY, 409)
    response["X-Conversation-Busy"] = "true"
    return response


def _invalid(form: Any) -> HttpResponse:
    """A form's errors, for the page to show beside it: 422, never 400 (with DEBUG on,
    django-htmx's script puts a 400 answer to htmx in place of the whole page)."""
    return _plain(_form_errors(form), 422)


def _form_errors(form: Any) -> str:
    return "; ".join(str(e) for field in form.errors.values() for e in field)


@login_required
@require_GET
def conversation_detail(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    # The PAGE template, built by chat.pages.
    page = pages.conversation_page(
        request,
        conversation=conversation,
        sidebar=selectors.conversation_sidebar_page(user=request.user, current=conversation.pk),
        messages=article_cache.page_messages(conversation=conversation),
        idempotency_key=uuid.uuid4(),
        models=models_for(conversation),
    )
    return HttpResponse(page)


@login_required
@require_POST
def conversation_rename(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    form = RenameForm(request.POST)
    if not form.is_valid():
        return _invalid(form)
    services.conversation_rename(conversation=conversation, title=form.cleaned_data["title"])
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect(conversation)
    return render(request, PAGE + "#title", {"conversation": conversation, "oob_sidebar": True})


@login_required
@require_POST
def conversation_configure(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    models = models_for(conversation)
    # The header's model picker sends the model alone, the system prompt box the prompt alone.
    form = ConversationSettingsForm(
        {
            "model": request.POST.get("model", conversation.model),
            "system_prompt": request.POST.get("system_prompt", conversation.system_prompt),
        },
        models=models,
    )
    if not form.is_valid():
        return _invalid(form)
    services.conversation_configure(
        conversation=conversation,
        model=form.cleaned_data["model"],
        system_prompt=form.cleaned_data["system_prompt"],
    )
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect(conversation)
    return render(
        request, PAGE + "#settings", {"conversation": conversation, "models": models, "saved": True}
    )


@login_required
@require_POST
def conversation_organize(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """Pin or unpin, archive or unarchive."""
    conversation = _conversation_or_404(request, conversation_id)
    form = OrganizeForm(request.POST)
    if not form.is_valid():
        return _invalid(form)
    services.conversation_organize(
        conversation=conversation,
        pinned=form.cleaned_data["pinned"],
        archived=form.cleaned_data["archived"],
        tab=_tab(request),
    )
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect(conversation)
    # (The page asks for its list again as it shows it, searched or the archived ones:
    # static/chat/chat.js. Drawn here, it was the whole list, whatever the tab showed.)
    return render(request, PAGE + "#organize", {"conversation": conversation})


@login_required
@require_POST
def conversation_delete(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    services.conversation_delete(conversation=conversation)
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect("chat:start")
    return HttpResponse(status=204, headers={"HX-Redirect": reverse("chat:start")})


def _message_list(
    request: HttpRequest,
    conversation: Conversation,
    *,
    path: list[Message] | None = None,
    announce: str = "",
    continued: int | None = None,
) -> HttpResponse:
    """The conversation's messages from the top, on the path now chosen: the answer to any
    action that changes which versions are shown. It replaces the whole list, wherever the
    action came from."""
    response = render(
        request,
        PAGE + "#message-list",
        {
            "conversation": conversation,
            "messages": path
            if path is not None
            else article_cache.page_messages(conversation=conversation),
            "announce": announce,
            "continued": continued,
        },
    )
    response["HX-Retarget"] = "#messages"
    response["HX-Reswap"] = "innerHTML"
    return response


def _message_or_404(conversation: Conversation, message_id: int, role: str) -> Message:
    message = conversation.messages.filter(pk=message_id, role=role).first()
    if message is None:
        raise Http404("No such message.")
    return message


BUSY = "The assistant is still replying. Wait for it to finish, or press Stop."
CHANGED = (
    "This page was out of date (the conversation changed in another tab or window, or the "
    "page came back from the browser's history). It now shows what is current; your message "
    "is still in the box: send it again if it still fits."
)


@login_required
@require_POST
def message_edit(request: HttpRequest, conversation_id: uuid.UUID, message_id: int) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    message = _message_or_404(conversation, message_id, Message.Role.USER)
    form = EditForm(request.POST)
    if not form.is_valid():
        return _invalid(form)
    try:
        services.message_edit(
            message=message, content=form.cleaned_data["content"], tab=_tab(request)
        )
    except services.ConversationBusy:
        return _busy()
    except limits.LimitReached as reached:
        return _plain(reached.message, 429)
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect(conversation)
    return _message_list(request, conversation)


@login_required
@require_POST
def message_select(
    request: HttpRequest, conversation_id: uuid.UUID, message_id: int
) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    message = _shown_message_or_404(conversation, message_id)
    try:
        services.message_select(message=message, tab=_tab(request))
    except services.ConversationBusy:
        return _busy()
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect(conversation)
    path = selectors.active_path(conversation=conversation)
    shown = next((m for m in path if m.pk == message.pk), None)
    announce = f"Version {shown.version_number} of {shown.version_count}." if shown else ""
    return _message_list(request, conversation, path=path, announce=announce)


@login_required
@require_POST
def message_feedback(
    request: HttpRequest, conversation_id: uuid.UUID, message_id: int
) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    reply = _reply_or_404(conversation, message_id)
    form = FeedbackForm(request.POST)
    if not form.is_valid():
        return _invalid(form)
    rated_before = reply.feedback
    services.reply_feedback(
        reply=reply, rating=form.cleaned_data["rating"], comment=form.cleaned_data["comment"]
    )
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect(conversation)
    # The note says what changed: the rating (a thumb), or else the comment (Save comment).
    same_rating = reply.feedback and reply.feedback == rated_before
    saved = "comment" if form.cleaned_data["comment"] and same_rating else "rating"
    return render(request, PAGE + "#feedback", {"message": reply, "saved": saved})


@login_required
@require_POST
def message_create(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    form = MessageForm(request.POST)
    if not form.is_valid():
        return _invalid(form)
    try:
        user_message, reply = services.message_submit(
            conversation=conversation,
            content=form.cleaned_data["content"],
            idempotency_key=form.cleaned_data["idempotency_key"],
            after=form.cleaned_data["after"],
        )
    except services.ConversationBusy:
        return _busy()
    except services.ConversationChanged:
        return _changed()
    except limits.LimitReached as reached:
        return _plain(reached.message, 429)
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect(conversation)
    # The PAGE template's new-messages partial, built by chat.pages.
    return HttpResponse(
        pages.new_messages(
            request,
            conversation=conversation,
            messages=[user_message, reply],
            idempotency_key=uuid.uuid4(),
        )
    )


@login_required
@require_GET
@varies_as_opened
def message_detail(
    request: HttpRequest, conversation_id: uuid.UUID, message_id: int
) -> HttpResponse:
    """One message as the page draws it. A tab fetches it here when the socket frame that
    would carry it is too large (`chat.consumers.MAX_FRAME_BYTES`). Opened as a page, its
    conversation's page, scrolled to it (`chat.js`)."""
    conversation = _conversation_or_404(request, conversation_id)
    message = _shown_message_or_404(conversation, message_id)
    if _opened_as_page(request):
        return redirect(f"{conversation.get_absolute_url()}#m{message.pk}")
    return render(request, PAGE + "#message", {"message": selectors.with_versions(message=message)})


@login_required
@require_GET
def message_text(request: HttpRequest, conversation_id: uuid.UUID, message_id: int) -> HttpResponse:
    """A message's text as it was written: a reply's markdown, which its Copy button puts on
    the clipboard as plain text (beside the HTML the page shows, for pasting formatted)."""
    message = _shown_message_or_404(_conversation_or_404(request, conversation_id), message_id)
    response = HttpResponse(message.content, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "private, no-cache"
    return response


def _shown_message_or_404(conversation: Conversation, message_id: int) -> Message:
    """A message of the conversation that its page shows (not its system prompt)."""
    message = conversation.messages.exclude(role=Message.Role.SYSTEM).filter(pk=message_id).first()
    if message is None:
        raise Http404("No such message.")
    return message


@login_required
@require_POST
def message_stop(request: HttpRequest, conversation_id: uuid.UUID, message_id: int) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    services.reply_stop(reply=_reply_or_404(conversation, message_id))
    return HttpResponse(status=204)


def _rerun_reply(
    request: HttpRequest,
    conversation_id: uuid.UUID,
    message_id: int,
    action: Callable[..., Message],
    refused: str,
    *,
    continues: bool = False,
) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    reply = _reply_or_404(conversation, message_id)
    try:
        action(reply=reply)
    except services.ConversationBusy:
        return _busy()
    except limits.LimitReached as reached:
        return _plain(reached.message, 429)
    except services.ReplyNotRetryable:
        return _plain(refused, 409)
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect(conversation)
    # A continued reply may be claimed already: its paragraph stays drawn as it was.
    return _message_list(request, conversation, continued=reply.pk if continues else None)


@login_required
@require_POST
def message_retry(
    request: HttpRequest, conversation_id: uuid.UUID, message_id: int
) -> HttpResponse:
    """Regenerate (or retry) a reply as a new version of it."""
    return _rerun_reply(
        request,
        conversation_id,
        message_id,
        functools.partial(services.reply_regenerate, tab=_tab(request)),
        "This reply cannot be generated again.",
    )


@login_required
@require_POST
def message_continue(
    request: HttpRequest, conversation_id: uuid.UUID, message_id: int
) -> HttpResponse:
    """Go on with a reply cut short; the text joins the same version."""
    return _rerun_reply(
        request,
        conversation_id,
        message_id,
        services.reply_continue,
        "Only the latest reply, cut short, can be continued.",
        continues=True,
    )
