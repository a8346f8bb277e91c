"""Views: login, CSRF, ownership, validation, and the message pipeline's first step."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.db import connections, transaction
from django.test import Client
from django.urls import reverse

from chat import services, views
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(user) -> Conversation:
    return services.conversation_create(owner=user)


@pytest.fixture
def alice(alice_client) -> Client:
    return alice_client


def test_pages_require_login(client: Client, conversation: Conversation):
    for url in [reverse("chat:start"), conversation.get_absolute_url()]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_the_pages_requests_once_signed_out_are_refused_with_a_line_not_a_login_page(
    client: Client, conversation: Conversation
):
    """htmx followed the redirect to the login page and drew that page in place of what was
    asked for (the message box emptied): a request of the page's gets 401 and a line."""
    _, reply = services.message_submit(conversation=conversation, content="hi")
    htmx = {"HTTP_HX_REQUEST": "true"}
    asks = [
        ("post", reverse("chat:message_create", args=[conversation.pk]), {"content": "hi"}),
        ("post", reverse("chat:message_retry", args=[conversation.pk, reply.pk]), {}),
        ("post", reverse("chat:message_feedback", args=[conversation.pk, reply.pk]), {}),
        ("post", reverse("chat:conversation_rename", args=[conversation.pk]), {"title": "x"}),
        ("post", reverse("chat:conversation_create"), {}),
        ("post", reverse("chat:conversation_start"), {"content": "hi"}),
        ("get", reverse("chat:conversation_sidebar"), {}),
        ("get", conversation.get_absolute_url(), {}),
    ]
    for method, url, data in asks:
        response = getattr(client, method)(url, data, **htmx)
        assert response.status_code == 401, url
        assert response["Content-Type"].startswith("text/plain")
        assert response.content.decode() == views.SIGNED_OUT
        page = getattr(client, method)(url, data)  # a page of the browser's own: the login
        assert page.status_code == 302 and page["Location"].startswith(reverse("login"))
    assert conversation.messages.count() == 2 and Conversation.objects.count() == 1


def test_a_refused_login_keeps_the_name_typed(client: Client, user):
    response = client.post(reverse("login"), {"username": "bob <b>", "password": "wrong"})
    page = response.content.decode()
    assert "didn't match" in page
    assert 'value="bob &lt;b&gt;"' in page
    assert 'autocomplete="current-password" required autofocus' in page


def test_a_conversation_not_there_has_a_page_with_the_way_back(alice, settings):
    settings.DEBUG = False
    response = alice.get(reverse("chat:conversation_detail", args=[uuid.uuid4()]))
    assert response.status_code == 404
    page = response.content.decode()
    assert "<h1>Not found</h1>" in page and f'href="{reverse("chat:start")}"' in page


def test_another_users_conversation_is_not_found(conversation: Conversation, other_user):
    mallory = Client()
    mallory.force_login(other_user)
    assert mallory.get(conversation.get_absolute_url()).status_code == 404
    url = reverse("chat:message_create", args=[conversation.pk])
    assert mallory.post(url, {"content": "hi"}).status_code == 404
    assert not conversation.messages.exists()


def test_another_users_reply_cannot_be_stopped(
    conversation: Conversation, other_user, sent_to_worker
):
    _, reply = services.message_submit(conversation=conversation, content="hi")
    mallory = Client()
    mallory.force_login(other_user)
    url = reverse("chat:message_stop", args=[conversation.pk, reply.pk])
    assert mallory.post(url).status_code == 404
    reply.refresh_from_db()
    assert reply.status == Message.Status.PENDING


def test_a_messages_text_is_its_markdown_as_written_for_its_owner_only(
    alice: Client, conversation: Conversation, other_user, sent_to_worker
):
    """A reply's Copy puts its markdown on the clipboard as plain text: the page asks for it
    here. Its owner gets it as plain text (the browser runs nothing of it); no one else does,
    nor the conversation's system prompt."""
    _, reply = services.message_submit(conversation=conversation, content="hi")
    markdown = "**Bold** <script>alert(1)</script>\n\n```py\nprint('x')\n```\n"
    Message.objects.filter(pk=reply.pk).update(content=markdown, status=Message.Status.COMPLETE)
    url = reverse("chat:message_text", args=[conversation.pk, reply.pk])
    response = alice.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.content.decode() == markdown
    mallory = Client()
    mallory.force_login(other_user)
    assert mallory.get(url).status_code == 404
    system = conversation.messages.create(role=Message.Role.SYSTEM, content="secret")
    url = reverse("chat:message_text", args=[conversation.pk, system.pk])
    assert alice.get(url).status_code == 404


def test_a_piece_of_a_page_opened_as_a_page_goes_to_the_page_it_belongs_to(
    alice: Client, conversation: Conversation, other_user, sent_to_worker
):
    """The sidebar's list and a message are pieces the page fetches; opened by the browser
    itself (typed, a link opened in a new tab) they were drawn bare, unstyled. Opened so, they
    go to the start page searched as asked, and to the message in its conversation's page.
    The page's own requests still get the pieces; a message of someone else's is not found,
    opened either way."""
    user_message, reply = services.message_submit(conversation=conversation, content="hi")
    navigate = {"HTTP_SEC_FETCH_MODE": "navigate", "HTTP_SEC_FETCH_DEST": "document"}
    fetch = {"HTTP_SEC_FETCH_MODE": "cors", "HTTP_SEC_FETCH_DEST": "empty", "HTTP_HX_REQUEST": "1"}
    sidebar = reverse("chat:conversation_sidebar")
    opened = alice.get(sidebar + "?q=caf%C3%A9+%26+tea&cursor=x", **navigate)
    assert opened.status_code == 302
    assert opened["Location"] == reverse("chat:start") + "?q=caf%C3%A9+%26+tea"
    assert alice.get(sidebar, **navigate)["Location"] == reverse("chat:start")
    fetched = alice.get(sidebar, **fetch)
    assert fetched.status_code == 200 and "<html" not in fetched.content.decode()
    for response in (opened, fetched):
        assert "Sec-Fetch-Mode" in response["Vary"]  # (a cache keeps the two apart)
    for message in (user_message, reply):
        url = reverse("chat:message_detail", args=[conversation.pk, message.pk])
        opened = alice.get(url, **navigate)
        assert opened.status_code == 302
        assert opened["Location"] == f"{conversation.get_absolute_url()}#m{message.pk}"
        fetched = alice.get(url, **fetch)
        assert fetched.status_code == 200
        assert fetched.content.decode().lstrip().startswith(f'<article id="m{message.pk}"')
        mallory = Client()
        mallory.force_login(other_user)
        assert mallory.get(url, **navigate).status_code == 404
        assert mallory.get(url, **fetch).status_code == 404


def test_conversation_list_shows_only_my_conversations_newest_first(alice, user, other_user):
    older = services.conversation_create(owner=user)
    older.title = "Older one"
    older.save()
    newer = services.conversation_create(owner=user)
    newer.title = "Newer one"
    newer.save()
    theirs = services.conversation_create(owner=other_user)
    theirs.title = "Not mine"
    theirs.save()
    body = alice.get(reverse("chat:start")).content.decode()
    assert body.index("Newer one") < body.index("Older one")
    assert "Not mine" not in body


def test_the_first_message_starts_the_conversation_and_opens_its_page(
    alice, user, sent_to_worker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(
            reverse("chat:conversation_start"), {"content": "Hello"}, HTTP_HX_REQUEST="true"
        )
    conversation = Conversation.objects.get(owner=user)
    assert response.status_code == 204
    assert response["HX-Redirect"] == conversation.get_absolute_url()
    user_message, reply = conversation.messages.order_by("id")
    assert (user_message.content, reply.status) == ("Hello", "pending")
    assert sent_to_worker == [reply.pk]
    assert conversation.title == "Hello"
    plain = alice.post(reverse("chat:conversation_start"), {"content": "Again"})
    assert plain.status_code == 302


def test_the_start_page_saves_nothing_and_an_empty_first_message_starts_nothing(alice, user):
    page = alice.get(reverse("chat:start")).content.decode()
    assert 'id="composer-text"' in page and "data-prompt=" in page
    response = alice.post(reverse("chat:conversation_start"), {"content": "  "})
    assert response.status_code == 422 and "Type a message" in response.content.decode()
    assert not Conversation.objects.exists()


def test_the_same_first_message_sent_twice_starts_one_conversation(alice, user, sent_to_worker):
    data = {"content": "once", "idempotency_key": str(uuid.uuid4())}
    first = alice.post(reverse("chat:conversation_start"), data, HTTP_HX_REQUEST="true")
    second = alice.post(reverse("chat:conversation_start"), data, HTTP_HX_REQUEST="true")
    assert first["HX-Redirect"] == second["HX-Redirect"]
    assert Conversation.objects.count() == 1 and Message.objects.count() == 2


def test_a_first_message_sent_again_with_its_key_and_another_text_is_refused_not_lost(
    alice, user, sent_to_worker
):
    """A start page that the browser's history showed again as it was drawn sends the key it
    was drawn with: the new text was taken for the first message sent with it, opened that
    conversation, and was lost. It is refused, and the page redraws keeping it."""
    key = str(uuid.uuid4())
    url = reverse("chat:conversation_start")
    alice.post(url, {"content": "about cats", "idempotency_key": key}, HTTP_HX_REQUEST="true")
    response = alice.post(
        url, {"content": "about dogs", "idempotency_key": key}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 409 and response["X-Conversation-Changed"] == "1"
    assert "browser's history" in response.content.decode()
    assert Conversation.objects.count() == 1 and Message.objects.count() == 2


class _HeldAtFirstTransaction:
    """`django.db.transaction` for chat.services, with each thread's first `atomic()` held
    until both threads reach it: two requests of a double click in flight at once."""

    def __init__(self, barrier: threading.Barrier) -> None:
        self._barrier = barrier
        self._local = threading.local()

    def atomic(self, *args: Any, **kwargs: Any) -> Any:
        if not getattr(self._local, "waited", False):
            self._local.waited = True
            self._barrier.wait(timeout=10)
        return transaction.atomic(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(transaction, name)


@pytest.mark.django_db(transaction=True)
def test_a_double_click_on_the_start_page_starts_one_conversation(
    user, sent_to_worker, monkeypatch
):
    """Both requests of a double click were in flight at once: each looked the key up before
    either had saved it, and each started a conversation of its own, with its own reply."""
    monkeypatch.setattr(services, "transaction", _HeldAtFirstTransaction(threading.Barrier(2)))
    data = {"content": "once", "idempotency_key": str(uuid.uuid4())}
    redirects: list[str] = []

    def click() -> None:
        try:
            client = Client()
            client.force_login(user)
            response = client.post(reverse("chat:conversation_start"), data, HTTP_HX_REQUEST="true")
            redirects.append(response["HX-Redirect"])
        finally:
            connections.close_all()

    clicks = [threading.Thread(target=click) for _ in range(2)]
    for thread in clicks:
        thread.start()
    for thread in clicks:
        thread.join(60)
    assert len(redirects) == 2 and redirects[0] == redirects[1]
    assert Conversation.objects.filter(owner=user).count() == 1
    assert Message.objects.count() == 2 and len(sent_to_worker) == 1


def test_a_conversation_starts_with_an_offered_model_only(alice, user, settings, sent_to_worker):
    settings.CHAT_MODELS = ["small-model", "big-model"]
    settings.CHAT_MODEL = "small-model"
    url = reverse("chat:conversation_start")
    assert alice.post(url, {"content": "hi", "model": "not-offered"}).status_code == 422
    alice.post(url, {"content": "hi", "model": "big-model"})
    assert Conversation.objects.get().model == "big-model"


def test_new_conversation_redirects_to_its_page(alice, user):
    response = alice.post(reverse("chat:conversation_create"))
    conversation = Conversation.objects.get(owner=user)
    assert response.status_code == 302
    assert response["Location"] == conversation.get_absolute_url()


def test_posting_a_message_requires_the_csrf_token(user, conversation: Conversation):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    url = reverse("chat:message_create", args=[conversation.pk])
    assert client.post(url, {"content": "hi"}).status_code == 403
    assert not conversation.messages.exists()


def test_posting_a_message_saves_it_and_a_pending_reply_and_starts_it_after_commit(
    alice, conversation: Conversation, sent_to_worker, django_capture_on_commit_callbacks
):
    url = reverse("chat:message_create", args=[conversation.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(url, {"content": "Hello <there>"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    user_message, reply = conversation.messages.order_by("id")
    assert (user_message.role, user_message.content) == ("user", "Hello <there>")
    assert (reply.role, reply.status) == ("assistant", "pending")
    assert sent_to_worker == [reply.pk]
    body = response.content.decode()
    assert "Hello &lt;there&gt;" in body and f'id="m{reply.pk}"' in body
    assert 'id="composer-key"' in body and 'hx-swap-oob="true"' in body
    conversation.refresh_from_db()
    assert conversation.title == "Hello <there>"


def test_empty_message_is_rejected_with_a_reason(alice, conversation: Conversation, sent_to_worker):
    url = reverse("chat:message_create", args=[conversation.pk])
    response = alice.post(url, {"content": "   "}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert "Type a message" in response.content.decode()
    assert not conversation.messages.exists()


def test_sending_while_a_reply_streams_is_refused_and_nothing_is_saved(
    alice, conversation: Conversation, sent_to_worker
):
    services.message_submit(conversation=conversation, content="first")
    url = reverse("chat:message_create", args=[conversation.pk])
    response = alice.post(url, {"content": "second"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 409
    assert response.content.decode() == views.BUSY
    assert conversation.messages.count() == 2


def test_the_page_says_what_the_server_says_when_it_refuses_a_message_while_a_reply_streams():
    """The page does not send while a reply streams and says why itself (static/chat/chat.js):
    in the server's words, as a refusal it did not foresee shows them."""
    script = (Path(__file__).resolve().parent.parent / "static/chat/chat.js").read_text()
    assert f'"{views.BUSY}"' in script


def test_a_message_written_below_a_message_the_conversation_no_longer_ends_with_is_refused(
    alice, conversation: Conversation, sent_to_worker
):
    """Another tab switched versions or sent a turn since this page was drawn: the message
    would go below messages the sender never saw."""
    url = reverse("chat:message_create", args=[conversation.pk])
    # An empty conversation's page says it shows nothing (0), and that is right.
    response = alice.post(url, {"content": "first", "after": "0"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    user_message, reply = conversation.messages.order_by("id")
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.COMPLETE)
    for stale in ("0", str(user_message.pk)):
        response = alice.post(url, {"content": "second", "after": stale}, HTTP_HX_REQUEST="true")
        assert response.status_code == 409
        assert response["X-Conversation-Changed"] == "1"
        assert "changed in another tab" in response.content.decode()
        assert conversation.messages.count() == 2
    response = alice.post(
        url, {"content": "second", "after": str(reply.pk)}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert conversation.messages.get(content="second").parent_id == reply.pk
    # A client that does not say what it shows goes below the last message, as before.
    Message.objects.filter(role="assistant").update(status=Message.Status.COMPLETE)
    response = alice.post(url, {"content": "third"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200


def test_the_same_submission_twice_creates_one_message_and_one_reply(
    alice, conversation: Conversation, sent_to_worker, django_capture_on_commit_callbacks
):
    url = reverse("chat:message_create", args=[conversation.pk])
    key = str(uuid.uuid4())
    with django_capture_on_commit_callbacks(execute=True):
        first = alice.post(url, {"content": "once", "idempotency_key": key}, HTTP_HX_REQUEST="true")
        second = alice.post(
            url, {"content": "once", "idempotency_key": key}, HTTP_HX_REQUEST="true"
        )
    assert first.status_code == second.status_code == 200
    assert conversation.messages.count() == 2
    assert len(sent_to_worker) == 1


def test_a_message_sent_again_with_its_key_and_another_text_is_refused_not_lost(
    alice, conversation: Conversation, sent_to_worker
):
    """A conversation's page that the browser's history showed again as it was drawn (Back)
    sends the key its message box was drawn with: the next message was taken for the one sent
    with it, and lost without a word. It is refused; the page redraws, keeping it."""
    url = reverse("chat:message_create", args=[conversation.pk])
    key = str(uuid.uuid4())
    alice.post(url, {"content": "first", "idempotency_key": key}, HTTP_HX_REQUEST="true")
    Message.objects.filter(role="assistant").update(status=Message.Status.COMPLETE)
    response = alice.post(
        url, {"content": "second", "idempotency_key": key}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 409 and response["X-Conversation-Changed"] == "1"
    assert list(conversation.messages.values_list("content", flat=True).order_by("id")) == [
        "first",
        "",
    ]


def test_no_cache_keeps_a_page(alice, conversation: Conversation):
    """The browser's Back asks for a page again: a page kept showed what was drawn before
    (a message sent from it was lost), and a signed-out browser's conversation."""
    for url in [
        reverse("chat:start"),
        reverse("chat:conversation_detail", args=[conversation.pk]),
        reverse("chat:conversation_sidebar"),
        reverse("login"),
    ]:
        response = alice.get(url)
        assert response.status_code == 200, url
        assert "no-store" in response["Cache-Control"], url
    services.message_submit(conversation=conversation, content="hi")
    reply = conversation.messages.get(role="assistant")
    text = alice.get(reverse("chat:message_text", args=[conversation.pk, reply.pk]))
    assert text["Cache-Control"] == "private, no-cache"  # (its own, as it said)


def test_stopping_a_queued_reply_cancels_it(alice, conversation: Conversation, sent_to_worker):
    _, reply = services.message_submit(conversation=conversation, content="hi")
    url = reverse("chat:message_stop", args=[conversation.pk, reply.pk])
    assert alice.post(url).status_code == 204
    reply.refresh_from_db()
    assert reply.status == Message.Status.CANCELLED


def test_the_page_says_when_the_demo_model_answers(alice, conversation: Conversation, settings):
    settings.CHAT_DEMO_MODE = True
    assert "demo model" in alice.get(conversation.get_absolute_url()).content.decode()
    settings.CHAT_DEMO_MODE = False
    assert "demo model" not in alice.get(conversation.get_absolute_url()).content.decode()


def test_page_sends_a_strict_content_security_policy(alice, conversation: Conversation):
    policy = alice.get(conversation.get_absolute_url())["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "img-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_the_login_page_names_the_demo_account_only_while_it_is_the_demo_setups(
    client: Client, django_user_model, settings
):
    import io

    from django.core.management import call_command

    call_command("ensure_demo_user", stdout=io.StringIO())
    settings.DEBUG = True
    assert "demo / demo" in client.get(reverse("login")).content.decode()
    settings.DEBUG = False  # a production server never says it
    assert "demo / demo" not in client.get(reverse("login")).content.decode()
    settings.DEBUG = True
    demo = django_user_model.objects.get(username="demo")
    demo.set_password("changed")
    demo.save()
    assert "demo / demo" not in client.get(reverse("login")).content.decode()


def test_a_message_is_sent_with_few_queries_and_its_turn_drawn_once_for_every_tab(
    alice,
    conversation: Conversation,
    sent_to_worker,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    """A query a turn does not need fails here: the user, the conversation, its message tree
    (the idempotency key, whether a reply runs, where the turn goes), the two messages, the
    owner's limits, the conversation's title and time (and on PostgreSQL the statement that
    locks the conversation's and its owner's rows; with Redis the session, which is then read
    from the database alone)."""
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    sent: list[tuple[object, ...]] = []
    monkeypatch.setattr(
        "chat.events.messages_appended_sync", lambda *args, **kwargs: sent.append((args, kwargs))
    )
    url = reverse("chat:message_create", args=[conversation.pk])
    with (
        CaptureQueriesContext(connection) as queries,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = alice.post(
            url, {"content": "Hi", "idempotency_key": str(uuid.uuid4())}, HTTP_HX_REQUEST="true"
        )
    assert response.status_code == 200
    statements = [q["sql"] for q in queries.captured_queries]
    reads_and_writes = [s for s in statements if s.split()[0] in {"SELECT", "INSERT", "UPDATE"}]
    locks = 1 if connection.features.has_select_for_update else 0
    session = 0 if settings.SESSION_ENGINE.endswith("cached_db") else 1
    assert len(reads_and_writes) <= 7 + locks + session, "\n".join(statements)
    user_message, reply = conversation.messages.order_by("id")
    [(args, kwargs)] = sent
    assert args == (conversation.pk, [user_message.pk, reply.pk])
    assert kwargs["active"] == [reply.pk]
    for message in (user_message, reply):
        assert f'<article id="m{message.pk}"' in kwargs["html"]
    # The first message follows none: nothing for a tab to check.
    assert kwargs["after"] is None
    assert kwargs["html"].startswith('<div hx-swap-oob="beforeend:#messages">')


def test_a_turn_takes_as_many_queries_after_ten_exchanges_as_after_none(
    alice, conversation: Conversation, sent_to_worker, monkeypatch
):
    """Where the turn goes is found from the message tree in one query (no query per message,
    as reading the tree as model instances without their conversation made)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chat.models import Message

    monkeypatch.setattr("chat.events.messages_appended_sync", lambda *args, **kwargs: None)
    url = reverse("chat:message_create", args=[conversation.pk])

    def turn() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = alice.post(
                url, {"content": "Hi", "idempotency_key": str(uuid.uuid4())}, HTTP_HX_REQUEST="true"
            )
        assert response.status_code == 200
        conversation.messages.filter(status=Message.Status.PENDING).update(status="complete")
        return len(queries.captured_queries)

    first = turn()
    for _ in range(9):
        turn()
    assert turn() == first
    last, before = conversation.messages.order_by("-id")[1:3]
    assert last.parent_id == before.pk  # the turn follows the one before


def test_the_composer_says_which_message_the_page_ends_with(
    alice, conversation: Conversation, sent_to_worker
):
    page = reverse("chat:conversation_detail", args=[conversation.pk])
    assert 'name="after" value="0"' in alice.get(page).content.decode()
    _, reply = services.message_submit(conversation=conversation, content="first")
    assert f'name="after" value="{reply.pk}"' in alice.get(page).content.decode()
