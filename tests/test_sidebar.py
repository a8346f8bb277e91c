"""The sidebar's conversation list: pinned first, then grouped by day, a page at a time; search
over titles and messages; pin and archive."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from chat import selectors, services
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


def made(owner, title: str, *, days_ago: float = 0, **fields) -> Conversation:
    conversation = Conversation.objects.create(owner=owner, title=title, model="m", **fields)
    updated = timezone.now() - timedelta(days=days_ago)
    Conversation.objects.filter(pk=conversation.pk).update(updated=updated)
    conversation.updated = updated
    return conversation


def listed(page: selectors.SidebarPage) -> list[tuple[str, str]]:
    return [(heading, conversation.title) for heading, conversation in page.entries]


def every_page(user, pages: int = 5) -> list[tuple[str, str]]:
    """What the sidebar lists, following "Show more" to the end (up to `pages` pages)."""
    seen: list[tuple[str, str]] = []
    cursor, group = "", ""
    for _ in range(pages):
        page = selectors.conversation_sidebar_page(user=user, cursor=cursor, last_group=group)
        seen += listed(page)
        cursor, group = page.next_cursor, page.last_group
        if not cursor:
            break
    return seen


def test_pinned_first_then_grouped_by_day_and_archived_left_out(user, other_user):
    made(user, "old", days_ago=30)
    made(user, "last week", days_ago=5)
    made(user, "yesterday", days_ago=1)
    made(user, "today")
    made(user, "pinned long ago", days_ago=90, pinned=True)
    made(user, "archived", archived=True)
    made(other_user, "not mine")
    page = selectors.conversation_sidebar_page(user=user)
    assert listed(page) == [
        ("Pinned", "pinned long ago"),
        ("Today", "today"),
        ("Yesterday", "yesterday"),
        ("Previous 7 days", "last week"),
        ("Older", "old"),
    ]
    archived = selectors.conversation_sidebar_page(user=user, archived=True)
    assert listed(archived) == [("Today", "archived")]


def test_pages_follow_on_without_gaps_repeats_or_a_repeated_heading(user):
    for i in range(120):
        made(user, f"c{i:03d}", days_ago=i / 10)
    seen = every_page(user)
    assert [title for _, title in seen] == [f"c{i:03d}" for i in range(120)]
    headings = [heading for heading, _ in seen if heading]
    assert headings == ["Today", "Yesterday", "Previous 7 days", "Older"]
    assert (
        len(selectors.conversation_sidebar_page(user=user).entries) == selectors.SIDEBAR_PAGE_SIZE
    )


def test_every_pinned_conversation_is_listed_when_there_are_more_than_a_page(alice_client, user):
    """The pinned list was cut at one page, and the pages after it leave pinned ones out: five
    of 55 could only be found by a search."""
    count = selectors.SIDEBAR_PAGE_SIZE + 5
    for i in range(count):
        made(user, f"p{i:03d}", days_ago=i / 100, pinned=True)
    for i in range(3):
        made(user, f"c{i}", days_ago=i)
    seen = every_page(user)
    assert [title for _, title in seen] == [f"p{i:03d}" for i in range(count)] + ["c0", "c1", "c2"]
    assert [heading for heading, _ in seen if heading] == [
        "Pinned",
        "Today",
        "Yesterday",
        "Previous 7 days",
    ]
    # The page's "Show more" asks for the rest, and the list view answers with it.
    first = selectors.conversation_sidebar_page(user=user)
    rest = alice_client.get(reverse("chat:conversation_sidebar") + "?" + first.next_params)
    body = rest.content.decode()
    assert "p054" in body and "c2" in body and "p049" not in body


def test_a_search_ignores_case_beyond_ascii_letters(user, other_user):
    """SQLite's LIKE folds ASCII letters only: "über" did not find "Über"."""
    made(user, "Über Straßenbahnen", days_ago=0)
    theirs = made(other_user, "über alles", days_ago=0)
    services.message_submit(conversation=theirs, content="ÜBER")
    about = made(user, "Trams", days_ago=1)
    Message.objects.create(conversation=about, role="user", content="Die STRASSENBAHN fährt")
    for query, titles in [
        ("über", ["Über Straßenbahnen"]),
        ("ÜBER", ["Über Straßenbahnen"]),
        ("STRAßENBAHNEN", ["Über Straßenbahnen"]),
        ("fährt", ["Trams"]),
    ]:
        page = selectors.conversation_sidebar_page(user=user, query=query)
        assert [c.title for _, c in page.entries] == titles, query


@pytest.mark.parametrize("page", ["chat:start", "chat:conversation_sidebar"])
def test_a_search_reads_its_first_200_characters_on_every_page(alice_client, user, page):
    """The start page searched with the whole query (a contains query costs the text times
    the pattern: seconds for a long one)."""
    long = made(user, "the long one", days_ago=0)
    Message.objects.create(conversation=long, role="user", content="a" * 300)
    body = alice_client.get(reverse(page) + "?" + urlencode({"q": "a" * 300 + "b"})).content
    assert "the long one" in body.decode()  # found: the "b" past the first 200 is not read


@pytest.mark.parametrize(
    "cursor", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-01-01T00:00:00"]
)
def test_a_cursor_out_of_range_or_without_a_zone_lists_nothing(alice_client, user, cursor):
    """Out of range, it was a server error on SQLite (the time is moved to UTC for the query)."""
    made(user, "there", days_ago=0)
    alice_client.raise_request_exception = False
    query = urlencode({"cursor": f"{cursor}~{uuid.uuid4()}"})
    response = alice_client.get(reverse("chat:conversation_sidebar") + "?" + query)
    assert response.status_code == 200
    assert 'id="conv-link-' not in response.content.decode()


def test_search_finds_titles_and_message_text_of_mine_only(user, other_user):
    trip = made(user, "Trip to Lisbon")
    recipe = made(user, "Dinner")
    Message.objects.create(conversation=recipe, role="user", content="A recipe with LENTILS")
    made(user, "Archived lisbon notes", archived=True)
    made(other_user, "Lisbon too")
    found = selectors.conversation_sidebar_page(user=user, query="lisbon")
    assert {c.title for _, c in found.entries} == {trip.title, "Archived lisbon notes"}
    found = selectors.conversation_sidebar_page(user=user, query="lentils")
    assert [c.title for _, c in found.entries] == ["Dinner"]
    assert selectors.conversation_sidebar_page(user=user, query="paris").entries == []


def test_a_search_marks_the_archived_conversations_it_finds(alice_client, user):
    """A search finds archived conversations too: they were listed like the others, with
    nothing to say why they were not in the list before the search."""
    kept = made(user, "Trip to Lisbon")
    put_away = made(user, "Archived lisbon notes", archived=True)
    url = reverse("chat:conversation_sidebar")
    found = alice_client.get(url, {"q": "lisbon"}).content.decode()
    assert f'<li class="archived"><a id="conv-link-{put_away.pk}"' in found
    assert f'<li><a id="conv-link-{kept.pk}"' in found
    assert found.count('<span class="archived-mark">Archived</span>') == 1
    # The archived list itself needs no mark on each one.
    archived = alice_client.get(url, {"archived": "1"}).content.decode()
    assert f'<li><a id="conv-link-{put_away.pk}"' in archived
    assert "archived-mark" not in archived


@pytest.mark.services
def test_search_on_postgresql_is_full_text_by_word_prefix(user):
    made(user, "Packing for Lisbon")
    talk = made(user, "Dinner")
    Message.objects.create(conversation=talk, role="assistant", content="Cook the lentils slowly.")
    found = selectors.conversation_sidebar_page(user=user, query="lisb")
    assert [c.title for _, c in found.entries] == ["Packing for Lisbon"]
    found = selectors.conversation_sidebar_page(user=user, query="lentil slow")
    assert [c.title for _, c in found.entries] == ["Dinner"]
    # A tsquery's operators are only words to it.
    assert selectors.conversation_sidebar_page(user=user, query="!:* & |").entries == []


def test_pin_and_archive_keep_the_conversation_in_its_place_in_time(alice_client, user):
    conversation = made(user, "keep", days_ago=3)
    url = reverse("chat:conversation_organize", args=[conversation.pk])
    response = alice_client.post(url, {"pinned": "true"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "Unpin" in response.content.decode()
    # (not the list: the page asks for it as it shows it, searched or the archived ones)
    assert 'id="conversation-list"' not in response.content.decode()
    alice_client.post(url, {"archived": "true"}, HTTP_HX_REQUEST="true")
    saved = Conversation.objects.get(pk=conversation.pk)
    assert (saved.pinned, saved.archived) == (True, True)
    assert saved.updated == conversation.updated


def test_a_message_sent_in_an_archived_conversation_brings_it_back(alice_client, user, monkeypatch):
    """Found by a walk-through: a tab still open on a conversation archived in another sent
    a message in it, its list put it first under Today, and a reload took it out of the list
    again (archived still). Written in again, it is back among the others, pinned as it was."""
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    conversation = made(user, "put away", days_ago=3)
    services.conversation_organize(conversation=conversation, archived=True, pinned=True)
    url = reverse("chat:message_create", args=[conversation.pk])
    assert alice_client.post(url, {"content": "one more thing"}).status_code in (200, 302)
    saved = Conversation.objects.get(pk=conversation.pk)
    assert (saved.archived, saved.pinned) == (False, True) and saved.updated > conversation.updated
    body = alice_client.get(reverse("chat:conversation_sidebar")).content.decode()
    assert "put away" in body


def test_a_pin_or_archive_tells_the_other_tabs_only_what_changed(
    user, django_capture_on_commit_callbacks
):
    """A second pin (a double click, another tab's stale menu) told every tab of the user,
    each then asking for its list for nothing. The database compares, in the write: a value
    read before another tab's opposite change committed is still written."""
    conversation = made(user, "to pin")
    with django_capture_on_commit_callbacks() as told:
        services.conversation_organize(conversation=conversation, pinned=True)
    assert len(told) == 1
    with django_capture_on_commit_callbacks() as told:
        services.conversation_organize(conversation=conversation, pinned=True)
        services.conversation_organize(conversation=conversation, pinned=True, archived=False)
    assert told == []
    stale = Conversation.objects.get(pk=conversation.pk)
    Conversation.objects.filter(pk=conversation.pk).update(pinned=False)  # (another tab)
    with django_capture_on_commit_callbacks() as told:
        services.conversation_organize(conversation=stale, pinned=True)  # (read as pinned)
    assert len(told) == 1
    assert Conversation.objects.get(pk=conversation.pk).pinned


def test_the_list_pages_and_search_are_mine_only(alice_client, user, other_user):
    made(user, "Mine about lisbon")
    theirs = made(other_user, "Theirs about lisbon")
    body = alice_client.get(reverse("chat:conversation_sidebar") + "?q=lisbon").content.decode()
    assert "Mine about lisbon" in body and "Theirs" not in body
    url = reverse("chat:conversation_organize", args=[theirs.pk])
    assert alice_client.post(url, {"pinned": "true"}).status_code == 404


def test_a_long_list_is_sent_a_page_at_a_time(alice_client, user):
    for i in range(3 * selectors.SIDEBAR_PAGE_SIZE):
        made(user, f"conversation number {i}", days_ago=i)
    body = alice_client.get(reverse("chat:start")).content.decode()
    assert body.count('id="conv-link-') == selectors.SIDEBAR_PAGE_SIZE
    assert "Show more" in body
    services.conversation_organize(conversation=Conversation.objects.last(), pinned=True)
    body = alice_client.get(reverse("chat:start")).content.decode()
    assert body.count('id="conv-link-') == selectors.SIDEBAR_PAGE_SIZE + 1


def test_a_list_drawn_again_is_as_long_as_the_tab_had_it(alice_client, user, monkeypatch):
    """A tab draws its list again (a change in another tab) as long as it was (`shown`, the
    pinned ones counted): the pages "Show more" added stay, drawn again it stays as long, the
    pages after it follow on, and a count is bounded."""
    size = selectors.SIDEBAR_PAGE_SIZE
    for i in range(3 * size):
        made(user, f"c{i:03d}", days_ago=i / 10)
    for i in range(3):
        made(user, f"p{i}", days_ago=i, pinned=True)
    url = reverse("chat:conversation_sidebar")

    def titles(query: str) -> list[str]:
        body = alice_client.get(f"{url}?{query}").content.decode()
        return re.findall(
            r'id="conv-link-[^"]+" href="[^"]+"(?: aria-current="page")?>([^<]+)<', body
        )

    pinned = ["p0", "p1", "p2"]
    first = titles("")
    assert first == pinned + [f"c{i:03d}" for i in range(size)]
    assert titles(f"shown={len(first)}") == first  # (the same again: not one page more)
    # The pinned ones and two pages and some
    shown = len(pinned) + 2 * size + 10
    again = selectors.conversation_sidebar_page(user=user, shown=shown)
    assert [c.title for _, c in again.entries] == pinned + [f"c{i:03d}" for i in range(shown - 3)]
    assert titles(f"shown={shown}") == [c.title for _, c in again.entries]
    rest = selectors.conversation_sidebar_page(
        user=user, cursor=again.next_cursor, last_group=again.last_group
    )
    assert [c.title for _, c in rest.entries] == [f"c{i:03d}" for i in range(shown - 3, 3 * size)]
    assert not rest.next_cursor
    assert [h for h, _ in again.entries + rest.entries if h] == [
        h for h, _ in every_page(user) if h
    ]
    # Searched, or the archived ones: the same
    assert len(titles(f"q=c&shown={size + 5}")) == size + 5
    Conversation.objects.filter(title__lt="c070").update(archived=True)
    assert len(titles(f"archived=1&shown={size + 5}")) == size + 5
    # Fewer than a page, or not a count: a page
    for junk in ("3", "", "-80", "1e3", "²", "99999999999999"):
        assert len(titles(f"archived=1&shown={junk}")) == size, junk
    # At most SIDEBAR_MOST_SHOWN of each
    monkeypatch.setattr(selectors, "SIDEBAR_MOST_SHOWN", size + 7)
    assert len(titles("shown=1000000")) == len(pinned) + size + 7


def test_a_list_with_more_pinned_than_a_page_is_drawn_again_as_long(user):
    size = selectors.SIDEBAR_PAGE_SIZE
    for i in range(size + 10):
        made(user, f"p{i:03d}", days_ago=i / 100, pinned=True)
    for i in range(2 * size):
        made(user, f"c{i:03d}", days_ago=1 + i / 10)
    # Shown: a page of pinned ones alone, then "Show more": the rest of them and 50 others
    shown = [title for _, title in every_page(user, pages=2)]
    assert len(shown) == 2 * size + 10 and shown[-1] == f"c{size - 1:03d}"
    for _ in range(2):  # (and again: as long)
        again = selectors.conversation_sidebar_page(user=user, shown=len(shown))
        assert [c.title for _, c in again.entries] == shown
    first = selectors.conversation_sidebar_page(user=user, shown=size)
    assert [c.title for _, c in first.entries] == shown[:size]
    assert first.next_cursor.startswith(selectors.PINNED_CURSOR)


def test_a_link_escapes_its_title_and_marks_the_conversation_shown(alice_client, user):
    shown = made(user, "<b>bold</b> & more")
    made(user, "")
    body = alice_client.get(shown.get_absolute_url()).content.decode()
    assert (
        f'<a id="conv-link-{shown.pk}" href="{shown.get_absolute_url()}" aria-current="page">'
        "&lt;b&gt;bold&lt;/b&gt; &amp; more</a>"
    ) in body
    assert ">New conversation</a>" in body  # an untitled one
    assert body.count('aria-current="page"') == 1


@pytest.mark.parametrize("page", ["chat:start", "chat:conversation_sidebar"])
def test_the_list_takes_as_many_queries_for_many_conversations_as_for_a_few(
    alice_client, user, page, django_assert_num_queries
):
    """An N+1 (a query per listed conversation) fails here: query counts are behaviour."""
    for i in range(3):
        made(user, f"few {i}", days_ago=i, pinned=i == 0)
    with CaptureQueriesContext(connection) as few:
        assert alice_client.get(reverse(page)).status_code == 200
    for i in range(3 * selectors.SIDEBAR_PAGE_SIZE):
        made(user, f"many {i}", days_ago=i / 24, pinned=i % 40 == 0)
    # User, pinned ones, one page of the rest (the session comes from the cache).
    with django_assert_num_queries(len(few)):
        body = alice_client.get(reverse(page)).content.decode()
    assert body.count('id="conv-link-') > selectors.SIDEBAR_PAGE_SIZE
    assert len(few) <= 3 + (not django_settings.SESSION_ENGINE.endswith(".cached_db"))


@pytest.mark.parametrize("zone", ["UTC", "Europe/Lisbon", "America/Santiago", "Asia/Kolkata"])
def test_the_day_groups_follow_the_local_day(zone):
    """A conversation's group is its local day's: this day (or later), the day before, the
    seven days before, or older, across daylight saving changes."""
    import random
    import zoneinfo
    from datetime import UTC, date, datetime, timedelta

    from django.utils import timezone

    def by_day(day: date, today: date) -> str:
        if day >= today:
            return "Today"
        if day == today - timedelta(days=1):
            return "Yesterday"
        if day >= today - timedelta(days=7):
            return "Previous 7 days"
        return "Older"

    rng = random.Random(14)
    with timezone.override(zoneinfo.ZoneInfo(zone)):
        for today in (date(2026, 3, 29), date(2026, 4, 6), date(2026, 9, 7), date(2026, 10, 26)):
            starts = selectors.group_starts(today)
            noon = datetime(today.year, today.month, today.day, 12, tzinfo=UTC)
            for _ in range(2000):
                when = noon + timedelta(seconds=rng.uniform(-12 * 86400, 2 * 86400))
                group = next((g for start, g in starts if when >= start), "Older")
                assert group == by_day(timezone.localdate(when), today), when


def test_the_items_are_the_templates_markup_in_every_state():
    """chat_tags.sidebar_items builds the `items` partial: byte for byte the `items-markup`
    partial, for every state the list can be in."""
    import itertools
    import uuid

    from django.template.loader import render_to_string

    from chat.templatetags.chat_tags import sidebar_items

    now = timezone.now()
    entries = [
        ("Pinned", selectors.ConversationLink(uuid.uuid4(), "<b>pinned</b> & co", now)),
        ("", selectors.ConversationLink(uuid.uuid4(), "", now)),
        ("Today", selectors.ConversationLink(uuid.uuid4(), "“quoted” 'title'", now)),
        ("", selectors.ConversationLink(uuid.uuid4(), "put away", now, archived=True)),
    ]
    for listed, query, archived, first, current, cursor in itertools.product(
        [[], entries],
        ["", "a&b <c>"],
        [False, True],
        [False, True],
        [None, uuid.uuid4()],
        ["", "x"],
    ):
        page = selectors.SidebarPage(
            entries=listed,
            query=query,
            archived=archived,
            current=current,
            first=first,
            next_cursor=f"{now.isoformat()}~{uuid.uuid4()}" if cursor else "",
            last_group="Today" if cursor else "",
        )
        expected = render_to_string("chat/_sidebar.html#items-markup", {"sidebar": page})
        assert sidebar_items(page) == expected, page
        assert render_to_string("chat/_sidebar.html#items", {"sidebar": page}) == expected
