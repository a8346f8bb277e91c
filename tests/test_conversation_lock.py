"""A turn's lock (chat.services.conversation_lock) holds the conversation's row and its
owner's: a second turn in the same conversation, or in another of the owner's (their limits
count replies across all of them), waits for the first. SQLite has no row locks (its
transactions take the database's write lock as they begin), so this runs on PostgreSQL."""

from __future__ import annotations

import threading

import psycopg
import pytest
from django.db import OperationalError, connection, connections, transaction

from chat import services
from chat.models import Conversation

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _postgresql() -> None:
    if not connection.features.has_select_for_update:
        pytest.skip("SQLite has no row locks; the PostgreSQL run covers this")


def _locked_elsewhere(model: type, pk: object) -> bool:
    """Whether another connection finds the row locked (NOWAIT raises at once)."""
    outcome: list[bool] = []

    def probe() -> None:
        try:
            with transaction.atomic():
                list(model.objects.select_for_update(nowait=True).filter(pk=pk).values("pk"))
            outcome.append(False)
        except OperationalError as error:
            # Only "could not obtain lock": a connection that failed proves nothing.
            outcome.append(isinstance(error.__cause__, psycopg.errors.LockNotAvailable))
        finally:
            connections.close_all()

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join(10)
    return outcome == [True]


def test_a_turn_holds_its_conversations_row_and_its_owners(user, django_user_model) -> None:
    conversation = services.conversation_create(owner=user)
    other = services.conversation_create(owner=user)
    with services.conversation_lock(conversation):
        assert _locked_elsewhere(Conversation, conversation.pk)
        assert _locked_elsewhere(django_user_model, user.pk)
        assert not _locked_elsewhere(Conversation, other.pk)
    assert not _locked_elsewhere(Conversation, conversation.pk)
    assert not _locked_elsewhere(django_user_model, user.pk)
