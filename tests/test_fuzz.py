"""Fuzzing every form POST and the socket message: whatever is sent, never a server error, and
never a partial row (a refused request changes nothing; every turn has its reply)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction
from django.db.models import Count, Q
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat.models import Conversation, Message
from chat.services import MAX_MESSAGE_LENGTH
from chat.socket_protocol import CLOSE_MALFORMED, CLOSE_NOT_TEXT, CLOSE_TOO_BIG, Refused, parse
from tests.authz import make_world, snapshot
from tests.live import session_cookie_for
from tests.sockets import socket_for

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text as a browser (or anything else) may post it: any character but a lone surrogate, which
# no client can encode; NUL and control characters included. Some values sit at the limits.
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=300),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "up",
            "down",
            "fake-model",
            "x" * 200,
            "x" * 201,
            "x" * MAX_MESSAGE_LENGTH,
            "x" * (MAX_MESSAGE_LENGTH + 1),
            "00000000-0000-0000-0000-000000000000",
            "<script>alert(1)</script>",
        ]
    ),
)

# route (under the owner's conversation): the form's own fields. Stray fields are added too.
FORMS = {
    "messages/": ["content", "idempotency_key"],
    "rename/": ["title"],
    "settings/": ["model", "system_prompt"],
    "messages/{user_message}/edit/": ["content"],
    "messages/{reply}/feedback/": ["rating", "comment"],
    "messages/{reply}/stop/": [],
    "messages/{reply}/retry/": [],
    "messages/{reply}/continue/": [],
}


def form_data(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    names = st.sampled_from([*fields, "csrfmiddlewaretoken", "extra"])
    return st.dictionaries(names, st.one_of(TEXT, st.lists(TEXT, max_size=3)), max_size=4)


def message_ids(default: int) -> st.SearchStrategy[int]:
    return st.one_of(st.just(default), st.integers(min_value=0, max_value=2**70))


def assert_no_partial_rows() -> None:
    """Every user message has a reply after it; at most one reply per conversation is active;
    nothing is longer than its field allows."""
    for conversation in Conversation.objects.all():
        roles = list(conversation.messages.order_by("id").values_list("role", flat=True))
        for i, role in enumerate(roles):
            if role == Message.Role.USER:
                assert Message.Role.ASSISTANT in roles[i + 1 :], roles
        assert len(conversation.title) <= 200
    busy = Conversation.objects.annotate(
        active=Count("messages", filter=Q(messages__status__in=["pending", "streaming"]))
    ).filter(active__gt=1)
    assert not busy.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("route", list(FORMS))
def test_no_form_post_errors_or_leaves_a_partial_row(
    route, django_user_model, sent_to_worker, monkeypatch
):
    monkeypatch.setattr("chat.views.available_models", lambda: ["fake-model", "other-model"])
    world = make_world(django_user_model)
    client = world.client("owner")

    @FUZZ
    @given(
        data=form_data(FORMS[route]),
        message_id=message_ids(world.reply.pk),
        reply_state=st.sampled_from(
            [(s, r) for s in Message.Status.values for r in ("stop", "length", "tool_calls")]
        ),
        htmx=st.booleans(),
    )
    def post(data, message_id, reply_state, htmx):
        sid = transaction.savepoint()
        try:
            status, finish_reason = reply_state
            Message.objects.filter(pk=world.reply.pk).update(
                status=status, finish_reason=finish_reason
            )
            ids = {"reply": message_id, "user_message": world.user_message.pk}
            if "{user_message}" in route:
                ids["user_message"] = message_id
            path = f"/c/{world.conversation.pk}/" + route.format(**ids)
            before = snapshot()
            headers = {"HX-Request": "true"} if htmx else {}
            response = client.post(path, data, headers=headers)
            assert response.status_code < 500
            if response.status_code >= 400:
                assert snapshot() == before, "a refused request changed rows"
            assert_no_partial_rows()
        finally:
            transaction.savepoint_rollback(sid)

    post()


# --- The socket ---------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
RESYNC_LIKE = st.dictionaries(
    st.sampled_from(["resync", "HEADERS", "other"]),
    st.one_of(JSON, st.integers(min_value=-5, max_value=2**64)),
    max_size=3,
)
SOCKET_TEXT = st.one_of(
    TEXT,
    JSON.map(json.dumps),
    RESYNC_LIKE.map(json.dumps),
    st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n + "]" * n),
)


@FUZZ
@given(text=SOCKET_TEXT)
def test_a_socket_message_is_a_request_or_refused_never_an_error(text):
    try:
        parse(text_data=text, bytes_data=None)
    except Refused:
        pass


@pytest.mark.django_db(transaction=True)
def test_a_socket_answers_any_message_with_a_frame_nothing_or_a_close_code(
    django_user_model, sent_to_worker
):
    world = make_world(django_user_model)
    session = session_cookie_for(world.owner)

    async def exchange(text: str | None, data: bytes | None) -> None:
        comm = socket_for(world.conversation.pk, session)
        assert (await comm.connect())[0]
        await comm.send_to(text_data=text, bytes_data=data)
        if not await comm.receive_nothing(0.05):
            output = await comm.receive_output()
            if output["type"] == "websocket.close":
                assert output["code"] in {CLOSE_MALFORMED, CLOSE_NOT_TEXT, CLOSE_TOO_BIG}
            else:
                assert output["type"] == "websocket.send"
        await comm.disconnect()

    @settings(FUZZ, max_examples=25)
    @given(
        message=st.one_of(
            SOCKET_TEXT.filter(bool).map(
                lambda text: (text, None)
            ),  # (the test client sends no empty frame)
            st.binary(min_size=1, max_size=64).map(lambda data: (None, data)),
        )
    )
    def send(message):
        before = snapshot()
        async_to_sync(exchange)(*message)
        assert snapshot() == before

    send()
