"""chat.compiled: a query compiled once answers what the ORM answers, for every call's values."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.compiled import CompiledQuery
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


def _conversations(owner: int) -> object:
    return Conversation.objects.filter(owner_id=owner, archived=False).order_by("-updated", "-pk")


def test_rows_are_the_orms_for_each_calls_values(user, other_user):
    for owner, titles in ((user, ["a", "b"]), (other_user, ["c"])):
        for title in titles:
            Conversation.objects.create(owner=owner, title=title, model="m")
    query = CompiledQuery(
        lambda owner: _conversations(owner).values_list("pk", "title", "updated", "pinned"),
        owner=int,
    )
    for owner in (user, other_user, user):
        rows = query.rows(owner=owner.pk)
        assert rows == list(
            _conversations(owner.pk).values_list("pk", "title", "updated", "pinned")
        )
        pk, _, updated, pinned = rows[0]
        assert isinstance(pk, uuid.UUID) and pinned is False
        assert isinstance(updated, datetime) and updated.tzinfo is not None
    assert query.rows(owner=12345) == []


def test_instances_are_the_orms(user, other_user):
    mine = Conversation.objects.create(owner=user, title="mine", model="m", system_prompt="s")
    Conversation.objects.create(owner=other_user, title="theirs", model="m")
    query = CompiledQuery(
        lambda owner, pk: Conversation.objects.filter(owner_id=owner, pk=pk)[:1],
        owner=int,
        pk=uuid.UUID,
    )
    [found] = query.instances(owner=user.pk, pk=mine.pk)
    assert found == mine and not found._state.adding
    for field in Conversation._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(mine, field.attname), field.name
    assert query.instances(owner=other_user.pk, pk=mine.pk) == []  # not the owner: nothing


def test_a_uuid_parameter_and_rows_of_messages(user):
    conversation = Conversation.objects.create(owner=user, model="m")
    other = Conversation.objects.create(owner=user, model="m")
    first = Message.objects.create(conversation=conversation, role="user", content="hi")
    Message.objects.create(conversation=other, role="user", content="elsewhere")
    query = CompiledQuery(
        lambda conversation: (
            Message.objects.filter(conversation_id=conversation)
            .order_by("id")
            .values_list("pk", "parent_id", "selected", "created", "idempotency_key")
        ),
        conversation=uuid.UUID,
    )
    assert query.rows(conversation=conversation.pk) == [(first.pk, None, True, first.created, None)]


def test_compiled_once_and_counted_as_a_query(user):
    query = CompiledQuery(
        lambda owner: Conversation.objects.filter(owner_id=owner).values_list("pk"), owner=int
    )
    with CaptureQueriesContext(connection) as queries:
        query.rows(owner=user.pk)
        query.rows(owner=user.pk)
    assert len(queries) == 2
    assert len(query._compiled) == 1


def test_a_parameter_that_does_not_reach_the_sql_is_refused(user):
    query = CompiledQuery(lambda owner: Conversation.objects.all().values_list("pk"), owner=int)
    with pytest.raises(ImproperlyConfigured):
        query.rows(owner=user.pk)


def test_instances_with_their_select_related_rows(user):
    conversation = Conversation.objects.create(owner=user, title="t", model="m")
    message = Message.objects.create(conversation=conversation, role="user", content="hi")
    query = CompiledQuery(
        lambda pk: Message.objects.select_related("conversation").filter(pk=pk)[:1], pk=int
    )
    with CaptureQueriesContext(connection) as queries:
        [found] = query.instances(pk=message.pk)
        assert found == message and found.content == "hi"
        assert found.conversation == conversation and found.conversation.title == "t"
    assert len(queries) == 1  # the conversation came with the message
    for field in Conversation._meta.concrete_fields:
        assert getattr(found.conversation, field.attname) == getattr(conversation, field.attname)


def test_a_uuid_parameter_may_come_as_text(user):
    conversation = Conversation.objects.create(owner=user, model="m")
    query = CompiledQuery(
        lambda pk: Conversation.objects.filter(pk=pk).values_list("pk"), pk=uuid.UUID
    )
    assert query.rows(pk=str(conversation.pk)) == [(conversation.pk,)]
    assert query.rows(pk=conversation.pk) == [(conversation.pk,)]


def test_an_update_changes_what_queryset_update_changes(user):
    from datetime import timedelta

    from django.utils import timezone

    from chat.compiled import CompiledUpdate

    conversation = Conversation.objects.create(owner=user, model="m")
    pending = Message.objects.create(conversation=conversation, role="assistant", status="pending")
    done = Message.objects.create(conversation=conversation, role="assistant", status="complete")
    claim = CompiledUpdate(
        lambda pk, worker, until: (
            Message.objects.filter(pk=pk, status="pending"),
            {"status": "streaming", "lease_owner": worker, "lease_expires": until},
        ),
        pk=int,
        worker=str,
        until=datetime,
    )
    until = timezone.now() + timedelta(seconds=15)
    assert claim.execute(pk=pending.pk, worker="w'1", until=until) == 1
    assert claim.execute(pk=pending.pk, worker="w2", until=until) == 0  # not pending any more
    assert claim.execute(pk=done.pk, worker="w2", until=until) == 0
    pending.refresh_from_db()
    assert (pending.status, pending.lease_owner, pending.lease_expires) == (
        "streaming",
        "w'1",
        until,
    )
    done.refresh_from_db()
    assert done.status == "complete" and done.lease_owner == ""


def test_an_update_with_str_parameters_in_its_filter(user):
    from chat.compiled import CompiledUpdate

    first = Conversation.objects.create(owner=user, model="m", title="Old")
    second = Conversation.objects.create(owner=user, model="m", title="Other")
    retitle = CompiledUpdate(
        lambda pk, old, new: (Conversation.objects.filter(pk=pk, title=old), {"title": new}),
        pk=uuid.UUID,
        old=str,
        new=str,
    )
    assert retitle.execute(pk=first.pk, old="Other", new="x") == 0
    assert retitle.execute(pk=first.pk, old="Old", new="New “title”") == 1
    assert Conversation.objects.get(pk=first.pk).title == "New “title”"
    assert Conversation.objects.get(pk=second.pk).title == "Other"


def test_an_update_with_a_date_parameter_and_an_expression(user, other_user):
    """The day's spent tokens (chat.limits): `tokens = tokens + %s` where the day is a date."""
    from datetime import date

    from chat.limits import _ADD_SPENT as add
    from chat.models import SpentTokens

    today, yesterday = date(2026, 12, 5), date(2026, 12, 4)
    mine = SpentTokens.objects.create(user=user, day=today, tokens=10)
    earlier = SpentTokens.objects.create(user=user, day=yesterday, tokens=10)
    theirs = SpentTokens.objects.create(user=other_user, day=today, tokens=10)
    assert add.execute(user=user.pk, day=today, tokens=5) == 1
    assert add.execute(user=user.pk, day=today, tokens=7) == 1
    assert add.execute(user=user.pk, day=date(2026, 12, 6), tokens=7) == 0
    assert [SpentTokens.objects.get(pk=row.pk).tokens for row in (mine, earlier, theirs)] == [
        22,
        10,
        10,
    ]


@pytest.mark.parametrize("use_tz", [True, False])
def test_datetimes_are_converted_as_sqlites_own_converter_does(settings, use_tz):
    from datetime import UTC, timedelta, timezone

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's converter")
    from django.db.backends.sqlite3.operations import DatabaseOperations

    from chat.compiled import _sqlite_datetime

    settings.USE_TZ = use_tz
    ops = DatabaseOperations(connection)
    values = [
        None,
        datetime(2026, 11, 30, 12, 34, 56, 789),
        datetime(2026, 11, 30, 12, 34, 56, tzinfo=UTC),
        datetime(2026, 11, 30, 12, 34, 56, tzinfo=timezone(timedelta(hours=-5))),
        "2026-11-30 12:34:56.000789",
        "2026-11-30 12:34:56+02:00",
    ]
    for value in values:
        expected = ops.convert_datetimefield_value(value, None, connection)
        got = _sqlite_datetime(value, None, connection)
        assert got == expected and getattr(got, "tzinfo", None) == getattr(expected, "tzinfo", None)


def test_a_compiled_query_on_sqlite_converts_its_datetimes_leanly(user):
    from chat.compiled import _sqlite_datetime

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's converter")
    Conversation.objects.create(owner=user, title="a", model="m")
    query = CompiledQuery(
        lambda owner: _conversations(owner).values_list("pk", "updated"), owner=int
    )
    [(_, updated)] = query.rows(owner=user.pk)
    assert updated == Conversation.objects.get().updated

    compiled = query._compiled[("default", connection.vendor)]
    functions = [f for fs, _ in compiled.converters.values() for f in fs]
    assert _sqlite_datetime in functions


@pytest.mark.django_db(transaction=True)
def test_compiled_once_for_all_threads_and_holding_none_of_their_connections(user):
    """Kept per connection, a compiled query held every thread's connection alive (its
    datetime parameter's adapter was bound to it): each request thread beyond the kept ones
    left its connection behind, and compiled every query anew."""
    import gc
    import threading
    import weakref
    from datetime import timedelta

    from django.db import connections
    from django.utils import timezone

    from chat.compiled import CompiledUpdate

    conversation = Conversation.objects.create(owner=user, title="a", model="m")
    since = CompiledQuery(
        lambda since: Conversation.objects.filter(updated__gt=since).values_list("pk", "updated"),
        since=datetime,
    )
    retitle = CompiledUpdate(
        lambda pk, since: (
            Conversation.objects.filter(pk=pk, updated__gt=since),
            {"title": "b", "updated": since},
        ),
        pk=uuid.UUID,
        since=datetime,
    )
    hour_ago = timezone.now() - timedelta(hours=1)
    seen: list[weakref.ref[object]] = []
    answers: list[object] = []

    def in_a_thread_of_its_own() -> None:
        seen.append(weakref.ref(connections["default"]))
        try:
            answers.append(since.rows(since=hour_ago))
            answers.append(retitle.execute(pk=conversation.pk, since=hour_ago))
        finally:
            connections.close_all()

    for _ in range(3):
        thread = threading.Thread(target=in_a_thread_of_its_own)
        thread.start()
        thread.join()
    gc.collect()
    assert answers[0] == [(conversation.pk, conversation.updated)]
    assert answers[1:] == [1, [], 0, [], 0]  # the first update moved `updated` back an hour
    assert [ref() for ref in seen] == [None, None, None]  # each thread's connection is gone
    assert len(since._compiled) == len(retitle._compiled) == 1  # compiled once, not per thread
    conversation.refresh_from_db()
    assert conversation.title == "b" and conversation.updated == hour_ago


def test_column_parameters_are_set_as_queryset_update_sets_them(user):
    """A `Column` parameter takes whatever its field does (None, durations, JSON, text),
    prepared by the field: the row ends as `QuerySet.update` with the same values leaves
    its twin."""
    from datetime import timedelta

    from django.utils import timezone

    from chat.compiled import Column, CompiledUpdate

    conversation = Conversation.objects.create(owner=user, model="m")

    def twin() -> Message:
        return Message.objects.create(
            conversation=conversation,
            role="assistant",
            status="streaming",
            lease_owner="w1",
            lease_expires=timezone.now(),
            prompt_tokens=5,
        )

    finish = CompiledUpdate(
        lambda pk, worker, **values: (
            Message.objects.filter(pk=pk, lease_owner=worker, status="streaming"),
            values,
        ),
        pk=int,
        worker=str,
        **dict.fromkeys(
            [
                "status",
                "content",
                "tool_calls",
                "duration",
                "time_to_first_token",
                "prompt_tokens",
                "lease_expires",
                "completed",
            ],
            Column,
        ),
    )
    cases = [
        {
            "status": "complete",
            "content": "it's “quoted” %s %(x)s",
            "tool_calls": [{"id": "c1", "name": "f", "arguments": '{"a": [1, null]}'}],
            "duration": timedelta(seconds=3, microseconds=250),
            "time_to_first_token": timedelta(milliseconds=120),
            "prompt_tokens": None,
            "lease_expires": None,
            "completed": timezone.now(),
        },
        {
            "status": "interrupted",
            "content": "",
            "tool_calls": [],
            "duration": timedelta(0),
            "time_to_first_token": None,
            "prompt_tokens": 7,
            "lease_expires": None,
            "completed": timezone.now(),
        },
    ]
    for values in cases:
        compiled, orm = twin(), twin()
        assert finish.execute(pk=compiled.pk, worker="w2", **values) == 0  # not its owner
        assert finish.execute(pk=compiled.pk, worker="w1", **values) == 1
        assert Message.objects.filter(pk=orm.pk).update(**values) == 1
        compiled.refresh_from_db()
        orm.refresh_from_db()
        for field in Message._meta.concrete_fields:
            if field.name not in ("id", "created"):
                assert getattr(compiled, field.attname) == getattr(orm, field.attname), field.name
        assert compiled.tool_calls == values["tool_calls"]
        assert compiled.time_to_first_token == values["time_to_first_token"]
        assert compiled.prompt_tokens == values["prompt_tokens"]


def test_a_compiled_insert_saves_what_create_saves(user):
    from django.utils import timezone

    from chat.compiled import CompiledInsert

    conversation = Conversation.objects.create(owner=user, model="m")
    insert = CompiledInsert(Message)
    key = uuid.uuid4()
    values = {
        "conversation": conversation,
        "role": "user",
        "content": "it's “quoted” %s %(x)s",
        "status": "complete",
        "idempotency_key": key,
        "completed": timezone.now(),
    }
    with CaptureQueriesContext(connection) as queries:
        made = insert.create(**values)
    assert len(queries) == 1
    twin = Message.objects.create(**{**values, "idempotency_key": uuid.uuid4()})
    assert isinstance(made.pk, int) and made.pk != twin.pk
    assert not made._state.adding and made._state.db == "default"
    stored = Message.objects.get(pk=made.pk)
    assert made.created == stored.created and made.created is not None  # auto_now_add
    for field in Message._meta.concrete_fields:
        if field.name not in ("id", "created", "idempotency_key"):
            assert getattr(stored, field.attname) == getattr(twin, field.attname), field.name
    assert stored.idempotency_key == key and stored.tool_calls == []
    # The new row is a parent like any other, and the unique key holds as the ORM's would.
    reply = insert.create(conversation=conversation, parent=made, role="assistant")
    assert Message.objects.get(pk=reply.pk).parent_id == made.pk
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        insert.create(**values)
    with pytest.raises(ValueError, match="unsaved related object"):
        insert.create(conversation=conversation, parent=Message(role="user"), role="assistant")


def test_a_compiled_insert_goes_through_the_orm_while_signals_are_listened_to(user):
    from django.db.models.signals import post_save

    from chat.compiled import CompiledInsert

    conversation = Conversation.objects.create(owner=user, model="m")
    insert = CompiledInsert(Message)
    heard = []

    def listener(sender: object, instance: Message, created: bool, **kwargs: object) -> None:
        heard.append((instance.pk, created))

    post_save.connect(listener, sender=Message)
    try:
        made = insert.create(conversation=conversation, role="user", content="hi")
    finally:
        post_save.disconnect(listener, sender=Message)
    assert heard == [(made.pk, True)]
    own_key = insert.create(pk=made.pk + 1000, conversation=conversation, role="user")
    assert own_key.pk == made.pk + 1000 and Message.objects.filter(pk=made.pk + 1000).exists()
    from django.db.models.functions import Now

    made_now = insert.create(conversation=conversation, role="user", completed=Now())
    assert Message.objects.get(pk=made_now.pk).completed is not None


def test_a_compiled_insert_without_returning_the_new_key_goes_through_the_orm(user, monkeypatch):
    """SQLite before 3.35 cannot return the new row's key (Django 5.2 supports 3.31)."""
    from chat.compiled import CompiledInsert

    if connection.vendor != "sqlite":
        pytest.skip("an older SQLite's")

    conversation = Conversation.objects.create(owner=user, model="m")
    monkeypatch.setattr(connection.features, "can_return_columns_from_insert", False)
    made = CompiledInsert(Message).create(conversation=conversation, role="user", content="hi")
    assert Message.objects.get(pk=made.pk).content == "hi"


def test_computed_columns_keep_their_own_converters(user):
    """A computed column's converter is a plain function: on PostgreSQL it was taken for
    SQLite's datetime converter and replaced by it."""
    from django.db.models import Count

    conversation = Conversation.objects.create(owner=user, model="m")
    Message.objects.create(conversation=conversation, role="user", content="hi")

    def build(owner: int) -> object:
        return (
            Conversation.objects.filter(owner_id=owner)
            .annotate(n=Count("messages"))
            .values_list("pk", "n")
        )

    assert CompiledQuery(build, owner=int).rows(owner=user.pk) == [(conversation.pk, 1)]


def test_a_column_parameter_takes_plain_values_for_one_column(user):
    from django.db.models import F
    from django.db.models.functions import Now

    from chat.compiled import Column, CompiledUpdate

    conversation = Conversation.objects.create(owner=user, model="m")
    other = Conversation.objects.create(owner=user, model="m")
    message = Message.objects.create(conversation=conversation, role="user")
    move = CompiledUpdate(
        lambda pk, to: (Message.objects.filter(pk=pk), {"conversation": to}),
        pk=int,
        to=Column,
    )
    assert move.execute(pk=message.pk, to=other) == 1  # a related instance, as update takes it
    message.refresh_from_db()
    assert message.conversation_id == other.pk
    retitle = CompiledUpdate(
        lambda pk, title: (Conversation.objects.filter(pk=pk), {"title": title}),
        pk=uuid.UUID,
        title=Column,
    )
    for expression in (Now(), F("title")):
        with pytest.raises(TypeError, match="not an expression"):
            retitle.execute(pk=conversation.pk, title=expression)
    with pytest.raises(TypeError, match="model instance"):
        retitle.execute(pk=conversation.pk, title=other)
    twice = CompiledUpdate(
        lambda pk, v: (Message.objects.filter(pk=pk), {"content": v, "tool_calls": v}),
        pk=int,
        v=Column,
    )
    with pytest.raises(ImproperlyConfigured, match="one column"):
        twice.execute(pk=message.pk, v=["a"])
