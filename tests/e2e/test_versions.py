"""End to end: regenerate and edit keep every version; the model only ever sees the path the
user chose; the export has every version."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from asgiref.sync import sync_to_async

from chat import exports, selectors
from chat.models import Conversation, Message
from tests.fake_upstream import FakeRequest, reply_events
from tests.live import ChatClient, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


async def post(client: ChatClient, conversation_id: uuid.UUID, path: str, **data: str):
    response = await client.http.post(
        f"/c/{conversation_id}/messages/{path}",
        data=data,
        headers={"X-CSRFToken": await client.csrf(), "HX-Request": "true"},
    )
    assert response.status_code == 200, response.text
    return response


def last_article(response) -> int:
    return [int(i) for i in re.findall(r'<article id="m(\d+)"', response.text)][-1]


async def ended(message_id: int) -> Message:
    async def done():
        message = await Message.objects.aget(pk=message_id)
        return message if not message.is_active else None

    return await wait_for(done)


async def shown(conversation_id: uuid.UUID) -> list[tuple[str, str]]:
    conversation = await Conversation.objects.aget(pk=conversation_id)
    path = await sync_to_async(selectors.active_path)(conversation=conversation)
    return [(m.role, m.content) for m in path]


def texts_sent(request: FakeRequest) -> list[str]:
    return [m["content"] for m in request.body["messages"] if m["role"] != "system"]


async def test_regenerated_versions_are_kept_and_the_model_sees_only_the_chosen_one(
    start_server, fake_upstream, alice_session
):
    server = start_server(CHAT_MAX_RETRIES="0")
    answers = ["Version one.", "Version two.", None, "Follow-up answer."]

    async def plan(request: FakeRequest):
        answer = answers[request.index]
        if answer is None:
            return await request.error(500, "The upstream fell over")
        return await request.stream(reply_events([answer]))

    fake_upstream.plan = plan
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    first = last_article(await client.send(conversation_id, "Question?"))
    await ended(first)
    second = last_article(await post(client, conversation_id, f"{first}/retry/"))
    assert (await ended(second)).content == "Version two."
    third = last_article(await post(client, conversation_id, f"{second}/retry/"))
    assert (await ended(third)).status == "error"

    # Every version is kept: the failed one is shown, and the user switches back to the first.
    assert (await Message.objects.aget(pk=first)).content == "Version one."
    response = await post(client, conversation_id, f"{first}/select/")
    assert "Version 1 of 3." in response.text and "Version one." in response.text
    assert await shown(conversation_id) == [("user", "Question?"), ("assistant", "Version one.")]

    follow_up = (await client.send(conversation_id, "And then?")).text
    reply = [int(i) for i in re.findall(r'<article id="m(\d+)"', follow_up)][-1]
    assert (await ended(reply)).content == "Follow-up answer."
    assert texts_sent(fake_upstream.requests[3]) == ["Question?", "Version one.", "And then?"]
    await client.aclose()

    conversation = await Conversation.objects.aget(pk=conversation_id)
    record = await sync_to_async(
        lambda: exports.conversation_record(
            exports.with_messages(Conversation.objects.filter(pk=conversation.pk)).get()
        )
    )()
    versions = [m for m in record["messages"] if m["parent_id"] == record["messages"][0]["id"]]
    assert [(m["content"], m["status"], m["version_number"]) for m in versions] == [
        ("Version one.", "complete", 1),
        ("Version two.", "complete", 2),
        ("", "error", 3),
    ]
    assert [m["selected"] for m in versions] == [True, False, False]
    json.dumps(record)  # the record is plain JSON


async def test_editing_the_first_turn_branches_and_the_old_branch_is_kept(
    start_server, fake_upstream, alice_session
):
    server = start_server()

    async def plan(request: FakeRequest):
        return await request.stream(reply_events([f"Answer {request.index}."]))

    fake_upstream.plan = plan
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    questions = []
    for question in ["One?", "Two?", "Three?"]:
        response = await client.send(conversation_id, question)
        ids = [int(i) for i in re.findall(r'<article id="m(\d+)"', response.text)]
        questions.append(ids[0])
        await ended(ids[1])
    old_branch = await shown(conversation_id)
    assert len(old_branch) == 6

    response = await post(client, conversation_id, f"{questions[0]}/edit/", content="One, again?")
    new_reply = last_article(response)
    assert (await ended(new_reply)).content == "Answer 3."
    # The new branch's request holds only the new path: no old answer, no later question.
    assert texts_sent(fake_upstream.requests[3]) == ["One, again?"]
    assert await shown(conversation_id) == [("user", "One, again?"), ("assistant", "Answer 3.")]

    response = await post(client, conversation_id, f"{questions[0]}/select/")
    assert "Version 1 of 2." in response.text
    assert await shown(conversation_id) == old_branch
    assert await Message.objects.filter(conversation_id=conversation_id).acount() == 8
    await client.aclose()


async def test_continue_on_a_version_no_longer_shown_is_refused(
    start_server, fake_upstream, alice_session
):
    """A tab that missed a Regenerate made in another still offers Continue on the old
    version: it was accepted, and the old version went on streaming where no page shows it."""
    server = start_server()
    answers = [(["Cut ", "short"], "length"), (["The second version."], "stop")]

    async def plan(request: FakeRequest):
        tokens, finish_reason = answers[request.index]
        return await request.stream(reply_events(tokens, finish_reason=finish_reason))

    fake_upstream.plan = plan
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    first = last_article(await client.send(conversation_id, "Question?"))
    assert (await ended(first)).finish_reason == "length"
    second = last_article(await post(client, conversation_id, f"{first}/retry/"))
    assert (await ended(second)).content == "The second version."

    refused = await client.continue_reply(conversation_id, first)  # the stale tab
    await client.aclose()
    assert refused.status_code == 409
    assert "Only the latest reply, cut short, can be continued." in refused.text
    assert (await Message.objects.aget(pk=first)).status == "complete"
    assert len(fake_upstream.requests) == 2
    assert await shown(conversation_id) == [
        ("user", "Question?"),
        ("assistant", "The second version."),
    ]
