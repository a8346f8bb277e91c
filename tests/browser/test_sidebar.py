"""The sidebar in a real browser: groups by day, the next page as you scroll, search as you
type, pin and archive from the conversation's menu."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from playwright.async_api import expect

from chat.models import Conversation, Message
from chat.selectors import SIDEBAR_PAGE_SIZE
from tests.browser.pages import PHONE, axe_problems, check_looks
from tests.browser.support import BROWSER_MARKS

pytestmark = BROWSER_MARKS


@sync_to_async
def seed(user, count: int) -> list[Conversation]:
    made = []
    for i in range(count):
        conversation = Conversation.objects.create(owner=user, title=f"Topic {i:03d}", model="m")
        Conversation.objects.filter(pk=conversation.pk).update(
            updated=timezone.now() - timedelta(hours=6 * i)
        )
        made.append(conversation)
    Message.objects.create(conversation=made[-1], role="user", content="about quokkas")
    return made


async def test_the_list_is_grouped_by_day_loads_more_as_you_scroll_and_searches(page, server, user):
    await seed(user, SIDEBAR_PAGE_SIZE + 20)
    await page.goto(server.url + "/")
    sidebar = page.locator("#sidebar")
    links = sidebar.locator(".conversation-list a")
    await expect(links).to_have_count(SIDEBAR_PAGE_SIZE)
    await expect(sidebar.locator(".group-heading")).to_have_text(
        ["Today", "Yesterday", "Previous 7 days", "Older"]
    )
    await sidebar.get_by_role("button", name="Show more").scroll_into_view_if_needed()
    await expect(links).to_have_count(SIDEBAR_PAGE_SIZE + 20)
    await expect(sidebar.locator(".group-heading")).to_have_count(4)

    # A search says what it found, in a status a screen reader reads (the list is not read
    # out: it is no live region).
    status = sidebar.get_by_role("status")
    await expect(sidebar.locator("#conversation-list")).not_to_have_attribute("aria-live", "polite")
    await sidebar.get_by_label("Search conversations").fill("quokka")
    await expect(links).to_have_text([f"Topic {SIDEBAR_PAGE_SIZE + 19:03d}"])
    await expect(status).to_have_text("1 conversation.")
    await sidebar.get_by_label("Search conversations").fill("topic 00")
    await expect(links).to_have_count(10)
    await expect(status).to_have_text("10 conversations.")
    await sidebar.get_by_label("Search conversations").fill("wombats")
    await expect(status).to_have_text("Nothing matches “wombats”.")
    await sidebar.get_by_label("Search conversations").fill("")
    await expect(links).to_have_count(SIDEBAR_PAGE_SIZE)
    await expect(status).to_have_text(
        f"{SIDEBAR_PAGE_SIZE} conversations shown, more as you scroll."
    )


async def test_pin_and_archive_from_the_conversation_menu(page, server, user):
    conversations = await seed(user, 3)
    await page.goto(server.url + conversations[2].get_absolute_url())
    sidebar = page.locator("#sidebar")
    await page.locator(".conversation-menu summary").click()
    await page.get_by_role("button", name="Pin to the top").click()
    await expect(page.get_by_role("button", name="Unpin")).to_be_visible()
    first = sidebar.locator(".conversation-list li").first
    await expect(first).to_have_text("Pinned")
    await expect(sidebar.locator(".conversation-list a").first).to_have_text("Topic 002")
    await expect(sidebar.locator(".conversation-list a").first).to_have_attribute(
        "aria-current", "page"
    )

    await page.get_by_role("button", name="Archive", exact=True).click()
    await expect(page.get_by_role("button", name="Unarchive")).to_be_visible()
    await expect(sidebar.locator(".conversation-list a")).to_have_text(["Topic 000", "Topic 001"])
    await sidebar.get_by_role("button", name="Archived", exact=True).click()
    await expect(sidebar.locator(".conversation-list a")).to_have_text(["Topic 002"])
    await sidebar.get_by_role("button", name="Back to all").click()
    await expect(sidebar.locator(".conversation-list a")).to_have_count(2)


async def test_a_pin_or_an_archive_keeps_the_list_as_the_tab_shows_it(page, server, user):
    """Found on the way: pinned or archived from the conversation's menu while the list showed
    a search or the archived ones, the list went back to every conversation, the search still
    in its box. It is drawn again as it was asked for."""
    conversations = await seed(user, 3)
    await page.goto(server.url + conversations[2].get_absolute_url())
    sidebar = page.locator("#sidebar")
    links = sidebar.locator(".conversation-list a")
    search = sidebar.get_by_label("Search conversations")
    await search.fill("quokka")
    await expect(links).to_have_text(["Topic 002"])

    await page.locator(".conversation-menu summary").click()
    await page.get_by_role("button", name="Pin to the top").click()
    await expect(page.get_by_role("button", name="Unpin")).to_be_attached()
    await page.get_by_role("button", name="Archive", exact=True).click()
    await expect(page.get_by_role("button", name="Unarchive")).to_be_attached()
    await expect(sidebar.locator(".conversation-list .archived-mark")).to_have_count(1)
    await expect(links).to_have_text(["Topic 002"])
    await expect(search).to_have_value("quokka")

    # The archived ones, asked for with the search still in its box: listed whatever it says.
    await sidebar.get_by_role("button", name="Archived", exact=True).click()
    await expect(links).to_have_text(["Topic 002"])
    await page.locator(".conversation-menu summary").click()
    await page.get_by_role("button", name="Unarchive").click()
    await expect(sidebar.locator(".conversation-list li.muted")).to_have_text(
        "No archived conversations."
    )
    await expect(sidebar.locator(".conversation-list .list-mode")).to_be_visible()


async def test_the_archived_button_hides_while_the_archived_are_listed_and_the_focus_moves(
    page, server, user
):
    """The footer's Archived button stayed while the list showed the archived conversations,
    under the list's own "Back to all"; by keyboard, the focus now goes from one to the
    other."""
    conversations = await seed(user, 3)
    await Conversation.objects.filter(pk=conversations[0].pk).aupdate(archived=True)
    await page.goto(server.url + conversations[2].get_absolute_url())
    sidebar = page.locator("#sidebar")
    archived = sidebar.get_by_role("button", name="Archived", exact=True)
    await archived.focus()
    await page.keyboard.press("Enter")
    await expect(sidebar.locator(".conversation-list a")).to_have_text(["Topic 000"])
    await expect(archived).to_be_hidden()
    back = sidebar.get_by_role("button", name="Back to all")
    await expect(back).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(sidebar.locator(".conversation-list a")).to_have_count(2)
    await expect(archived).to_be_visible()
    await expect(archived).to_be_focused()


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}, PHONE])
async def test_a_search_says_which_conversations_it_found_are_archived(
    page, server, user, viewport
):
    await sync_to_async(Conversation.objects.create)(
        owner=user, title="A very long title about the quokkas of Rottnest Island", model="m"
    )
    await sync_to_async(Conversation.objects.create)(
        owner=user, title="Quokka notes, put away", model="m", archived=True
    )
    await page.goto(server.url + "/")
    sidebar = page.locator("#sidebar")
    if viewport == PHONE:
        await page.get_by_role("button", name="Conversations", exact=True).click()
    await sidebar.get_by_label("Search conversations").fill("quokka")
    await expect(sidebar.locator(".conversation-list a")).to_have_count(2)
    marks = sidebar.locator(".archived-mark")
    await expect(marks).to_have_count(1)
    archived = sidebar.locator(".conversation-list li").filter(has=page.locator(".archived-mark"))
    await expect(archived.locator("a")).to_have_text("Quokka notes, put away")
    # The mark sits on the link's line, inside the list; a long title is cut, not pushed out.
    box, link, mark = (
        await sidebar.locator(".conversation-list").bounding_box(),
        await archived.locator("a").bounding_box(),
        await marks.bounding_box(),
    )
    assert box and link and mark
    assert mark["x"] >= link["x"] + link["width"] - 1
    assert mark["x"] + mark["width"] <= box["x"] + box["width"]
    assert abs((mark["y"] + mark["height"] / 2) - (link["y"] + link["height"] / 2)) < 2
    assert await axe_problems(page) == []


async def test_a_message_sent_brings_its_conversation_to_the_top_as_a_reload_would(
    page, server, user, fake_upstream
):
    """The sidebar kept a conversation where it was when a message was sent in it, until
    the page was loaded again: it goes first under Today (its old day's heading too if it
    was the day's last), as the server lists it; a pinned one stays among the pinned."""
    from tests.browser.support import ChatPage

    @sync_to_async
    def made() -> list[Conversation]:
        days = [0, 1, 1, 3, 10]
        made = [
            Conversation.objects.create(owner=user, title=f"Topic {i}", model="m")
            for i in range(len(days))
        ]
        for i, (conversation, day) in enumerate(zip(made, days, strict=True)):
            Conversation.objects.filter(pk=conversation.pk).update(
                updated=timezone.now() - timedelta(days=day, minutes=1 + i)
            )
        return made

    conversations = await made()
    sidebar = page.locator("#conversation-list")
    chat = ChatPage(page, server)
    await page.goto(server.url + conversations[3].get_absolute_url())
    await expect(sidebar.locator(".group-heading")).to_have_text(
        ["Today", "Yesterday", "Previous 7 days", "Older"]
    )
    await chat.wait_finished(await chat.send("a question"))
    await expect(sidebar.locator("li")).to_have_text(
        ["Today", "Topic 3", "Topic 0", "Yesterday", "Topic 1", "Topic 2", "Older", "Topic 4"]
    )
    # The move is not read out (the list was a live region: each message sent read it)
    assert await page.locator("#sidebar [aria-live], #sidebar-status:not(:empty)").count() == 0
    items = "(items) => items.map((item) => item.outerHTML)"
    shown = await sidebar.locator("li").evaluate_all(items)
    await page.reload()
    await expect(sidebar.locator("li")).to_have_count(8)
    assert await sidebar.locator("li").evaluate_all(items) == shown  # as the server draws it

    # A pinned one stays where it is, among the pinned
    await page.goto(server.url + conversations[2].get_absolute_url())
    await page.locator(".conversation-menu summary").click()
    await page.get_by_role("button", name="Pin to the top").click()
    await expect(sidebar.locator("li").first).to_have_text("Pinned")
    await page.keyboard.press("Escape")
    await chat.wait_finished(await chat.send("another question"))
    await expect(sidebar.locator("li")).to_have_text(
        [
            "Pinned",
            "Topic 2",
            "Today",
            "Topic 3",
            "Topic 0",
            "Yesterday",
            "Topic 1",
            "Older",
            "Topic 4",
        ]
    )


async def test_a_message_sent_in_a_conversation_the_list_does_not_show_brings_it_first(
    page, server, user, fake_upstream
):
    """Found by a walk-through: a conversation older than the list's first page (opened from
    a search or a link) was in no place of the list, and a message sent in it left the list
    as it was, without it, until the page was loaded again."""
    from tests.browser.support import ChatPage

    made = await seed(user, SIDEBAR_PAGE_SIZE + 5)
    oldest = made[-1]
    links = page.locator("#conversation-list a")
    chat = ChatPage(page, server)
    await page.goto(server.url + oldest.get_absolute_url())
    await expect(links).to_have_count(SIDEBAR_PAGE_SIZE)
    await expect(page.locator(f"#conv-link-{oldest.pk}")).to_have_count(0)
    await chat.wait_finished(await chat.send("a question"))
    await expect(links.first).to_have_text(oldest.title)
    await expect(links.first).to_have_attribute("aria-current", "page")
    await expect(page.locator("#conversation-list li").first).to_have_text("Today")


# A tab not seen, as a browser says of one behind another, or minimised: while `__hidden`
SEEN_OR_NOT = (
    "Object.defineProperty(document, 'visibilityState', "
    "{get: () => (window.__hidden ? 'hidden' : 'visible')});"
)
SHOWN_AGAIN = (
    "() => { window.__hidden = false; document.dispatchEvent(new Event('visibilitychange')); }"
)


async def test_the_users_other_tabs_lists_follow_what_one_tab_changes(
    page, context, server, user, watch, fake_upstream, tmp_path
):
    """Found by a walk-through: pinning or archiving in one tab did not move the conversation
    in the user's other tabs' lists, nor did a rename, a deletion or a new conversation there,
    until a reload. Another tab draws its list again as it shows it (all, or the archived);
    a tab not seen, once it is seen again; the tab that asked, once, not told again."""
    from tests.browser.support import ChatPage, another_tab, eventually

    conversations = await seed(user, 3)
    acting = conversations[2]
    await page.goto(server.url + acting.get_absolute_url())
    await ChatPage(page, server).wait_for_socket()
    other = await another_tab(context)
    await other.add_init_script(
        SEEN_OR_NOT
        # (the frames that told it: counted)
        + "document.addEventListener('htmx:wsBeforeMessage', (event) => {"
        "  if (String(event.detail.message).includes('conversations-changed')) {"
        "    window.__listTold = (window.__listTold || 0) + 1; } });"
    )
    await other.goto(server.url + conversations[0].get_absolute_url())
    await ChatPage(other, server).wait_for_socket()
    links = other.locator("#conversation-list a")
    await expect(links).to_have_text(["Topic 000", "Topic 001", "Topic 002"])
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/conversations/" in r.url else None)

    async def in_the_menu(name: str) -> None:
        if not await page.locator(".conversation-menu").evaluate("(menu) => menu.open"):
            await page.locator(".conversation-menu summary").click()
        await page.get_by_role("button", name=name, exact=True).click()

    await in_the_menu("Pin to the top")
    await expect(links).to_have_text(["Topic 002", "Topic 000", "Topic 001"])
    await expect(other.locator("#conversation-list li").first).to_have_text("Pinned")
    if not await page.locator(".conversation-menu").evaluate("(menu) => menu.open"):
        await page.locator(".conversation-menu summary").click()
    await page.get_by_label("Title").fill("Quokka facts")
    await in_the_menu("Rename")
    await expect(links.first).to_have_text("Quokka facts")

    # The archived list, in the other tab, follows as the archived list.
    await other.locator("#sidebar").get_by_role("button", name="Archived", exact=True).click()
    await expect(other.locator("#conversation-list li.muted")).to_have_text(
        "No archived conversations."
    )
    back = other.get_by_role("button", name="Back to all")
    await expect(back).to_be_focused()
    await in_the_menu("Archive")
    await expect(links).to_have_text(["Quokka facts"])
    await expect(other.locator("#conversation-list .list-mode")).to_be_visible()
    await expect(back).to_be_focused()  # (drawn again, it keeps the focus)
    await back.click()
    await expect(links).to_have_text(["Topic 000", "Topic 001"])
    status = other.locator("#sidebar-status")
    await expect(status).to_have_text("2 conversations.")  # (what the user asked for)

    # Not seen, the tab waits, and draws its list when it is seen again.
    await other.evaluate("() => { window.__hidden = true; }")
    other_asked: list[str] = []
    other.on("request", lambda r: other_asked.append(r.url) if "/conversations/" in r.url else None)
    told = await other.evaluate("() => window.__listTold")
    await in_the_menu("Unarchive")
    await expect(page.get_by_role("button", name="Archive", exact=True)).to_be_attached()

    async def told_again() -> bool:
        return await other.evaluate("() => window.__listTold") > told

    await eventually(told_again, message="the other tab was not told")
    await expect(links).to_have_text(["Topic 000", "Topic 001"])
    assert other_asked == []
    await other.evaluate(SHOWN_AGAIN)
    await expect(links).to_have_text(["Quokka facts", "Topic 000", "Topic 001"])
    assert len(other_asked) == 1

    # A deletion, and a new conversation.
    watch.accept_dialogs = True
    await in_the_menu("Delete conversation")
    await page.wait_for_url(server.url + "/")
    await expect(links).to_have_text(["Topic 000", "Topic 001"])
    # The acting tab asked for its own list after each pin or archive, and for nothing the
    # socket said (a rename and a deletion draw theirs from their answers).
    assert len(asked) == 3, asked
    await page.locator("#composer-text").fill("Tell me about wombats")
    await page.locator("#composer-text").press("Enter")
    await page.wait_for_url(re.compile(r"/c/[0-9a-f-]{36}/$"))
    await expect(links).to_have_text(["Tell me about wombats", "Topic 000", "Topic 001"])
    # Quietly: the list is no live region, and its status said nothing of the redraws.
    await expect(status).to_have_text("2 conversations.")
    # Looked at: the list as drawn again, beside the chat and in a phone's drawer, dark.
    await check_looks(other, tmp_path / "other-tab-list-1280-light.png")
    await other.set_viewport_size(PHONE)
    await other.emulate_media(color_scheme="dark")
    await other.get_by_role("button", name="Conversations", exact=True).click()
    await expect(other.locator("#sidebar")).to_be_in_viewport()
    await check_looks(other, tmp_path / "other-tab-list-390-dark.png")
    await other.close()


async def test_the_start_page_asks_for_its_list_again_when_it_is_seen_again(
    page, context, server, user
):
    """The start page has no socket: nothing tells it of a change made in another tab, and
    its list stayed as drawn. It asks for it again each time it is seen again."""
    from tests.browser.support import another_tab

    conversations = await seed(user, 2)
    start = await another_tab(context)
    await start.add_init_script(SEEN_OR_NOT)
    await start.goto(server.url + "/")
    links = start.locator("#conversation-list a")
    await expect(links).to_have_text(["Topic 000", "Topic 001"])
    await start.evaluate("() => { window.__hidden = true; }")
    await page.goto(server.url + conversations[1].get_absolute_url())
    await page.locator(".conversation-menu summary").click()
    await page.get_by_role("button", name="Pin to the top").click()
    await expect(page.get_by_role("button", name="Unpin")).to_be_attached()
    await start.evaluate(SHOWN_AGAIN)
    await expect(links).to_have_text(["Topic 001", "Topic 000"])
    await expect(start.locator("#conversation-list li").first).to_have_text("Pinned")
    await start.close()


# When the page's sockets open and when it asks for its list (`#conversation-list` filled)
OPENS_AND_ASKS = (
    "window.__opens = []; window.__listAsked = [];"
    "document.addEventListener('htmx:wsOpen', () => window.__opens.push(performance.now()));"
    "document.addEventListener('htmx:beforeRequest', (event) => {"
    "  if (event.detail.target && event.detail.target.id === 'conversation-list') {"
    "    window.__listAsked.push(performance.now()); } });"
)


async def organize_elsewhere(
    context: Any, server: Any, conversation: Conversation, **form: str
) -> None:
    """Pin or archive `conversation` as another tab would, but with no tab's name: the server
    tells every tab of the user."""
    token = next(c["value"] for c in await context.cookies() if c["name"] == "csrftoken")
    answer = await context.request.post(
        server.url + conversation.get_absolute_url() + "organize/",
        form=form,
        headers={"X-CSRFToken": token},
        max_redirects=0,
    )
    assert answer.status == 302, await answer.text()


@pytest.mark.parametrize("stayed_up", [False, True], ids=["dropped-at-once", "dropped-later"])
async def test_a_tab_whose_socket_was_away_asks_for_its_list_once_it_is_back(
    page, context, server, user, stayed_up
):
    """A tab hears nothing while its socket is away: once its socket is back and stays up a
    second (not as it opens), it asks for its list again, once. Also when its first socket
    went within its first second (a second read found it then asked for nothing: "up before"
    was noted only once a socket had stayed up)."""
    from tests.browser.support import ChatPage, another_tab

    conversations = await seed(user, 2)
    other = await another_tab(context)
    # Seen all along: a tab behind another waits until it is seen (tested above), and whether
    # the browser counts this one as seen while the test works in the first tab is its own.
    await other.add_init_script(SEEN_OR_NOT + OPENS_AND_ASKS)
    sockets: list[Any] = []
    hearing = {"on": True}

    def route(socket: Any) -> None:
        server_side = socket.connect_to_server()
        server_side.on_message(lambda message: socket.send(message) if hearing["on"] else None)
        sockets.append(socket)

    await other.route_web_socket(re.compile(r"/ws/"), route)
    await page.goto(server.url + "/")
    await other.goto(server.url + conversations[0].get_absolute_url())
    await ChatPage(other, server).wait_for_socket()
    links = other.locator("#conversation-list a")
    await expect(links).to_have_text(["Topic 000", "Topic 001"])
    if stayed_up:
        await other.wait_for_timeout(1200)

    hearing["on"] = False  # (its socket down: what the server says is lost)
    await organize_elsewhere(context, server, conversations[1], pinned="true")
    await other.wait_for_timeout(100)  # (its frame, lost)
    hearing["on"] = True
    await sockets[-1].close(code=1012, reason="the server restarts")
    if stayed_up:
        dropped = await other.evaluate("() => performance.now() - window.__opens[0]")
        assert dropped > 1000, dropped
    # (else within its first second, here in about 0.3 s; a machine slow enough to take over
    # a second tests the other case twice)
    await ChatPage(other, server).wait_for_socket(2)
    try:
        await expect(links).to_have_text(["Topic 001", "Topic 000"], timeout=10_000)
    except AssertionError as failed:
        state = await other.evaluate(
            "() => [document.visibilityState, window.__opens, window.__listAsked]"
        )
        raise AssertionError(f"{failed}; seen, opened, asked: {state}") from None
    await other.wait_for_timeout(1200)  # (a second time would come a second later)
    opens, asked = await other.evaluate("() => [window.__opens, window.__listAsked]")
    assert len(asked) == 1, (opens, asked)  # once
    assert asked[0] - opens[-1] >= 900, (opens, asked)  # once it stayed up, not as it opened
    await other.close()


async def test_a_list_drawn_again_keeps_the_pages_it_had_loaded_and_its_place(
    page, context, server, user, tmp_path
):
    """Left alone by an earlier session: a list drawn again (a change in another tab) asked
    for its first page only, so a list scrolled down past "Show more" shrank to one page and
    jumped to its top. It is drawn again as long as it was, and keeps its place."""
    from tests.browser.support import ChatPage

    conversations = await seed(user, 2 * SIDEBAR_PAGE_SIZE + 10)
    await page.add_init_script(SEEN_OR_NOT)
    await page.goto(server.url + conversations[0].get_absolute_url())
    await ChatPage(page, server).wait_for_socket()
    sidebar = page.locator("#sidebar")
    links = sidebar.locator("#conversation-list a")
    for shown in (2 * SIDEBAR_PAGE_SIZE, 2 * SIDEBAR_PAGE_SIZE + 10):
        await sidebar.get_by_role("button", name="Show more").scroll_into_view_if_needed()
        await expect(links).to_have_count(shown)
    anchor = sidebar.get_by_role("link", name="Topic 080", exact=True)
    await anchor.scroll_into_view_if_needed()
    where = "(link) => [link.closest('ul').scrollTop, link.getBoundingClientRect().top]"
    before = await anchor.evaluate(where)
    assert before[0] > 0, before

    # Archived in another tab (no tab of the page's asked): the list is told, drawn again
    await organize_elsewhere(context, server, conversations[-1], archived="true")
    await expect(
        sidebar.get_by_role("link", name=f"Topic {len(conversations) - 1:03d}")
    ).to_have_count(0)
    await expect(links).to_have_count(len(conversations) - 1)
    await expect(links.nth(SIDEBAR_PAGE_SIZE)).to_have_text(f"Topic {SIDEBAR_PAGE_SIZE:03d}")
    assert await anchor.evaluate(where) == before  # (where it was: nothing above it changed)
    await expect(sidebar.get_by_role("button", name="Show more")).to_have_count(0)
    await check_looks(page, tmp_path / "list-drawn-again-1280-light.png")

    # In a phone's drawer, dark, the focus in the list (on the conversation shown): the same
    # (the browser's scroll anchoring moved it by hundreds of pixels as htmx swapped it)
    await page.set_viewport_size(PHONE)
    await page.emulate_media(color_scheme="dark")
    await page.get_by_role("button", name="Conversations", exact=True).click()
    await expect(sidebar).to_be_in_viewport()
    await anchor.scroll_into_view_if_needed()
    before = await anchor.evaluate(where)
    assert before[0] > 0, before
    await expect(sidebar.get_by_role("link", name="Topic 000", exact=True)).to_be_focused()
    await organize_elsewhere(context, server, conversations[-2], archived="true")
    await expect(links).to_have_count(len(conversations) - 2)
    assert await anchor.evaluate(where) == before
    await check_looks(page, tmp_path / "list-drawn-again-390-dark.png")
