"""A socket lives no longer than its session: logout and deactivation close it at once, a new
password has it check its session at once, every message it accepts checks the session
again, and so does the socket by itself every CHAT_SOCKET_SESSION_CHECK_SECONDS."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client

from chat import events, outages, services, socket_auth
from chat.models import Message
from chat.socket_protocol import CLOSE_SESSION_ENDED
from tests.sockets import closed_with, socket_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def conversation(user):
    return services.conversation_create(owner=user)


@pytest.fixture
def finished_reply(conversation, sent_to_worker) -> Message:
    _, reply = services.message_submit(conversation=conversation, content="hi")
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.COMPLETE, content="done")
    return reply


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def session_of(client: Client) -> str:
    return client.cookies[settings.SESSION_COOKIE_NAME].value


async def test_logging_out_closes_the_sockets_of_that_session(conversation, user):
    client, other_device = (
        await sync_to_async(logged_in)(user),
        await sync_to_async(logged_in)(user),
    )
    comm = socket_for(conversation.pk, session_of(client))
    elsewhere = socket_for(conversation.pk, session_of(other_device))
    assert (await comm.connect())[0] and (await elsewhere.connect())[0]
    await sync_to_async(client.logout)()
    assert await closed_with(comm) == CLOSE_SESSION_ENDED
    # The user's other session is still logged in: its socket stays.
    assert await elsewhere.receive_nothing()
    await comm.disconnect()
    await elsewhere.disconnect()


async def test_a_logout_tells_the_sockets_once_their_session_is_gone(
    conversation, user, monkeypatch
):
    """A tab told its session ended opens its socket again at once (a new password may have
    given its cookie a new session). Django's logout sends its signal before it deletes the
    session: told then, a tab could open its socket again in between, let in with the session
    about to go, and stay open (a browser test caught it in CI)."""
    client = await sync_to_async(logged_in)(user)
    session_key = session_of(client)
    comm = socket_for(conversation.pk, session_key)
    assert (await comm.connect())[0]
    told = events.session_closed_sync
    session_left: list[bool] = []

    def telling(user_id: int, key: str) -> None:
        session_left.append(Session.objects.filter(session_key=key).exists())
        told(user_id, key)

    monkeypatch.setattr(events, "session_closed_sync", telling)
    response = await sync_to_async(client.post)("/accounts/logout/")
    assert response.status_code == 302
    assert await closed_with(comm) == CLOSE_SESSION_ENDED
    assert session_left == [False]
    again = socket_for(conversation.pk, session_key)  # the tab, with the cookie it had
    assert (await again.connect())[0]
    assert await closed_with(again) == CLOSE_SESSION_ENDED
    await comm.disconnect()
    await again.disconnect()


async def test_logging_out_through_the_logout_page_closes_the_socket(conversation, user):
    client = await sync_to_async(logged_in)(user)
    comm = socket_for(conversation.pk, session_of(client))
    assert (await comm.connect())[0]
    response = await sync_to_async(client.post)("/accounts/logout/")
    assert response.status_code == 302
    assert await closed_with(comm) == CLOSE_SESSION_ENDED
    await comm.disconnect()


async def test_deactivating_the_user_closes_all_their_sockets(conversation, user):
    sessions = [session_of(await sync_to_async(logged_in)(user)) for _ in range(2)]
    comms = [socket_for(conversation.pk, key) for key in sessions]
    for comm in comms:
        assert (await comm.connect())[0]
    user.is_active = False
    await user.asave()
    for comm in comms:
        assert await closed_with(comm) == CLOSE_SESSION_ENDED
        await comm.disconnect()


async def test_saving_an_active_user_closes_nothing(conversation, user, alice_session):
    comm = socket_for(conversation.pk, alice_session)
    assert (await comm.connect())[0]
    user.first_name = "Alice"
    await user.asave()
    assert await comm.receive_nothing()
    await comm.disconnect()


async def test_a_message_on_a_socket_whose_session_was_deleted_closes_it(
    conversation, alice_session, finished_reply
):
    comm = socket_for(conversation.pk, alice_session)
    assert (await comm.connect())[0]
    await Session.objects.filter(session_key=alice_session).adelete()  # expired, flushed
    await comm.send_to(text_data=json.dumps({"resync": finished_reply.pk}))
    assert await closed_with(comm) == CLOSE_SESSION_ENDED
    await comm.disconnect()


async def test_a_message_after_a_password_change_elsewhere_closes_the_socket(
    conversation, user, alice_session, finished_reply
):
    comm = socket_for(conversation.pk, alice_session)
    assert (await comm.connect())[0]
    await sync_to_async(user.set_password)("a-new-password-123")
    await user.asave()
    await comm.send_to(text_data=json.dumps({"resync": finished_reply.pk}))
    assert await closed_with(comm) == CLOSE_SESSION_ENDED
    await comm.disconnect()


async def test_a_password_change_elsewhere_closes_the_socket_at_once(
    conversation, user, alice_session
):
    """Without waiting for the socket's next message: a tab left open on another device was
    sent the conversation's frames until it sent something."""
    comm = socket_for(conversation.pk, alice_session)
    assert (await comm.connect())[0]
    await sync_to_async(user.set_password)("a-new-password-123")
    await user.asave()
    assert await closed_with(comm) == CLOSE_SESSION_ENDED
    await comm.disconnect()


async def test_a_session_deleted_from_the_store_closes_its_idle_socket_at_the_next_check(
    conversation, alice_session, settings
):
    """An expired or deleted session sends no signal; a socket that never sends anything
    checked it never."""
    settings.CHAT_SOCKET_SESSION_CHECK_SECONDS = 0.4
    comm = socket_for(conversation.pk, alice_session)
    assert (await comm.connect())[0]
    assert await comm.receive_nothing(timeout=0.5)  # checked at least once: still current
    await Session.objects.filter(session_key=alice_session).adelete()  # expired, flushed
    assert await closed_with(comm, timeout=2.0) == CLOSE_SESSION_ENDED
    await comm.disconnect()


async def test_a_socket_ended_by_a_service_away_checks_its_session_no_more(
    conversation, alice_session, settings, monkeypatch
):
    """The consumer ended with the database away (the page reconnects to a new one): its
    next check, scheduled before, kept it alive and checked again and again, for nobody."""
    settings.CHAT_SOCKET_SESSION_CHECK_SECONDS = 0.2
    checks: list[str | None] = []
    session_is_current = socket_auth.session_is_current

    async def counted(**kwargs):
        checks.append(kwargs["session_key"])
        return await session_is_current(**kwargs)

    async def database_away() -> None:
        raise outages.DatabaseAway("away")

    monkeypatch.setattr(socket_auth, "session_is_current", counted)
    comm = socket_for(conversation.pk, alice_session)
    assert (await comm.connect())[0]
    await asyncio.sleep(0.5)
    assert checks  # it checks by itself while it lives
    with monkeypatch.context() as away:
        away.setattr(outages, "database_needed", database_away)
        await comm.send_to(text_data=json.dumps({"resync": 1}))
        with pytest.raises(outages.DatabaseAway):
            await comm.wait(1)
    ended_at = len(checks)
    await asyncio.sleep(0.6)
    assert len(checks) == ended_at


async def test_a_message_on_a_current_session_is_answered(
    conversation, alice_session, finished_reply
):
    comm = socket_for(conversation.pk, alice_session)
    assert (await comm.connect())[0]
    await comm.send_to(text_data=json.dumps({"resync": finished_reply.pk}))
    assert f'<article id="m{finished_reply.pk}"' in await comm.receive_from()
    await comm.disconnect()


@pytest.mark.parametrize("sent", [{"resync": 1}, "not json"])
async def test_what_a_socket_closed_as_it_opened_sends_meanwhile_is_dropped(conversation, sent):
    """A socket opened with a session that has ended is accepted and closed with 4401 (the
    page then tries once more, and says it was signed out). What the page sent as it opened,
    before it saw the close (a resync for each reply it shows streaming), raised in the
    consumer, set up for nothing: a traceback in the server's log for each such socket."""
    comm = socket_for(conversation.pk, "no-such-session")
    assert (await comm.connect())[0]
    if isinstance(sent, dict):
        await comm.send_json_to(sent)
    else:
        await comm.send_to(text_data=sent)
    assert await closed_with(comm) == CLOSE_SESSION_ENDED
    await asyncio.sleep(0.2)  # what it sent is handled
    assert not comm.future.done() or comm.future.exception() is None, comm.future.exception()
    await comm.disconnect()
