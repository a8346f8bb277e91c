"""The admin shows each conversation's messages with status, finish reason, errors and usage."""

import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import strip_tags

from chat import services
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


def answered(user: Any, monkeypatch: pytest.MonkeyPatch, **reply: Any) -> Conversation:
    """A conversation of `user`'s with "question one" and its reply, saved with `reply`'s
    fields (no reply is generated)."""
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    conversation = services.conversation_create(owner=user)
    _, message = services.message_submit(conversation=conversation, content="question one")
    Message.objects.filter(pk=message.pk).update(**reply)
    return conversation


def test_admin_conversation_page_shows_every_message_and_how_it_ended(
    admin_client: Client, user, monkeypatch
):
    conversation = answered(
        user,
        monkeypatch,
        status="error",
        content="partial answer",
        error="HTTP 503: overloaded",
        finish_reason="",
        prompt_tokens=12,
        completion_tokens=3,
    )
    page = admin_client.get(reverse("admin:chat_conversation_change", args=[conversation.pk]))
    body = page.content.decode()
    for text in ["question one", "partial answer", "HTTP 503: overloaded", "error", ">12<"]:
        assert text in body
    listing = admin_client.get(reverse("admin:chat_conversation_changelist") + "?q=partial")
    assert "question one" in listing.content.decode()
    filtered = admin_client.get(
        reverse("admin:chat_conversation_changelist") + "?message_status=error"
    )
    assert "question one" in filtered.content.decode()


def test_a_replys_times_read_as_in_the_transcript_and_its_messages_are_headed_in_order(
    admin_client: Client, user, monkeypatch
):
    """The conversation's page showed a reply's times as `0:00:00.096618`, where the
    transcript says "97 ms"; the transcript headed each message with an h3 right under the
    page's h1 (axe: heading-order)."""
    from datetime import timedelta

    conversation = answered(
        user,
        monkeypatch,
        status="complete",
        content="an answer",
        time_to_first_token=timedelta(microseconds=96_618),
        duration=timedelta(seconds=2, microseconds=400_000),
    )
    page = admin_client.get(reverse("admin:chat_conversation_change", args=[conversation.pk]))
    body = page.content.decode()
    assert ">97 ms<" in body and ">2.4 s<" in body, body
    assert "0:00:00.096618" not in body and "0:00:02.4" not in body
    # The question has no times: shown as the admin shows any empty value (they were blank).
    cells = re.findall(r'<td class="field-(?:first_token|took)">(.*?)</td>', body, re.S)
    assert len(cells) == 4 and sum("-" in strip_tags(cell).split() for cell in cells) == 2, cells
    transcript = admin_client.get(
        reverse("admin:chat_conversation_transcript", args=[conversation.pk])
    ).content.decode()
    assert transcript.count("<h2>") == 2 and "<h3" not in transcript


def test_finish_reasons_other_than_stop_are_shown_on_the_page(client: Client, user, monkeypatch):
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    client.force_login(user)
    conversation = services.conversation_create(owner=user)
    _, reply = services.message_submit(conversation=conversation, content="q")
    Message.objects.filter(pk=reply.pk).update(
        status="complete", finish_reason="content_filter", content=""
    )
    body = client.get(conversation.get_absolute_url()).content.decode()
    assert "content filter stopped this reply" in body and "finish: content_filter" in body


def test_transcript_renders_like_the_chat_sanitized_with_status_and_feedback(
    admin_client, user, monkeypatch
):
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    conversation = services.conversation_create(owner=user)
    _, reply = services.message_submit(conversation=conversation, content="hello")
    Message.objects.filter(pk=reply.pk).update(
        status="complete",
        finish_reason="length",
        content="**Bold** <script>alert(1)</script>",
        **services.rendered_fields(content="**Bold** <script>alert(1)</script>", reasoning=""),
        prompt_tokens=7,
        completion_tokens=9,
        feedback="down",
        feedback_comment="too short",
    )
    url = reverse("admin:chat_conversation_transcript", args=[conversation.pk])
    body = admin_client.get(url).content.decode()
    assert "<strong>Bold</strong>" in body and "<script>alert(1)</script>" not in body
    for text in [
        "finish reason <strong>length</strong>",
        "tokens 7 / 9",
        "thumbs down",
        "too short",
    ]:
        assert text in body


def test_export_actions_write_jsonl_and_csv(admin_client, user, monkeypatch):
    import csv
    import io
    import json

    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    conversation = services.conversation_create(owner=user)
    services.message_submit(conversation=conversation, content='hello, "world"')
    formula = services.conversation_create(owner=user)
    services.message_submit(conversation=formula, content='=HYPERLINK("http://evil")')
    changelist = reverse("admin:chat_conversation_changelist")
    data = {"action": "export_jsonl", "_selected_action": [str(conversation.pk)]}
    formula_data = {"action": "export_csv", "_selected_action": [str(formula.pk)]}
    formula_rows = list(
        csv.DictReader(io.StringIO(admin_client.post(changelist, formula_data).content.decode()))
    )
    assert formula_rows[0]["content"] == '\'=HYPERLINK("http://evil")'  # not run as a formula
    response = admin_client.post(changelist, data)
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert json.loads(lines[0])["messages"][0]["content"] == 'hello, "world"'
    data["action"] = "export_csv"
    rows = list(csv.DictReader(io.StringIO(admin_client.post(changelist, data).content.decode())))
    assert [(r["role"], r["content"]) for r in rows] == [
        ("user", 'hello, "world"'),
        ("assistant", ""),
    ]
    assert rows[0]["conversation_id"] == str(conversation.pk)


def test_staff_with_view_permission_only_get_a_read_only_admin(
    client, user, django_user_model, monkeypatch
):
    from django.contrib.auth.models import Permission

    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    reviewer = django_user_model.objects.create_user("reviewer", password="pw", is_staff=True)
    reviewer.user_permissions.add(Permission.objects.get(codename="view_conversation"))
    client.force_login(reviewer)
    conversation = services.conversation_create(owner=user)
    change = client.get(reverse("admin:chat_conversation_change", args=[conversation.pk]))
    assert change.status_code == 200
    assert 'name="_save"' not in change.content.decode()
    assert (
        client.post(
            reverse("admin:chat_conversation_change", args=[conversation.pk]), {"title": "hacked"}
        ).status_code
        == 403
    )
    assert (
        client.get(
            reverse("admin:chat_conversation_transcript", args=[conversation.pk])
        ).status_code
        == 200
    )
    assert (
        client.post(
            reverse("admin:chat_conversation_delete", args=[conversation.pk]), {"post": "yes"}
        ).status_code
        == 403
    )


def test_conversations_filter_by_feedback_and_show_token_totals(admin_client, user, monkeypatch):
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    liked = services.conversation_create(owner=user)
    _, reply = services.message_submit(conversation=liked, content="liked one")
    Message.objects.filter(pk=reply.pk).update(
        status="complete", feedback="up", prompt_tokens=10, completion_tokens=5
    )
    other = services.conversation_create(owner=user)
    services.message_submit(conversation=other, content="plain one")
    changelist = reverse("admin:chat_conversation_changelist")
    body = admin_client.get(changelist + "?feedback=up").content.decode()
    assert "liked one" in body and "plain one" not in body
    assert "10 / 5" in body
    # "Any feedback": a rated reply among unrated messages (every question is one).
    body = admin_client.get(changelist + "?feedback=any").content.decode()
    assert "liked one" in body and "plain one" not in body
    assert (
        "plain one"
        in admin_client.get(changelist + f"?owner__id__exact={user.pk}").content.decode()
    )


def test_transcript_shows_messages_in_the_transcript_not_as_admin_banners(
    admin_client, user, monkeypatch
):
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    conversation = services.conversation_create(owner=user)
    _, reply = services.message_submit(conversation=conversation, content="first question")
    Message.objects.filter(pk=reply.pk).update(
        status="complete",
        content="first answer",
        **services.rendered_fields(content="first answer", reasoning=""),
    )
    url = reverse("admin:chat_conversation_transcript", args=[conversation.pk])
    body = admin_client.get(url).content.decode()
    assert "messagelist" not in body and 'class="success"' not in body
    transcript = body.split('<div class="transcript">', 1)[1]
    assert "first question" in transcript and "first answer" in transcript
    assert f'id="t{reply.pk}"' in transcript


def test_token_totals_stay_the_same_when_a_search_or_filter_matches_several_messages(
    admin_client, user, monkeypatch
):
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    conversation = services.conversation_create(owner=user)
    for question, answer, prompt, completion in [
        ("what to see in Lisbon", "Lisbon has trams", 100, 400),
        ("and Lisbon food", "Lisbon has pastries", 194, 567),
    ]:
        _, reply = services.message_submit(conversation=conversation, content=question)
        Message.objects.filter(pk=reply.pk).update(
            status="complete", content=answer, prompt_tokens=prompt, completion_tokens=completion
        )
    changelist = reverse("admin:chat_conversation_changelist")
    for query in ["", "?q=lisbon", "?q=Lisbon+has", "?message_status=complete", "?q=lisbon&o=5"]:
        body = admin_client.get(changelist + query).content.decode()
        assert "294 / 967" in body, query
        assert "4 messages<" in body, query


def test_the_changelist_shows_compact_dates_and_short_titles_with_the_full_ones_on_hover(
    admin_client, user
):
    from datetime import timedelta

    from django.utils import timezone

    from chat.models import Conversation

    title = "A rather long conversation title that goes on and on about trains in Portugal"
    conversation = Conversation.objects.create(owner=user, title=title, model="m")
    long_ago = timezone.localtime() - timedelta(days=800)
    Conversation.objects.filter(pk=conversation.pk).update(updated=long_ago)
    body = admin_client.get(reverse("admin:chat_conversation_changelist")).content.decode()
    assert (
        f'<span title="{title}">A rather long conversation title that goes on and on about…</span>'
        in body
    )
    assert f'title="{long_ago:%Y-%m-%d %H:%M:%S}">{long_ago:%Y-%m-%d}</time>' in body
    assert "0 messages</a>" in body


def test_csv_export_action_neutralises_formulas_in_titles_too(admin_client, user, monkeypatch):
    import csv
    import io

    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    conversation = services.conversation_create(owner=user)
    services.message_submit(conversation=conversation, content=' =HYPERLINK("http://evil")')
    Conversation.objects.filter(pk=conversation.pk).update(title='=HYPERLINK("http://evil")')
    changelist = reverse("admin:chat_conversation_changelist")
    data = {"action": "export_csv", "_selected_action": [str(conversation.pk)]}
    body = admin_client.post(changelist, data).content.decode()
    row = next(csv.DictReader(io.StringIO(body)))
    assert row["conversation_title"] == '\'=HYPERLINK("http://evil")'
    assert row["content"] == '\' =HYPERLINK("http://evil")'


def test_the_transcript_shows_every_version_labelled_and_the_users_path(
    admin_client, user, monkeypatch
):
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    conversation = services.conversation_create(owner=user)
    question, reply = services.message_submit(conversation=conversation, content="q")
    Message.objects.filter(pk=reply.pk).update(
        status="complete",
        content="old answer",
        feedback="down",
        feedback_comment="bad",
        **services.rendered_fields(content="old answer", reasoning=""),
    )
    reply.refresh_from_db()
    new = services.reply_regenerate(reply=reply)
    Message.objects.filter(pk=new.pk).update(
        status="complete",
        content="new answer",
        **services.rendered_fields(content="new answer", reasoning=""),
    )
    url = reverse("admin:chat_conversation_transcript", args=[conversation.pk])
    body = admin_client.get(url).content.decode()
    transcript = body.split('<div class="transcript">', 1)[1]
    assert transcript.index("old answer") < transcript.index("new answer")
    assert f"version 1 of 2, branch from message #{question.pk}" in transcript
    assert f"version 2 of 2, branch from message #{question.pk}" in transcript
    assert "feedback <strong>thumbs down</strong>: “bad”" in transcript
    off_path = transcript.split(f'id="t{reply.pk}"', 1)[0].rsplit("<section", 1)[1]
    assert "t-off-path" in off_path


def test_the_transcript_shows_each_reply_with_the_system_prompt_it_was_made_with(
    admin_client, user, monkeypatch
):
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    conversation = services.conversation_create(owner=user, system_prompt="Be brief.")
    _, first = services.message_submit(conversation=conversation, content="q1")
    Message.objects.filter(pk=first.pk).update(status="complete", content="a1")
    services.conversation_configure(
        conversation=conversation, model=conversation.model, system_prompt="Answer in French."
    )
    _, second = services.message_submit(conversation=conversation, content="q2")
    url = reverse("admin:chat_conversation_transcript", args=[conversation.pk])
    body = admin_client.get(url).content.decode()
    first_section = body[body.index(f'id="t{first.pk}"') : body.index(f'id="t{second.pk - 1}"')]
    second_section = body[body.index(f'id="t{second.pk}"') :]
    assert "Be brief." in first_section and "Answer in French." not in first_section
    assert "Answer in French." in second_section and "Be brief." not in second_section


NO_INLINE_FORMS = {
    "messages-TOTAL_FORMS": "0",
    "messages-INITIAL_FORMS": "0",
    "messages-MIN_NUM_FORMS": "0",
    "messages-MAX_NUM_FORMS": "1000",
}


def test_a_conversation_is_a_record_that_even_a_superuser_cannot_add_or_change(
    admin_client, user, monkeypatch
):
    """An added conversation had no owner (a server error); a saved one moved to the top of its
    owner's list, and its system prompt or model changed the owner's next reply."""
    from datetime import timedelta

    from django.utils import timezone

    from chat import selectors

    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    admin_client.raise_request_exception = False
    form = {"title": "t", "title_source": "words", "model": "m", "system_prompt": "be rude"}
    added = admin_client.post(reverse("admin:chat_conversation_add"), {**form, **NO_INLINE_FORMS})
    assert added.status_code == 403
    assert not Conversation.objects.exists()

    conversation = services.conversation_create(owner=user)
    past = timezone.now() - timedelta(days=30)
    Conversation.objects.filter(pk=conversation.pk).update(updated=past)
    change_url = reverse("admin:chat_conversation_change", args=[conversation.pk])
    page = admin_client.get(change_url)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert "View on site" not in page.content.decode()
    assert admin_client.post(change_url, {**form, **NO_INLINE_FORMS}).status_code == 403
    conversation.refresh_from_db()
    assert (conversation.updated, conversation.system_prompt) == (past, "")
    assert selectors.conversation_sidebar_page(user=user).entries[0][0] == "Older"


@pytest.mark.parametrize("how", ["one", "action"])
def test_deleting_in_the_admin_keeps_the_days_tokens_and_stops_the_reply(
    admin_client, user, monkeypatch, how, django_capture_on_commit_callbacks
):
    """The admin deleted the rows itself: the owner's tokens for the day came back, and a reply
    still streaming was not told to stop."""
    from chat import limits

    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    cancelled: list[int] = []
    monkeypatch.setattr("chat.events.request_cancel", cancelled.append)
    conversation = services.conversation_create(owner=user)
    _, done = services.message_submit(conversation=conversation, content="q")
    Message.objects.filter(pk=done.pk).update(
        status="complete", content="a", prompt_tokens=60, completion_tokens=50
    )
    _, streaming = services.message_submit(conversation=conversation, content="q2", after=done.pk)
    assert limits._tokens_spent_today(user.pk) == 110
    with django_capture_on_commit_callbacks(execute=True):
        if how == "one":
            response = admin_client.post(
                reverse("admin:chat_conversation_delete", args=[conversation.pk]),
                {"post": "yes"},
            )
        else:
            response = admin_client.post(
                reverse("admin:chat_conversation_changelist"),
                {"action": "delete_selected", "_selected_action": [conversation.pk], "post": "yes"},
            )
    assert response.status_code == 302
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert limits._tokens_spent_today(user.pk) == 110
    assert cancelled == [streaming.pk]


def test_a_message_cannot_be_deleted_alone_but_goes_with_its_user(admin_client, user, monkeypatch):
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    conversation = services.conversation_create(owner=user)
    question, _ = services.message_submit(conversation=conversation, content="q")
    url = reverse("admin:chat_message_delete", args=[question.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    assert Message.objects.filter(pk=question.pk).exists()
    change = admin_client.get(reverse("admin:chat_message_change", args=[question.pk]))
    assert url not in change.content.decode()
    listing = admin_client.get(reverse("admin:chat_message_changelist")).content.decode()
    assert "delete_selected" not in listing
    # A user's delete takes their conversations and messages with it.
    deleted = admin_client.post(reverse("admin:auth_user_delete", args=[user.pk]), {"post": "yes"})
    assert deleted.status_code == 302
    assert not Message.objects.filter(pk=question.pk).exists()


def test_the_messages_list_is_newest_first_and_says_what_each_message_says(
    admin_client, user, monkeypatch
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    title = "Trains in Portugal, and which of them still run on the narrow gauge lines"
    conversation = services.conversation_create(owner=user)
    older, _ = services.message_submit(conversation=conversation, content="The older question")
    Conversation.objects.filter(pk=conversation.pk).update(title=title)
    newer = Message.objects.create(
        conversation=conversation,
        parent=older,
        role=Message.Role.ASSISTANT,
        content="A long answer <b>with markup</b>\n\nthat " + "goes on " * 20_000,
    )
    exactly = "word " * 23 + "words"  # 120 characters: the whole of it in its tooltip
    Message.objects.create(conversation=conversation, parent=newer, role="user", content=exactly)
    url = reverse("admin:chat_message_changelist")
    with CaptureQueriesContext(connection) as captured:
        body = admin_client.get(url).content.decode()
    rows = [reverse("admin:chat_message_change", args=[m.pk]) for m in (newer, older)]
    assert body.index(rows[0]) < body.index(rows[1])
    # Its text's start, escaped and on one line, cut at a word; its conversation's title too.
    assert ">A long answer &lt;b&gt;with markup&lt;/b&gt; that goes on goes on goes…</span>" in body
    assert ">The older question<" in body
    assert f'<span title="{exactly}">' in body
    assert f'<span title="{title}">Trains in Portugal, and which of them still run on the…' in body
    # The list reads the start of each text, not the whole of it (160,000 characters here).
    listing = [q["sql"] for q in captured.captured_queries if '"chat_message"' in q["sql"]]
    whole = re.compile(r'(?<!\()"chat_message"\."(content|content_html|reasoning)"')
    assert listing and not any(whole.search(sql) for sql in listing), listing


def test_the_usage_limits_list_takes_no_query_per_row(admin_client, django_user_model):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chat.models import UsageLimit

    url = reverse("admin:chat_usagelimit_changelist")

    def queries_with(rows: int) -> int:
        for i in range(UsageLimit.objects.count(), rows):
            owner = django_user_model.objects.create_user(f"limited{i}")
            UsageLimit.objects.create(user=owner, tokens_per_day=i)
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(url).status_code == 200
        return len(captured)

    assert queries_with(2) == queries_with(20)


def test_the_conversation_page_says_what_a_reply_did_besides_its_text(
    admin_client: Client, user, monkeypatch
):
    """A reply that only called tools showed as an empty one, its thinking not at all (the
    transcript shows both; found by a walk-through)."""
    conversation = answered(
        user,
        monkeypatch,
        status="complete",
        content="",
        reasoning="Let me think about the date." * 3,
        tool_calls=[
            {"id": "c1", "name": "current_datetime", "arguments": "{}"},
            {"id": "c2", "name": "calculate", "arguments": '{"expression": "2+2"}'},
        ],
        finish_reason="tool_calls",
    )
    reply = conversation.messages.get(role="assistant")
    Message.objects.create(  # the result, as a tool round saves it
        conversation=conversation,
        parent=reply,
        role=Message.Role.TOOL,
        content='{"now": "2026-12-05T23:00:00Z"}',
        tool_call_id="c1" * 200,
        tool_calls={"tool_call_id": "c1" * 200, "name": "current_datetime"},
    )
    page = admin_client.get(reverse("admin:chat_conversation_change", args=[conversation.pk]))
    cells = re.findall(r'<td class="field-work">(.*?)</td>', page.content.decode(), re.S)
    shown = [strip_tags(cell).strip() for cell in cells]
    assert shown == [
        "-",
        "thought 84 characters; called current_datetime, calculate",
        "the result of current_datetime",
    ], shown


def test_a_messages_own_page_reads_as_the_conversations_does(
    admin_client: Client, user, monkeypatch
):
    """It showed `Time to first token: 0:00:00.017819`, the stream engine's lease and request
    key, and breadcrumbs axe found too close to their text (found by a walk-through)."""
    from datetime import timedelta

    conversation = answered(
        user,
        monkeypatch,
        status="complete",
        content="an answer",
        time_to_first_token=timedelta(microseconds=96_618),
        duration=timedelta(seconds=2, microseconds=400_000),
        lease_owner="vm:19257:abc",
    )
    reply = conversation.messages.get(role="assistant")
    body = admin_client.get(reverse("admin:chat_message_change", args=[reply.pk])).content.decode()
    assert ">97 ms<" in body and ">2.4 s<" in body and "0:00:00.096618" not in body
    assert "vm:19257" not in body and "Lease owner" not in body and "Idempotency" not in body
    assert "admin/chat/changelist.css" in body


def test_the_conversation_page_says_which_version_of_its_turn_each_message_is(
    admin_client: Client, user, monkeypatch
):
    """Listed by time, a turn regenerated read as a question answered twice, with nothing to
    tell the versions apart nor which one the user sees (found by a walk-through): each
    message says its place among its turn's versions and whether the page shows it, read in
    one query for the page."""
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    conversation = services.conversation_create(owner=user)
    question, reply = services.message_submit(conversation=conversation, content="q")
    Message.objects.filter(pk=reply.pk).update(status="complete", content="old answer")
    reply.refresh_from_db()
    new = services.reply_regenerate(reply=reply)
    Message.objects.filter(pk=new.pk).update(status="complete", content="new answer")
    url = reverse("admin:chat_conversation_change", args=[conversation.pk])
    page = admin_client.get(url).content.decode()
    cells = re.findall(r'<td class="field-version">(.*?)</td>', page, re.S)
    assert [strip_tags(cell).strip() for cell in cells] == [
        "shown",
        "1 of 2, not shown",
        "2 of 2, shown",
    ]
    with CaptureQueriesContext(connection) as counted:
        admin_client.get(url)
    version_reads = [  # (the versions' read: the messages' tree without their text)
        q["sql"]
        for q in counted.captured_queries
        if '"selected"' in q["sql"] and '"content"' not in q["sql"]
    ]
    assert len(version_reads) == 1, version_reads


def test_the_transcripts_way_back_is_the_conversation_pages_and_one_step_more(
    admin_client: Client, user, monkeypatch
):
    """The transcript's breadcrumbs left out the app ("Chat") that every admin page names
    (found by a walk-through)."""
    conversation = answered(user, monkeypatch, status="complete", content="An answer.")

    def crumbs(url: str) -> list[str]:
        body = admin_client.get(url).content.decode()
        trail = body.split('<div class="breadcrumbs">', 1)[1].split("</div>", 1)[0]
        return [strip_tags(part).strip() for part in trail.split("&rsaquo;")]

    change = crumbs(reverse("admin:chat_conversation_change", args=[conversation.pk]))
    transcript = crumbs(reverse("admin:chat_conversation_transcript", args=[conversation.pk]))
    assert change[:2] == ["Home", "Chat"]
    assert transcript == [*change, "Transcript"]
