"""Fair limits per user: refused with a clear reason, nothing saved, and a user or group can be
given other limits in the admin."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat import services
from chat.models import Conversation, Message, SpentTokens, UsageLimit
from tests.fake_upstream import FakeRequest, reply_events
from tests.live import ChatClient, wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_worker(sent_to_worker) -> list[int]:
    cache.clear()
    return sent_to_worker


def send(client: Client, conversation: Conversation, text: str = "hi"):
    url = reverse("chat:message_create", args=[conversation.pk])
    return client.post(url, {"content": text}, HTTP_HX_REQUEST="true")


def test_concurrent_replies_are_limited_and_the_reason_is_shown(alice_client, user, settings):
    settings.CHAT_LIMIT_CONCURRENT_REPLIES = 3
    conversations = [services.conversation_create(owner=user) for _ in range(4)]
    for conversation in conversations[:3]:
        assert send(alice_client, conversation).status_code == 200
    refused = send(alice_client, conversations[3])
    assert refused.status_code == 429
    assert "3 replies being written at once" in refused.content.decode()
    assert not conversations[3].messages.exists()  # nothing half-saved
    # One reply ends: there is room again.
    Message.objects.filter(conversation=conversations[0], role="assistant").update(
        status="complete"
    )
    assert send(alice_client, conversations[3]).status_code == 200


def test_messages_a_minute_are_limited(alice_client, user, settings):
    settings.CHAT_LIMIT_MESSAGES_PER_MINUTE = 2
    conversation = services.conversation_create(owner=user)
    for _ in range(2):
        assert send(alice_client, conversation).status_code == 200
        Message.objects.filter(conversation=conversation).update(status="complete")
    refused = send(alice_client, conversation)
    assert refused.status_code == 429 and "2 messages a minute" in refused.content.decode()
    assert conversation.messages.count() == 4


def conversation_that_spent(client: Client, user, prompt: int, completion: int) -> Conversation:
    """A conversation of one turn whose reply spent these tokens, today."""
    conversation = services.conversation_create(owner=user)
    assert send(client, conversation).status_code == 200
    Message.objects.filter(conversation=conversation, role="assistant").update(
        status="complete", prompt_tokens=prompt, completion_tokens=completion
    )
    return conversation


def test_tokens_a_day_are_limited(alice_client, user, settings):
    settings.CHAT_LIMIT_TOKENS_PER_DAY = 100
    conversation = conversation_that_spent(alice_client, user, 60, 50)
    refused = send(alice_client, conversation)
    assert refused.status_code == 429 and "100 tokens for today" in refused.content.decode()
    assert "starts again at midnight (UTC)" in refused.content.decode()  # the site's day
    # Regenerating is a new reply too.
    reply = conversation.messages.get(role="assistant")
    retry = reverse("chat:message_retry", args=[conversation.pk, reply.pk])
    assert alice_client.post(retry).status_code == 429


def test_the_days_tokens_are_the_users_replies_of_today_and_what_they_spent_outside_them(
    alice_client, user, other_user, settings
):
    """Counted in one compiled statement (`limits._tokens_spent_today`): today's replies of
    the user's and their spent tokens of today add up; yesterday's and another user's do
    not count."""
    settings.CHAT_LIMIT_TOKENS_PER_DAY = 91
    yesterday = timezone.now() - timedelta(days=1)
    earlier = conversation_that_spent(alice_client, user, 600, 400)
    Message.objects.filter(conversation=earlier).update(created=yesterday)
    someone_elses = services.conversation_create(owner=other_user)
    Message.objects.create(
        conversation=someone_elses,
        role="assistant",
        status="complete",
        prompt_tokens=500,
        completion_tokens=500,
    )
    SpentTokens.objects.create(user=other_user, day=timezone.localdate(), tokens=1000)
    SpentTokens.objects.create(user=user, day=timezone.localdate() - timedelta(days=1), tokens=1000)
    conversation_that_spent(alice_client, user, 40, 20)
    SpentTokens.objects.create(user=user, day=timezone.localdate(), tokens=30)
    fresh = services.conversation_create(owner=user)
    assert send(alice_client, fresh).status_code == 200  # 90 spent: one under the limit
    Message.objects.filter(conversation=fresh, role="assistant").update(
        status="complete", completion_tokens=1
    )
    refused = send(alice_client, fresh)
    assert refused.status_code == 429 and "91 tokens for today" in refused.content.decode()
    # Another user's replies being written do not count toward this user's at once.
    settings.CHAT_LIMIT_TOKENS_PER_DAY = 0
    settings.CHAT_LIMIT_CONCURRENT_REPLIES = 1
    Message.objects.create(conversation=someone_elses, role="assistant", status="streaming")
    assert send(alice_client, fresh).status_code == 200
    refused = send(alice_client, services.conversation_create(owner=user))
    assert refused.status_code == 429 and "1 reply being written" in refused.content.decode()


def test_deleting_a_conversation_gives_none_of_the_days_tokens_back(alice_client, user, settings):
    settings.CHAT_LIMIT_TOKENS_PER_DAY = 100
    spent = conversation_that_spent(alice_client, user, 60, 50)
    fresh = services.conversation_create(owner=user)
    assert send(alice_client, fresh).status_code == 429
    delete = reverse("chat:conversation_delete", args=[spent.pk])
    assert alice_client.post(delete).status_code == 302
    assert not Conversation.objects.filter(pk=spent.pk).exists()
    refused = send(alice_client, fresh)
    assert refused.status_code == 429 and "100 tokens for today" in refused.content.decode()
    assert "starts again at midnight (UTC)" in refused.content.decode()  # the site's day
    assert not fresh.messages.exists()
    # The deleted replies count 110 tokens, no more: a larger budget has room again.
    settings.CHAT_LIMIT_TOKENS_PER_DAY = 200
    assert send(alice_client, fresh).status_code == 200


@pytest.mark.parametrize(
    ("limit", "reason"),
    [
        ("CHAT_LIMIT_CONVERSATIONS_PER_MINUTE", "send 1 new conversation a minute"),
        ("CHAT_LIMIT_CONCURRENT_REPLIES", "You have 1 reply being written at once"),
    ],
)
def test_the_start_page_past_a_limit_says_why_and_saves_nothing(
    alice_client, settings, limit, reason
):
    setattr(settings, limit, 1)
    start = reverse("chat:conversation_start")
    assert alice_client.post(start, {"content": "one"}, HTTP_HX_REQUEST="true").status_code == 204
    refused = alice_client.post(start, {"content": "two"}, HTTP_HX_REQUEST="true")
    assert refused.status_code == 429 and reason in refused.content.decode()
    assert refused["Content-Type"].startswith("text/plain")  # the page shows it as it is
    assert Conversation.objects.count() == 1 and Message.objects.count() == 2


def test_new_conversations_a_minute_are_limited(alice_client, settings):
    settings.CHAT_LIMIT_CONVERSATIONS_PER_MINUTE = 2
    for _ in range(2):
        assert alice_client.post(reverse("chat:conversation_create")).status_code == 302
    refused = alice_client.post(reverse("chat:conversation_create"))
    assert refused.status_code == 429 and "2 new conversations a minute" in refused.content.decode()
    assert Conversation.objects.count() == 2


def test_a_user_or_their_group_can_have_other_limits(alice_client, user, settings):
    settings.CHAT_LIMIT_CONCURRENT_REPLIES = 1
    team = Group.objects.create(name="team")
    user.groups.add(team)
    UsageLimit.objects.create(group=team, concurrent_replies=2)
    conversations = [services.conversation_create(owner=user) for _ in range(4)]
    assert [send(alice_client, c).status_code for c in conversations[:3]] == [200, 200, 429]
    UsageLimit.objects.create(user=user, concurrent_replies=0)  # the user's own: no limit
    assert send(alice_client, conversations[3]).status_code == 200


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
async def test_one_user_starting_105_replies_does_not_delay_another(
    start_server, fake_upstream, alice_session, other_user
):
    """Today's worker runs 100 replies at once: without a per-user limit, one user's 105
    would make the next user wait for a slot."""
    from tests.live import asession_cookie_for

    server = start_server(CHAT_LIMIT_CONCURRENT_REPLIES="3", CHAT_MAX_CONCURRENT_GENERATIONS="100")
    held = asyncio.Event()

    async def plan(request: FakeRequest):
        if "from bob" in str(request.body["messages"]):
            return await request.stream(reply_events(["Right away."]))
        await held.wait()
        return await request.stream(reply_events(["Late."]))

    fake_upstream.plan = plan
    alice = ChatClient(server, alice_session)
    statuses = []
    for _ in range(105):
        conversation_id = await alice.create_conversation()
        statuses.append((await alice.send(conversation_id, "from alice")).status_code)
    assert statuses.count(200) == 3 and statuses.count(429) == 102

    bob = ChatClient(server, await asession_cookie_for(other_user))
    conversation_id = await bob.create_conversation()
    response = await bob.send(conversation_id, "from bob")
    reply_id = [int(i) for i in re.findall(r'<article id="m(\d+)"', response.text)][-1]

    async def answered():
        reply = await Message.objects.aget(pk=reply_id)
        return reply.status == "complete" and reply.content == "Right away."

    await wait_for(answered, timeout=10)
    fake_upstream.loop.call_soon_threadsafe(held.set)
    await alice.aclose()
    await bob.aclose()


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
@pytest.mark.parametrize("ended_by", ["stop", "size_limit"])
async def test_a_reply_whose_usage_never_came_still_counts_toward_the_days_tokens(
    start_server, fake_upstream, alice_session, ended_by
):
    """The usage comes last in a stream: a reply stopped, or cut at the size limit, counted no
    tokens, though the model server billed its prompt and what it wrote. Stopping each reply
    early spent the day's tokens without limit."""
    server = start_server(
        CHAT_LIMIT_TOKENS_PER_DAY="1000",
        CHAT_MAX_REPLY_CHARS="200" if ended_by == "size_limit" else "100000",
        CHAT_GENERATE_TITLES="false",
    )
    asked = asyncio.Event()

    async def plan(request: FakeRequest):
        fake_upstream.loop.call_soon(asked.set)
        return await request.stream(reply_events(["word "] * 400, usage=(1000, 400)), delay=0.02)

    fake_upstream.plan = plan
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    question = "Please repeat the word. " * 200  # 4,800 characters: about 1,200 tokens
    response = await client.send(conversation_id, question)
    reply_id = [int(i) for i in re.findall(r'<article id="m(\d+)"', response.text)][-1]
    if ended_by == "stop":

        async def streaming():
            return asked.is_set()

        await wait_for(streaming, timeout=10)
        await asyncio.sleep(1.0)  # about 50 words streamed
        assert (await client.stop(conversation_id, reply_id)).status_code == 204

    async def ended():
        reply = await Message.objects.aget(pk=reply_id)
        return reply.status in ("cancelled", "complete") and reply

    reply = await wait_for(ended, timeout=20)
    assert reply.prompt_tokens is None  # the row holds only usage the server reported
    if ended_by == "size_limit":
        assert reply.finish_reason == "size_limit"
    # About 1,200 tokens of question and some of answer: past the day's 1,000.
    refused = await client.send(conversation_id, "One more")
    assert refused.status_code == 429, refused.text
    assert "tokens" in refused.text
    await client.aclose()
