"""The user's other tabs are told when their list of conversations changes (a conversation
new, renamed, pinned, archived or deleted), so they draw their sidebars again; the tab that
asked is not (its answer drew its own), nor another user's."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import websockets
from django.conf import settings

from chat.fragments import CONVERSATIONS_CHANGED
from chat.socket_protocol import CLOSE_CONVERSATION_DELETED
from chat.titles import TITLE_PROMPT
from tests.fake_upstream import FakeRequest, reply_events
from tests.live import ChatClient, session_cookie_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


def tab_socket(client: ChatClient, conversation_id: uuid.UUID, tab: str) -> Any:
    """A tab's socket on a conversation, named `tab` as the page names it (`?tab=`)."""
    return websockets.connect(
        f"ws://127.0.0.1:{client.server.port}/ws/c/{conversation_id}/?tab={tab}",
        additional_headers={
            "Cookie": f"{settings.SESSION_COOKIE_NAME}={client.session}",
            "Origin": client.server.url,
        },
    )


async def acted(client: ChatClient, path: str, data: dict[str, str], tab: str = "") -> None:
    """A POST as the tab `tab`'s htmx makes it."""
    headers = {"X-CSRFToken": await client.csrf(), "HX-Request": "true"}
    if tab:
        headers["X-Chat-Tab"] = tab
    response = await client.http.post(path, data=data, headers=headers)
    assert response.status_code in (200, 204), response.text


async def next_frame(ws: Any) -> str:
    async with asyncio.timeout(10):
        return str(await ws.recv())


@pytest.fixture
def mallory_session(other_user: object) -> str:
    return session_cookie_for(other_user)


async def test_the_users_other_tabs_are_told_and_not_the_one_that_asked(
    start_server, fake_upstream, alice_session, mallory_session
):
    server = start_server()
    alice = ChatClient(server, alice_session)
    mallory = ChatClient(server, mallory_session)
    acting_on, other_on = await alice.create_conversation(), await alice.create_conversation()
    mallorys = await mallory.create_conversation()
    async with (
        tab_socket(alice, acting_on, "acting") as acting,
        tab_socket(alice, other_on, "other") as other,
        tab_socket(mallory, mallorys, "hers") as hers,
    ):
        organize = f"/c/{acting_on}/organize/"
        await acted(alice, organize, {"pinned": "true"}, tab="acting")
        assert await next_frame(other) == CONVERSATIONS_CHANGED
        # Pinned again (a second click, another tab's stale menu): nothing changed, nothing
        # told (every tab of hers would ask for its list for nothing). The next frame the
        # other tab gets is its own conversation's new title, sent after it.
        await acted(alice, organize, {"pinned": "true"}, tab="acting")
        await acted(alice, f"/c/{other_on}/rename/", {"title": "Reading list"}, tab="acting")
        assert "Reading list" in await next_frame(other)
        assert await next_frame(acting) == CONVERSATIONS_CHANGED  # (the rename's, below)
        await acted(alice, organize, {"archived": "true"}, tab="acting")
        assert await next_frame(other) == CONVERSATIONS_CHANGED
        # A rename: the conversation's own tabs get its title, the others the list's change.
        await acted(alice, f"/c/{acting_on}/rename/", {"title": "Holiday plans"}, tab="acting")
        assert await next_frame(other) == CONVERSATIONS_CHANGED
        assert "Holiday plans" in await next_frame(acting)
        # A new conversation: every tab of hers is told, the one that made it too (it has
        # none on the page it leaves).
        await alice.create_conversation()
        assert await next_frame(other) == CONVERSATIONS_CHANGED
        # (the first frame since the rename's title: the pin and the archive were not sent)
        assert await next_frame(acting) == CONVERSATIONS_CHANGED
        # A deletion: its own tabs close, saying so; the others are told.
        await acted(alice, f"/c/{acting_on}/delete/", {}, tab="acting")
        assert await next_frame(other) == CONVERSATIONS_CHANGED
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await next_frame(acting)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == CLOSE_CONVERSATION_DELETED
        # Nothing of Alice's reached Mallory's tab (it would have come before this); her
        # own change does.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await hers.recv()
        await mallory.create_conversation()
        assert await next_frame(hers) == CONVERSATIONS_CHANGED
    await alice.aclose()
    await mallory.aclose()


async def test_a_turn_and_its_title_tell_no_other_tab(start_server, fake_upstream, alice_session):
    """A message sent and a title the model wrote come once a turn: they are drawn in the
    conversation's own tabs only, not told to every tab of the user (each would ask for its
    list again)."""
    server = start_server(CHAT_GENERATE_TITLES="true")

    async def plan(request: FakeRequest) -> Any:
        if request.body["messages"][0] == {"role": "system", "content": TITLE_PROMPT}:
            return await request.stream(reply_events(['"Weekend in ', 'Lisbon"']))
        return await request.stream(reply_events(["Pack ", "light."]))

    fake_upstream.plan = plan
    alice = ChatClient(server, alice_session)
    titled_on, other_on = await alice.create_conversation(), await alice.create_conversation()
    async with (
        tab_socket(alice, titled_on, "titled") as titled,
        tab_socket(alice, other_on, "other") as other,
    ):
        await alice.send(titled_on, "what should I pack for two days in lisbon")
        frame = await next_frame(titled)
        while 'id="conversation-title"' not in frame:
            assert frame != CONVERSATIONS_CHANGED
            frame = await next_frame(titled)
        assert "Weekend in Lisbon" in frame
        # The other tab heard nothing of it: the first it hears is a conversation made now.
        await alice.create_conversation()
        assert await next_frame(other) == CONVERSATIONS_CHANGED
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await other.recv()
    await alice.aclose()
