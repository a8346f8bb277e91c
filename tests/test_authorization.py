"""Who may do what, for every URL pattern of the site and every message a socket accepts.

The URL patterns are walked from the URLconf: a new one without an entry in EXPECTED fails.
Each route is requested with GET and with an empty POST by the owner of a conversation, another
user, a staff member who may only view conversations and messages in the admin, and an
anonymous visitor; object-level routes name the owner's conversation and messages. Everyone
but the owner must leave every conversation and message row as it was.
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from chat.models import Conversation, Message
from chat.socket_protocol import CLOSE_CONVERSATION_DELETED, CLOSE_SESSION_ENDED, REQUESTS
from tests.authz import ROLES, make_world, snapshot, url_routes
from tests.live import session_cookie_for
from tests.sockets import closed_with, socket_for

# route: the status for "GET/POST" of the owner, another user, view-only staff, anonymous.
# 404 for another user on an object-level route; 405 for a method the route does not take
# (the same for any id, so it tells nothing); anonymous visitors are sent to a login page.
EXPECTED = {
    "": "200/405 200/405 200/405 302/302",
    "c/": "405/302 405/302 405/302 302/302",
    "new/": "405/422 405/422 405/422 302/302",
    "conversations/": "200/405 200/405 200/405 302/302",
    "c/<uuid:conversation_id>/organize/": "405/302 405/404 405/404 302/302",
    "c/<uuid:conversation_id>/": "200/405 404/405 404/405 302/302",
    "c/<uuid:conversation_id>/delete/": "405/302 405/404 405/404 302/302",
    "c/<uuid:conversation_id>/messages/": "405/422 405/404 405/404 302/302",
    "c/<uuid:conversation_id>/messages/<int:message_id>/": "200/405 404/405 404/405 302/302",
    "c/<uuid:conversation_id>/messages/<int:message_id>/continue/": "405/409 405/404 405/404 302/302",
    "c/<uuid:conversation_id>/messages/<int:message_id>/edit/": "405/422 405/404 405/404 302/302",
    "c/<uuid:conversation_id>/messages/<int:message_id>/feedback/": "405/302 405/404 405/404 302/302",
    # The world's reply has no question before it: it cannot be generated again (409).
    "c/<uuid:conversation_id>/messages/<int:message_id>/retry/": "405/409 405/404 405/404 302/302",
    "c/<uuid:conversation_id>/messages/<int:message_id>/select/": "405/302 405/404 405/404 302/302",
    "c/<uuid:conversation_id>/messages/<int:message_id>/stop/": "405/204 405/404 405/404 302/302",
    "c/<uuid:conversation_id>/messages/<int:message_id>/text/": "200/405 404/405 404/405 302/302",
    "c/<uuid:conversation_id>/rename/": "405/422 405/404 405/404 302/302",
    "c/<uuid:conversation_id>/settings/": "405/302 405/404 405/404 302/302",
    "favicon.ico": "301/301 301/301 301/301 301/301",
    # Django's own pages: an empty POST is an invalid form (200), never a change.
    "accounts/login/": "200/200 200/200 200/200 200/200",
    "accounts/logout/": "405/302 405/302 405/302 405/302",
    "accounts/password_change/": "200/200 200/200 200/200 302/302",
    "accounts/password_change/done/": "200/405 200/405 200/405 302/302",
    # The admin: users who are not staff are sent to its login page; the reviewer sees
    # conversations and messages read-only (a POST to their change pages is refused) and
    # nothing of users and groups.
    "admin/": "302/302 302/302 200/200 302/302",
    "admin/(?P<url>.*)$": "302/302 302/302 404/404 302/302",
    "admin/^(?P<app_label>chat|auth)/$": "302/302 302/302 404/404 302/302",
    "admin/login/": "200/200 200/200 302/200 200/200",
    "admin/logout/": "302/302 302/302 405/302 302/302",
    "admin/password_change/": "302/302 302/302 200/200 302/302",
    "admin/password_change/done/": "302/302 302/302 200/405 302/302",
    "admin/autocomplete/": "302/302 302/302 403/405 302/302",
    "admin/jsi18n/": "302/302 302/302 200/405 302/302",
    "admin/r/<path:content_type_id>/<path:object_id>/": "302/302 302/302 302/302 302/302",
    "admin/chat/conversation/": "302/302 302/302 200/200 302/302",
    "admin/chat/conversation/add/": "302/302 302/302 403/403 302/302",
    "admin/chat/conversation/<path:object_id>/": "302/302 302/302 302/302 302/302",
    "admin/chat/conversation/<path:object_id>/change/": "302/302 302/302 200/403 302/302",
    "admin/chat/conversation/<path:object_id>/delete/": "302/302 302/302 403/403 302/302",
    "admin/chat/conversation/<path:object_id>/history/": "302/302 302/302 200/200 302/302",
    "admin/chat/conversation/<uuid:conversation_id>/transcript/": "302/302 302/302 200/200 302/302",
    "admin/chat/message/": "302/302 302/302 200/200 302/302",
    "admin/chat/message/add/": "302/302 302/302 403/403 302/302",
    "admin/chat/message/<path:object_id>/": "302/302 302/302 302/302 302/302",
    "admin/chat/message/<path:object_id>/change/": "302/302 302/302 200/403 302/302",
    "admin/chat/message/<path:object_id>/delete/": "302/302 302/302 403/403 302/302",
    "admin/chat/message/<path:object_id>/history/": "302/302 302/302 200/200 302/302",
    "admin/chat/usagelimit/": "302/302 302/302 403/403 302/302",
    "admin/chat/usagelimit/add/": "302/302 302/302 403/403 302/302",
    "admin/chat/usagelimit/<path:object_id>/": "302/302 302/302 302/302 302/302",
    "admin/chat/usagelimit/<path:object_id>/change/": "302/302 302/302 403/403 302/302",
    "admin/chat/usagelimit/<path:object_id>/delete/": "302/302 302/302 403/403 302/302",
    "admin/chat/usagelimit/<path:object_id>/history/": "302/302 302/302 302/302 302/302",
    "admin/auth/group/": "302/302 302/302 403/403 302/302",
    "admin/auth/group/add/": "302/302 302/302 403/403 302/302",
    "admin/auth/group/<path:object_id>/": "302/302 302/302 302/302 302/302",
    "admin/auth/group/<path:object_id>/change/": "302/302 302/302 403/403 302/302",
    "admin/auth/group/<path:object_id>/delete/": "302/302 302/302 403/403 302/302",
    "admin/auth/group/<path:object_id>/history/": "302/302 302/302 403/403 302/302",
    "admin/auth/user/": "302/302 302/302 403/403 302/302",
    "admin/auth/user/add/": "302/302 302/302 403/403 302/302",
    "admin/auth/user/<id>/password/": "302/302 302/302 403/403 302/302",
    "admin/auth/user/<path:object_id>/": "302/302 302/302 302/302 302/302",
    "admin/auth/user/<path:object_id>/change/": "302/302 302/302 403/403 302/302",
    "admin/auth/user/<path:object_id>/delete/": "302/302 302/302 403/403 302/302",
    "admin/auth/user/<path:object_id>/history/": "302/302 302/302 403/403 302/302",
}

# Cells that rightly write rows, besides the owner's: creating a conversation of one's own.
WRITES_OWN_ROWS = {("c/", "other", "post"), ("c/", "staff", "post")}

# Where an anonymous visitor is sent.
LOGIN_PAGES = ("/accounts/login/", "/admin/login/")


def expected(route: str, role: str, method: str) -> int:
    assert route in EXPECTED, f"{route!r} has no entry in EXPECTED: who may use it?"
    cell = EXPECTED[route].split()[ROLES.index(role)]
    return int(cell.split("/")[("get", "post").index(method)])


def test_every_url_pattern_has_an_entry_and_every_entry_a_pattern():
    assert set(url_routes()) == set(EXPECTED)


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", url_routes())
def test_who_may_use_each_url(route, role, method, django_user_model, sent_to_worker):
    world = make_world(django_user_model)
    client = world.client(role)
    before = snapshot()
    response = getattr(client, method)(world.path(route))
    assert response.status_code == expected(route, role, method), response.content[:300]
    if role == "anonymous" and response.status_code == 302:
        # (The admin's logout sends everyone to its index, which asks for a login.)
        location = response["Location"]
        assert location.startswith(LOGIN_PAGES) or location == "/admin/", location
    if role != "owner" and (route, role, method) not in WRITES_OWN_ROWS:
        assert snapshot() == before, "a request that is not the owner's changed rows"


# --- The socket ---------------------------------------------------------------------------------

# Each message type a socket accepts, and what it gets for a message id that names: the
# owner's reply in this conversation, the owner's reply in another of their conversations,
# another user's reply, and no message at all. "article": the message is sent.
SOCKET_EXPECTED = {
    "resync": {
        "this conversation": "article",
        "another of mine": "nothing",
        "another user's": "nothing",
        "none": "nothing",
    },
}
# Who may open a socket on the owner's conversation: the owner. Another user and staff are
# accepted only to be told at once, with nothing else, that it is gone, as a deleted one's
# tabs are; a socket without a session, that its session ended (the page then offers to log
# in again).
SOCKET_CONNECT = {"owner": True, "other": "gone", "staff": "gone", "anonymous": "session ended"}


def test_every_socket_message_type_has_an_entry():
    assert set(SOCKET_EXPECTED) == set(REQUESTS)


@pytest.fixture
def socket_world(django_user_model):
    world = make_world(django_user_model)
    mine = Conversation.objects.create(owner=world.owner, model="m")
    theirs = Conversation.objects.create(owner=world.other, model="m")
    ids = {
        "this conversation": world.reply.pk,
        "another of mine": Message.objects.create(conversation=mine, role="assistant").pk,
        "another user's": Message.objects.create(conversation=theirs, role="assistant").pk,
        "none": 10**9,
    }
    sessions = {
        role: session_cookie_for(getattr(world, role)) for role in ROLES if role != "anonymous"
    }
    return world, ids, {**sessions, "anonymous": "no-session"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", ROLES)
async def test_who_may_open_a_socket(role, socket_world):
    world, _, sessions = socket_world
    comm = socket_for(world.conversation.pk, sessions[role])
    connected, _ = await comm.connect()
    if SOCKET_CONNECT[role] == "session ended":
        assert connected and await closed_with(comm) == CLOSE_SESSION_ENDED
    elif SOCKET_CONNECT[role] == "gone":
        assert connected and await closed_with(comm) == CLOSE_CONVERSATION_DELETED
    else:
        assert connected is SOCKET_CONNECT[role]
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "kind,target", [(k, t) for k, targets in SOCKET_EXPECTED.items() for t in targets]
)
async def test_what_each_socket_message_may_reach(kind, target, socket_world):
    world, ids, sessions = socket_world
    before = await sync_to_async(snapshot)()
    comm = socket_for(world.conversation.pk, sessions["owner"])
    assert (await comm.connect())[0]
    await comm.send_to(text_data=json.dumps({kind: ids[target]}))
    if SOCKET_EXPECTED[kind][target] == "article":
        assert f'<article id="m{ids[target]}"' in await comm.receive_from()
    else:
        assert await comm.receive_nothing(0.3)
    await comm.disconnect()
    assert await sync_to_async(snapshot)() == before
