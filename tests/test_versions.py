"""The message tree: versions of a turn, the chosen path, switching, and what the model is sent."""

from __future__ import annotations

import copy

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from chat import fragments, selectors, services
from chat.models import Conversation, Message
from chat.progressive import ProgressiveRenderer
from chat.streaming.coalescer import Frame
from chat.streaming.generation import ReplyRenderer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_worker(sent_to_worker) -> list[int]:
    return sent_to_worker


@pytest.fixture
def conversation(user) -> Conversation:
    return services.conversation_create(owner=user, system_prompt="Be brief.")


def answer(reply: Message, text: str) -> Message:
    Message.objects.filter(pk=reply.pk).update(status="complete", content=text)
    reply.refresh_from_db()
    return reply


def turn(conversation: Conversation, question: str, text: str) -> tuple[Message, Message]:
    user_message, reply = services.message_submit(conversation=conversation, content=question)
    return user_message, answer(reply, text)


def contents(messages: list[Message]) -> list[str]:
    return [m.content for m in messages]


def test_a_new_turn_follows_the_last_message_shown(conversation):
    first, first_reply = turn(conversation, "one", "1")
    second, _ = turn(conversation, "two", "2")
    assert (first.parent_id, first_reply.parent_id, second.parent_id) == (
        None,
        first.pk,
        first_reply.pk,
    )
    assert contents(selectors.active_path(conversation=conversation)) == ["one", "1", "two", "2"]


def test_versions_are_numbered_in_order_and_the_chosen_one_is_shown(conversation):
    question, v1 = turn(conversation, "q", "first")
    v2 = answer(services.reply_regenerate(reply=v1), "second")
    v3 = answer(services.reply_regenerate(reply=v2), "third")
    path = selectors.active_path(conversation=conversation)
    assert contents(path) == ["q", "third"]
    assert (path[1].version_number, path[1].version_count) == (3, 3)
    assert (path[1].previous_version_id, path[1].next_version_id) == (v2.pk, None)
    services.message_select(message=Message.objects.get(pk=v1.pk))
    path = selectors.active_path(conversation=conversation)
    assert contents(path) == ["q", "first"]
    assert (path[1].version_number, path[1].previous_version_id, path[1].next_version_id) == (
        1,
        None,
        v2.pk,
    )
    assert list(Message.objects.filter(parent=question).values_list("selected", flat=True)) == [
        True,
        False,
        False,
    ]
    assert v3.pk != v2.pk != v1.pk


def test_switching_an_earlier_turn_shows_the_versions_chosen_below_it(conversation):
    q1, a1 = turn(conversation, "q1", "a1")
    turn(conversation, "q2", "a2")
    edited, reply = services.message_edit(message=q1, content="q1 edited")
    answer(reply, "a1 edited")
    turn(conversation, "q2 on the new branch", "a2 new")
    assert contents(selectors.active_path(conversation=conversation)) == [
        "q1 edited",
        "a1 edited",
        "q2 on the new branch",
        "a2 new",
    ]
    services.message_select(message=q1)
    assert contents(selectors.active_path(conversation=conversation)) == ["q1", "a1", "q2", "a2"]
    services.message_select(message=edited)
    assert contents(selectors.active_path(conversation=conversation))[-1] == "a2 new"


def test_the_model_is_sent_the_branch_of_the_reply_only(conversation):
    q1, a1 = turn(conversation, "q1", "a1")
    turn(conversation, "q2", "a2")
    _, reply = services.message_edit(message=q1, content="q1 edited")
    sent = selectors.model_messages(conversation=conversation, before=reply)
    assert sent == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "q1 edited"},
    ]
    answer(reply, "a1 edited")
    services.message_select(message=q1)
    _, later = services.message_submit(conversation=conversation, content="q3")
    sent = selectors.model_messages(conversation=conversation, before=later)
    assert [m["content"] for m in sent] == ["Be brief.", "q1", "a1", "q2", "a2", "q3"]


def test_continue_needs_the_latest_reply_cut_short(conversation):
    _, reply = turn(conversation, "q", "cut")
    with pytest.raises(services.ReplyNotRetryable):
        services.reply_continue(reply=reply)  # it ended normally
    Message.objects.filter(pk=reply.pk).update(finish_reason="length")
    services.reply_continue(reply=reply)
    reply.refresh_from_db()
    assert (reply.status, reply.content) == ("pending", "cut")


def test_a_reply_interrupted_while_thinking_can_be_continued(conversation):
    """Interrupted (a worker died, a deploy) before its answer began, with its thinking kept:
    Continue was refused and not offered, so only Regenerate, a new version, was left."""
    _, reply = turn(conversation, "q", "")
    Message.objects.filter(pk=reply.pk).update(status="interrupted", reasoning="Let me see")
    reply.refresh_from_db()
    assert "continue-button" in fragments.article(reply)
    services.reply_continue(reply=reply)
    reply.refresh_from_db()
    assert (reply.status, reply.content, reply.reasoning) == ("pending", "", "Let me see")
    Message.objects.filter(pk=reply.pk).update(status="interrupted", reasoning="")
    reply.refresh_from_db()
    assert "continue-button" not in fragments.article(reply)  # nothing to go on from
    with pytest.raises(services.ReplyNotRetryable):
        services.reply_continue(reply=reply)


@pytest.mark.django_db(transaction=True)
def test_existing_conversations_become_one_path_of_single_versions(user):
    """Rows saved before messages had parents: each follows the one before it."""
    executor = MigrationExecutor(connection)
    executor.migrate([("chat", "0003_rendered_html")])
    old = executor.loader.project_state([("chat", "0003_rendered_html")]).apps
    OldConversation = old.get_model("chat", "Conversation")
    OldMessage = old.get_model("chat", "Message")
    conversations = [
        OldConversation.objects.create(owner_id=user.pk, model="m", title=f"c{i}") for i in range(2)
    ]
    for conversation in conversations:
        for role, content in [("user", "q1"), ("assistant", "a1"), ("user", "q2")]:
            OldMessage.objects.create(
                conversation_id=conversation.pk,
                role=role,
                content=f"{conversation.title} {content}",
                status="complete",
            )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    for old_conversation in conversations:
        conversation = Conversation.objects.get(pk=old_conversation.pk)
        path = selectors.active_path(conversation=conversation)
        title = conversation.title
        assert contents(path) == [f"{title} q1", f"{title} a1", f"{title} q2"]
        assert all(m.selected and m.version_count == 1 for m in path)
        assert path[0].parent_id is None and path[2].parent_id == path[1].pk


def test_selecting_a_message_on_a_hidden_branch_shows_that_branch(conversation):
    q1, _ = turn(conversation, "q1", "a1")
    _, old_a2 = turn(conversation, "q2", "a2")
    edited, reply = services.message_edit(message=q1, content="q1 edited")
    answer(reply, "a1 edited")
    # The old branch is hidden; its second answer is chosen directly (e.g. from a link).
    services.message_select(message=Message.objects.get(pk=old_a2.pk))
    assert contents(selectors.active_path(conversation=conversation)) == ["q1", "a1", "q2", "a2"]
    assert not Message.objects.get(pk=edited.pk).selected


def test_each_reply_keeps_the_system_prompt_it_was_made_with_and_is_sent_it(conversation):
    _, first = turn(conversation, "q1", "a1")
    services.conversation_configure(
        conversation=conversation, model=conversation.model, system_prompt="Answer in French."
    )
    _, second = services.message_submit(conversation=conversation, content="q2")
    assert (first.system_prompt, second.system_prompt) == ("Be brief.", "Answer in French.")
    # Changed again before the reply is generated: it is generated with the one it was made with.
    services.conversation_configure(
        conversation=conversation, model=conversation.model, system_prompt=""
    )
    sent = selectors.model_messages(conversation=conversation, before=second)
    assert sent[0] == {"role": "system", "content": "Answer in French."}
    answer(second, "a2")
    regenerated = services.reply_regenerate(reply=second)
    assert regenerated.system_prompt == ""
    assert (
        selectors.model_messages(conversation=conversation, before=regenerated)[0]["role"] == "user"
    )


@pytest.mark.django_db(transaction=True)
def test_replies_made_before_prompts_were_kept_get_their_conversations(user):
    executor = MigrationExecutor(connection)
    executor.migrate([("chat", "0004_message_tree")])
    old = executor.loader.project_state([("chat", "0004_message_tree")]).apps
    conversation = old.get_model("chat", "Conversation").objects.create(
        owner_id=user.pk, model="m", system_prompt="Be brief."
    )
    OldMessage = old.get_model("chat", "Message")
    question = OldMessage.objects.create(conversation_id=conversation.pk, role="user", content="q")
    reply = OldMessage.objects.create(
        conversation_id=conversation.pk, role="assistant", content="a", parent_id=question.pk
    )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert Message.objects.get(pk=reply.pk).system_prompt == "Be brief."
    assert Message.objects.get(pk=question.pk).system_prompt == ""


def test_the_model_messages_read_no_rendered_html(conversation):
    """The earlier turns go to the model as text: their rendered HTML (the largest field) is
    not read for every reply generated."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    turn(conversation, "q1", "a1")
    _, later = services.message_submit(conversation=conversation, content="q2")
    with CaptureQueriesContext(connection) as queries:
        sent = selectors.model_messages(conversation=conversation, before=later)
    assert [m["content"] for m in sent] == ["Be brief.", "q1", "a1", "q2"]
    assert not any("content_html" in q["sql"] for q in queries.captured_queries)


@pytest.mark.parametrize("compiled_up_to", [0, 2, 40])
def test_a_branch_is_read_the_same_compiled_or_not(conversation, monkeypatch, compiled_up_to):
    """A branch of up to selectors._COMPILED_PATH_LENGTH messages is read by a compiled query,
    a longer one by the ORM: the same messages, in order, with only the fields asked for."""
    monkeypatch.setattr(selectors, "_COMPILED_PATH_LENGTH", compiled_up_to)
    turn(conversation, "q1", "a1")
    first_reply = conversation.messages.get(content="a1")
    services.reply_regenerate(reply=first_reply)  # another version, off the branch below
    conversation.messages.filter(status="pending").update(status="complete", content="a1b")
    turn(conversation, "q2", "a2")
    _, later = services.message_submit(conversation=conversation, content="q3")
    path = selectors.path_to(message=later, fields=selectors.MODEL_MESSAGE_FIELDS)
    assert contents(path) == ["q1", "a1b", "q2", "a2", "q3"]
    assert all(m.get_deferred_fields() >= {"content_html", "reasoning"} for m in path)
    whole = selectors.path_to(message=later)
    assert contents(whole) == contents(path) and not whole[0].get_deferred_fields()
    assert selectors.path_to(message=conversation.messages.get(content="q1")) == []


def answered_by_tool(reply: Message, call_id: str, result: str) -> Message:
    """A tool's result for one of the reply's calls, and the reply that follows it."""
    tool = Message.objects.create(
        conversation=reply.conversation,
        parent=reply,
        role=Message.Role.TOOL,
        status=Message.Status.COMPLETE,
        tool_call_id=call_id,
        content=result,
    )
    return Message.objects.create(
        conversation=reply.conversation,
        parent=tool,
        role=Message.Role.ASSISTANT,
        status=Message.Status.PENDING,
    )


def test_tool_calls_that_nothing_answered_are_not_sent_to_the_model(conversation):
    """A reply whose tool round was never saved (the database refused it, or the worker was
    lost after the final save had saved the calls on their own) keeps calls with no results.
    Sent as they were, every turn after it failed: an assistant message's tool calls must each
    be answered by a tool message."""
    _, reply = turn(conversation, "what is 1+1?", "Let me calculate.")
    call = {"id": "c1", "name": "calculate", "arguments": '{"expression": "1+1"}'}
    Message.objects.filter(pk=reply.pk).update(tool_calls=[call])
    _, later = services.message_submit(conversation=conversation, content="and 2+2?")
    sent = selectors.model_messages(conversation=conversation, before=later)
    assert sent == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "what is 1+1?"},
        {"role": "assistant", "content": "Let me calculate."},
        {"role": "user", "content": "and 2+2?"},
    ]


def test_tool_calls_are_sent_with_their_results(conversation):
    _, reply = turn(conversation, "what is 1+1?", "")
    calls = [
        {"id": "c1", "name": "calculate", "arguments": '{"expression": "1+1"}'},
        {"id": "c2", "name": "calculate", "arguments": '{"expression": "2+2"}'},
    ]
    Message.objects.filter(pk=reply.pk).update(tool_calls=calls)
    next_reply = answered_by_tool(reply, "c1", '{"result": 2}')
    sent = selectors.model_messages(conversation=conversation, before=next_reply)
    assert sent[-2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [  # c2, never answered, is left out
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "calculate", "arguments": '{"expression": "1+1"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"result": 2}'},
    ]


def test_a_later_rounds_result_does_not_answer_an_earlier_call_with_the_same_id(conversation):
    """Some servers number their calls per reply ("call_0"), so an id comes back in a later
    round; only the results right after a reply answer its calls."""
    _, first = turn(conversation, "what is 1+1?", "Let me calculate.")
    call = {"id": "call_0", "name": "calculate", "arguments": '{"expression": "1+1"}'}
    Message.objects.filter(pk=first.pk).update(tool_calls=[call])  # its round never saved
    _, second = turn(conversation, "and 2+2?", "")
    Message.objects.filter(pk=second.pk).update(tool_calls=[call])
    next_reply = answered_by_tool(second, "call_0", '{"result": 4}')
    sent = selectors.model_messages(conversation=conversation, before=next_reply)
    assert [("tool_calls" in m, m["role"]) for m in sent] == [
        (False, "user"),
        (False, "assistant"),
        (False, "user"),
        (True, "assistant"),
        (False, "tool"),
    ]


def text_frame(text: str) -> Frame:
    return Frame(content_offset=0, content=text, reasoning_offset=0, reasoning="", tool_calls=None)


CUT = "First paragraph.\n\nSome **bold** words and\n"
HELD = '<div class="held-tail markdown"><p>Some <strong>bold</strong> words and</p></div>'


@pytest.mark.parametrize("claimed", [False, True])
def test_the_answer_to_continue_keeps_the_paragraph_the_reply_was_cut_at(
    conversation, alice_client, monkeypatch, claimed
):
    """The page's list after Continue draws the reply's open paragraph as it was shown, with
    the line break after it, also when a worker claimed the reply before the answer was
    drawn (it was drawn as text then, its markers showing)."""
    _, reply = turn(conversation, "q", CUT)
    Message.objects.filter(pk=reply.pk).update(finish_reason="length")
    continue_reply = services.reply_continue

    def continue_and_claim(*, reply: Message) -> Message:
        continued = continue_reply(reply=reply)
        if claimed:
            Message.objects.filter(pk=reply.pk).update(status=Message.Status.STREAMING)
        return continued

    monkeypatch.setattr(services, "reply_continue", continue_and_claim)
    response = alice_client.post(
        f"/c/{conversation.pk}/messages/{reply.pk}/continue/", HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert f'<div id="t{reply.pk}" class="streaming-tail">{HELD}\n</div>' in response.text


def test_a_continuation_holds_only_a_paragraph_and_keeps_the_white_space_after_it():
    """Text that continues a list, a table, a quote or a heading would land outside it: those
    tails are drawn as text, as before. What followed the paragraph (a line break) is kept, so
    the next words do not run into it."""
    renderer = ReplyRenderer(1, CUT, "")
    assert HELD + "\n" in renderer.snapshot()
    renderer.frame(text_frame("more words"))
    assert HELD + "\nmore words</div>" in renderer.snapshot()
    for text in ("- one\n- thr", "| a | b |\n| - | - |\n| 1 | 2", "> quoted and", "# Head"):
        assert "held-tail" not in ReplyRenderer(1, text, "").snapshot(), text


def test_drawing_a_held_paragraph_leaves_the_reply_s_link_references_alone():
    """The paragraph is rendered with a copy of the references read so far: a definition cut
    short in the tail (`[b]: /exa`) was added to them, and the first definition of a label is
    the one markdown keeps."""
    renderer = ProgressiveRenderer()
    renderer.feed("[a]: /first\n\nText\n\n[b]: /exa")
    before = copy.deepcopy(renderer._references)
    renderer.tail_rendered()
    assert renderer._references == before
    step = renderer.feed("mple\n\nUse [b].\n\nmore")
    assert 'href="/example"' in step.blocks_html, step.blocks_html
