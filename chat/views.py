"""Views parse the request, check the owner, call a service and render. Nothing else."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from . import selectors, services
from .forms import MessageForm
from .models import Conversation, Message

PAGE = "chat/conversation.html"


def _conversation_or_404(request: HttpRequest, conversation_id: uuid.UUID) -> Conversation:
    conversation = selectors.conversation_for_user(
        user=request.user, conversation_id=conversation_id
    )
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def _reply_or_404(conversation: Conversation, message_id: int) -> Message:
    reply = conversation.messages.filter(pk=message_id, role=Message.Role.ASSISTANT).first()
    if reply is None:
        raise Http404("No such reply.")
    return reply


@login_required
@require_GET
def conversation_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "chat/conversation_list.html",
        {"conversations": selectors.conversation_list_for_user(user=request.user)},
    )


@login_required
@require_POST
def conversation_create(request: HttpRequest) -> HttpResponse:
    conversation = services.conversation_create(owner=request.user)  # type: ignore[arg-type]
    return redirect(conversation)


@login_required
@require_GET
def conversation_detail(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    return render(
        request,
        PAGE,
        {
            "conversation": conversation,
            "conversations": selectors.conversation_list_for_user(user=request.user)[:50],
            "messages": selectors.message_list(conversation=conversation),
            "idempotency_key": uuid.uuid4(),
        },
    )


@login_required
@require_POST
def message_create(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    form = MessageForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(str(e) for field in form.errors.values() for e in field)
        return HttpResponse(errors, status=400, content_type="text/plain; charset=utf-8")
    try:
        user_message, reply = services.message_submit(
            conversation=conversation,
            content=form.cleaned_data["content"],
            idempotency_key=form.cleaned_data["idempotency_key"],
        )
    except services.ConversationBusy:
        return HttpResponse(
            "The assistant is still replying. Wait for it to finish, or press Stop.",
            status=409,
            content_type="text/plain; charset=utf-8",
        )
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect(conversation)
    return render(
        request,
        PAGE + "#new-messages",
        {
            "conversation": conversation,
            "new_messages": [user_message, reply],
            "idempotency_key": uuid.uuid4(),
        },
    )


@login_required
@require_POST
def message_stop(request: HttpRequest, conversation_id: uuid.UUID, message_id: int) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    reply = _reply_or_404(conversation, message_id)
    if reply.is_active:
        services.reply_stop(reply=reply)
    return HttpResponse(status=204)


def _rerun_reply(
    request: HttpRequest,
    conversation_id: uuid.UUID,
    message_id: int,
    action: Callable[..., Message],
) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    reply = _reply_or_404(conversation, message_id)
    try:
        with transaction.atomic():
            Conversation.objects.select_for_update().filter(pk=conversation.pk).first()
            if selectors.active_reply(conversation=conversation) is not None:
                raise services.ReplyNotRetryable
            action(reply=reply)
    except services.ReplyNotRetryable:
        return HttpResponse(
            "Only the latest reply can be retried or continued, once it has ended.",
            status=409,
            content_type="text/plain; charset=utf-8",
        )
    if not request.htmx:  # type: ignore[attr-defined]
        return redirect(conversation)
    return render(request, PAGE + "#message", {"message": reply})


@login_required
@require_POST
def message_retry(
    request: HttpRequest, conversation_id: uuid.UUID, message_id: int
) -> HttpResponse:
    return _rerun_reply(request, conversation_id, message_id, services.reply_retry)


@login_required
@require_POST
def message_continue(
    request: HttpRequest, conversation_id: uuid.UUID, message_id: int
) -> HttpResponse:
    return _rerun_reply(request, conversation_id, message_id, services.reply_continue)
