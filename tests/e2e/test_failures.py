"""End to end: every way a stream can end, as the user sees it and as it is saved."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from chat.models import Message, SpentTokens
from tests.e2e import scenarios
from tests.fake_upstream import (
    FakeRequest,
    chunk,
    reply_events,
    sse,
    tool_call_events,
    usage_chunk,
)
from tests.live import (
    ChatClient,
    PageModel,
    read_until_finished,
    reply_id_from,
    shown,
    wait_for,
)
from tests.slow_tool import HeldTool

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


async def converse(server, session, content="hi"):
    """Open a conversation with a socket, send one message; returns what is needed to go on."""
    client = ChatClient(server, session)
    conversation_id = await client.create_conversation()
    ws = await client.socket(conversation_id).__aenter__()
    response = await client.send(conversation_id, content)
    assert response.status_code == 200, response.text
    return client, conversation_id, ws, reply_id_from(response)


async def ask_to_continue(client, conversation_id, reply_id) -> None:
    """Press Continue on a reply cut short, as a tab's htmx does."""
    response = await client.continue_reply(conversation_id, reply_id)
    assert response.status_code == 200, response.text


async def continued(client, ws, page, conversation_id, reply_id) -> None:
    """Press Continue, and read the reply on `page` until it ends again."""
    page.finished.clear()
    await ask_to_continue(client, conversation_id, reply_id)
    await read_until_finished(ws, page, reply_id)


async def finish(client, ws):
    await ws.close()
    await client.aclose()


async def test_429_is_retried_and_the_page_says_so(start_server, fake_upstream, alice_session):
    server = start_server()

    async def plan(request: FakeRequest):
        if request.index == 0:
            return await request.error(429, "Rate limit reached", headers={"retry-after-ms": "200"})
        return await request.stream(reply_events(["after ", "retry"]))

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session)
    page = await read_until_finished(ws, PageModel(), reply_id)
    await finish(client, ws)
    status_frames = [f for f in page.frames if f'id="s{reply_id}"' in f]
    said = [f for f in status_frames if "Rate limit reached" in f]
    assert "HTTP 429: Rate limit reached. Retrying in 0.2 s (attempt 2)." in said[0], said
    # As the wait ends: no longer a wait of 0.2 s (the next attempt may be slow to answer)
    assert "HTTP 429: Rate limit reached. Trying again (attempt 2)…" in said[1], said
    assert page.text(f"s{reply_id}") == ""  # the notice is cleared once the retry streams
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.content) == ("complete", "after retry")
    assert len(fake_upstream.requests) == 2


async def test_an_error_after_three_deltas_keeps_the_text_and_shows_the_error(
    start_server, fake_upstream, alice_session
):
    server = start_server()

    async def plan(request: FakeRequest):
        pieces = [
            sse(chunk("", role="assistant")),
            sse(chunk("one ")),
            sse(chunk("two ")),
            sse(chunk("three")),
            sse({"error": {"message": "Service Unavailable: overloaded", "code": 503}}),
        ]
        return await request.stream(pieces)

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session)
    page = await read_until_finished(ws, PageModel(), reply_id)
    await finish(client, ws)
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.content) == ("error", "one two three")
    assert "overloaded" in reply.error
    final = page.finished[reply_id]
    assert "one two three" in final and "Service Unavailable: overloaded" in final
    assert len(fake_upstream.requests) == 1  # nothing after the first delta is retried


async def test_a_cut_stream_is_saved_interrupted_and_retry_generates_it_again(
    start_server, fake_upstream, alice_session
):
    server = start_server()

    async def plan(request: FakeRequest):
        if request.index == 0:
            return await request.stream(reply_events(["kept ", "text ", "lost"]), cut_after=3)
        return await request.stream(reply_events(["second ", "try"]))

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session)
    page = await read_until_finished(ws, PageModel(), reply_id)
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.content) == ("interrupted", "kept text ")
    assert "Retry" in page.finished[reply_id] and "kept text" in page.finished[reply_id]

    response = await client.http.post(
        f"/c/{conversation_id}/messages/{reply_id}/retry/",
        headers={"X-CSRFToken": await client.csrf(), "HX-Request": "true"},
    )
    assert response.status_code == 200
    # The retry is a new version of the reply; the interrupted one is kept as it was.
    retried = int(re.findall(r'<article id="m(\d+)"', response.text)[-1])
    assert retried != reply_id
    await read_until_finished(ws, page, retried)
    await finish(client, ws)
    reply = await Message.objects.aget(pk=retried)
    assert (reply.status, reply.content) == ("complete", "second try")
    kept = await Message.objects.aget(pk=reply_id)
    assert (kept.status, kept.content, kept.selected) == ("interrupted", "kept text ", False)


async def test_a_stalled_stream_hits_the_idle_timeout_and_keeps_its_text(
    start_server, fake_upstream, alice_session
):
    server = start_server(CHAT_IDLE_TIMEOUT="0.5")

    async def plan(request: FakeRequest):
        async def stall(i: int) -> None:
            if i == 3:
                await asyncio.sleep(30)

        return await request.stream(reply_events(["before ", "the stall"]), before_piece=stall)

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session)
    page = await read_until_finished(ws, PageModel(), reply_id, timeout=20)
    await finish(client, ws)
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.content) == ("interrupted", "before the stall")
    assert "sent nothing for 0.5 seconds" in reply.error
    assert "sent nothing for 0.5 seconds" in page.finished[reply_id]


@pytest.mark.parametrize(
    "timeouts",
    [{"CHAT_IDLE_TIMEOUT": "0.5"}, {"CHAT_IDLE_TIMEOUT": "30", "CHAT_TOTAL_TIMEOUT": "1"}],
    ids=["idle", "total"],
)
async def test_a_reply_whose_server_goes_quiet_after_its_finish_reason_is_complete(
    start_server, fake_upstream, alice_session, timeouts
):
    """All the text and finish_reason "stop" came, then neither [DONE] nor a close: the reply
    is over (the stream's semantics), not cut at the idle or the total timeout with Continue
    offered."""
    server = start_server(**timeouts)

    async def plan(request: FakeRequest):
        async def quiet_before_done(i: int) -> None:
            if i == 5:  # role, two tokens, finish, usage; then [DONE] would come
                await asyncio.sleep(30)

        pieces = reply_events(["All of ", "it."], usage=(7, 2))
        return await request.stream(pieces, before_piece=quiet_before_done)

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session)
    page = await read_until_finished(ws, PageModel(), reply_id, timeout=20)
    await finish(client, ws)
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.content, reply.finish_reason) == ("complete", "All of it.", "stop")
    assert (reply.error, reply.prompt_tokens, reply.completion_tokens) == ("", 7, 2)
    assert "Continue" not in page.finished[reply_id]
    assert "sent nothing" not in page.finished[reply_id]


async def test_length_offers_continue_which_joins_the_rest_to_the_same_reply(
    start_server, fake_upstream, alice_session
):
    server = start_server()

    async def plan(request: FakeRequest):
        if request.index == 0:
            return await request.stream(
                reply_events(["The first", " half"], finish_reason="length", usage=(5, 2))
            )
        return await request.stream(reply_events([" and the", " second."], usage=(9, 2)))

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session)
    page = await read_until_finished(ws, PageModel(), reply_id)
    assert "cut at the token limit" in page.finished[reply_id]
    assert "Continue" in page.finished[reply_id]
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.finish_reason) == ("complete", "length")
    first = reply

    await continued(client, ws, page, conversation_id, reply_id)
    await finish(client, ws)
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.content == "The first half and the second."
    # Its times are both passes', as its tokens are (tokens a second over both)
    assert reply.time_to_first_token == first.time_to_first_token
    assert first.duration is not None and reply.duration is not None
    assert reply.duration > first.duration
    assert (reply.status, reply.finish_reason, reply.completion_tokens) == ("complete", "stop", 4)
    assert reply.prompt_tokens == 14  # both requests' prompts: the tokens a day count them
    assert not await SpentTokens.objects.aexists()  # a reply made today counts them itself
    continuation = fake_upstream.requests[1].body["messages"]
    assert continuation[-2] == {"role": "assistant", "content": "The first half"}
    assert continuation[-1]["role"] == "user" and "Continue" in continuation[-1]["content"]
    assert "The first half and the second." in page.finished[reply_id]


@pytest.mark.parametrize("refusal", ["status", "event"])
async def test_a_continue_the_model_server_refuses_keeps_the_reply_and_its_continue(
    start_server, fake_upstream, alice_session, refusal
):
    """The server refuses the continuation (overloaded: an HTTP status, or an error event
    after a 200) before anything new comes: the reply keeps its text, says why, and still
    offers Continue, which works the next time. It was saved as failed, and Continue was gone
    for good (only Retry, from scratch)."""
    server = start_server(CHAT_MAX_RETRIES="0")

    async def plan(request: FakeRequest):
        if request.index == 0:
            return await request.stream(reply_events(["The first half"], finish_reason="length"))
        if request.index == 1 and refusal == "status":
            return await request.error(503, "The server is overloaded")
        if request.index == 1:
            overloaded = {"error": {"message": "The server is overloaded", "code": 529}}
            return await request.stream([sse(overloaded)])
        return await request.stream(reply_events([" and the second."]))

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session)
    page = await read_until_finished(ws, PageModel(), reply_id)
    await continued(client, ws, page, conversation_id, reply_id)
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.content) == ("interrupted", "The first half")
    assert "overloaded" in reply.error and "overloaded" in page.finished[reply_id]
    assert "Continue" in page.finished[reply_id] and reply.stopped_early

    await continued(client, ws, page, conversation_id, reply_id)
    await finish(client, ws)
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.content) == ("complete", "The first half and the second.")
    assert reply.error == "" and "overloaded" not in page.finished[reply_id]


async def test_a_continue_the_model_server_refuses_for_good_is_a_failure_with_retry(
    start_server, fake_upstream, alice_session
):
    """Refused for good (a request too long for the model): Continue would fail the same way
    every time, so the reply is failed, with its text kept and Retry offered."""
    server = start_server(CHAT_MAX_RETRIES="0")

    async def plan(request: FakeRequest):
        if request.index == 0:
            return await request.stream(reply_events(["The first half"], finish_reason="length"))
        return await request.error(400, "The conversation is too long for the model")

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session)
    page = await read_until_finished(ws, PageModel(), reply_id)
    await continued(client, ws, page, conversation_id, reply_id)
    await finish(client, ws)
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.content) == ("error", "The first half")
    assert "too long for the model" in page.finished[reply_id] and not reply.stopped_early
    assert "Continue" not in page.finished[reply_id] and "Retry" in page.finished[reply_id]


async def test_a_continue_on_a_reply_made_yesterday_counts_toward_todays_tokens(
    start_server, fake_upstream, alice_session
):
    """The tokens a day count the replies made today: Continue on yesterday's reply cut short
    spent today's tokens outside them, and a user could go on without limit that way."""
    server = start_server(CHAT_LIMIT_TOKENS_PER_DAY="10")

    async def plan(request: FakeRequest):
        if request.index == 0:
            cut = reply_events(["The first half"], finish_reason="length", usage=(5, 2))
            return await request.stream(cut)
        return await request.stream(reply_events([" and the second."], usage=(9, 2)))

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session)
    page = await read_until_finished(ws, PageModel(), reply_id)
    yesterday = timezone.now() - timedelta(days=1)
    await Message.objects.filter(conversation_id=conversation_id).aupdate(created=yesterday)
    page.finished.clear()
    await ask_to_continue(client, conversation_id, reply_id)  # nothing spent today yet
    await read_until_finished(ws, page, reply_id)
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.prompt_tokens, reply.completion_tokens) == ("complete", 14, 4)
    refused = await client.send(conversation_id, "And then?")  # 9 + 2 spent today, of 10
    await finish(client, ws)
    assert refused.status_code == 429 and "10 tokens for today" in refused.text
    spent = await SpentTokens.objects.aget(user__username="alice", day=timezone.localdate())
    assert spent.tokens == 11


async def test_continue_asked_in_one_tab_streams_in_the_other(
    start_server, fake_upstream, alice_session
):
    """A tab that shows the reply finished gets it drawn streaming as the continuation starts,
    the paragraph it was cut at as it was shown. It had no open tail for the frames: it showed
    the reply without that paragraph, still cut at the token limit, until the end."""
    server = start_server()

    async def plan(request: FakeRequest):
        if request.index == 0:
            return await request.stream(
                reply_events(["Intro.\n\n", "Some **bold**", " words and"], finish_reason="length")
            )
        return await request.stream(reply_events([" then", " more."]), delay=0.05)

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session)
    page = await read_until_finished(ws, PageModel(), reply_id)
    async with client.socket(conversation_id) as other_ws:
        other = PageModel()  # a second tab, opened on the finished reply
        page.finished.clear()
        await ask_to_continue(client, conversation_id, reply_id)
        await read_until_finished(other_ws, other, reply_id)
        await read_until_finished(ws, page, reply_id)
    await finish(client, ws)
    started = [f for f in other.frames if f'<article id="m{reply_id}"' in f]
    assert started, other.frames
    assert (
        '<div class="held-tail markdown"><p>Some <strong>bold</strong> words and</p>'
        in (started[0])
    )
    assert "cut at the token limit" not in started[0]
    saved = await Message.objects.aget(pk=reply_id)
    assert saved.content == "Intro.\n\nSome **bold** words and then more."
    for tab in (page, other):
        assert "Some <strong>bold</strong> words and then more." in tab.finished[reply_id]
        assert tab.content(reply_id) == shown(saved.content)


async def test_a_tab_whose_socket_opens_after_a_continue_started_gets_the_reply_streaming(
    start_server, fake_upstream, alice_session
):
    """A tab that loaded before Continue, its socket down as the continuation started, shows
    the reply finished, cut short: on reconnecting it gets the reply drawn streaming, then a
    snapshot. It got only the snapshot, which had no open tail to go into: the paragraph the
    reply was cut at was missing, and it still said "cut at the token limit", until the end."""
    server = start_server()
    streaming, here = asyncio.Event(), asyncio.get_running_loop()

    async def plan(request: FakeRequest):
        if request.index == 0:
            return await request.stream(
                reply_events(["Intro.\n\n", "Some **bold**", " words and"], finish_reason="length")
            )

        async def started(i: int) -> None:
            if i == 3:
                here.call_soon_threadsafe(streaming.set)

        return await request.stream(
            reply_events([" then", " more", " and", " more."]), delay=0.3, before_piece=started
        )

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session)
    page = await read_until_finished(ws, PageModel(), reply_id)
    page.finished.clear()
    await ask_to_continue(client, conversation_id, reply_id)
    await asyncio.wait_for(streaming.wait(), 10)
    async with client.socket(conversation_id) as reconnected:
        tab = PageModel()  # the tab whose socket was down: it shows the reply cut short
        await read_until_finished(reconnected, tab, reply_id)
        await read_until_finished(ws, page, reply_id)
    await finish(client, ws)
    drawn = [f for f in tab.frames if f'<article id="m{reply_id}"' in f]
    assert drawn and tab.frames.index(drawn[0]) == 0, tab.frames
    assert '<div class="held-tail markdown"><p>Some <strong>bold</strong> words and' in drawn[0]
    assert "cut at the token limit" not in drawn[0]
    saved = await Message.objects.aget(pk=reply_id)
    assert saved.content == "Intro.\n\nSome **bold** words and then more and more."
    assert tab.content(reply_id) == shown(saved.content)


async def test_continue_after_a_reply_cut_while_thinking_keeps_the_thinking(
    start_server, fake_upstream, alice_session
):
    """A reply cut at the token limit before it answered: Continue asks again, and the new
    thinking follows the old one after a paragraph break, in the saved reply and in every
    tab. The old thinking was dropped from the saved reply, and a tab that showed the reply
    finished ran the two together."""
    server = start_server()

    def thinking(words):
        return [sse(chunk(reasoning_content=word)) for word in words]

    async def plan(request: FakeRequest):
        first, *rest = reply_events(["The answer."])
        if request.index == 0:
            ended = reply_events([], finish_reason="length", usage=(11, 2))
            return await request.stream([first, *thinking(["Let me", " think"]), *ended[1:]])
        return await request.stream([first, *thinking(["Once", " more."]), *rest], delay=0.05)

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session)
    page = await read_until_finished(ws, PageModel(), reply_id)
    assert "Continue" in page.finished[reply_id]
    async with client.socket(conversation_id) as other_ws:
        other = PageModel()  # a second tab, opened on the reply cut short
        page.finished.clear()
        await ask_to_continue(client, conversation_id, reply_id)
        await read_until_finished(other_ws, other, reply_id)
        await read_until_finished(ws, page, reply_id)
    await finish(client, ws)
    saved = await Message.objects.aget(pk=reply_id)
    assert (saved.reasoning, saved.content) == ("Let me think\n\nOnce more.", "The answer.")
    assert (saved.prompt_tokens, saved.completion_tokens) == (22, 3)  # both passes
    assert "assistant" not in [m["role"] for m in fake_upstream.requests[1].body["messages"]]
    for tab in (page, other):
        assert tab.reasoning(reply_id) == shown(saved.reasoning)
        assert tab.content(reply_id) == shown(saved.content)
        assert "cut at the token limit" not in tab.finished[reply_id]


async def saved_reply(server, session, fake_upstream, pieces) -> tuple[Message, str]:
    """The reply to one message whose stream is `pieces`: as saved, and as its page shows
    it finished."""

    async def plan(request: FakeRequest):
        return await request.stream(pieces)

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, session)
    page = await read_until_finished(ws, PageModel(), reply_id)
    await finish(client, ws)
    return await Message.objects.aget(pk=reply_id), page.finished[reply_id]


@pytest.mark.parametrize("usage", [(-1, 3), (7, 2**40)])
async def test_token_counts_no_column_holds_do_not_cost_the_reply(
    start_server, fake_upstream, alice_session, usage
):
    """A model that reports a negative token count, or more than the column holds, made the
    final save fail: the text after the last checkpoint was lost."""
    pieces = reply_events(["Every", " word", " kept."], usage=usage)
    reply, shown_html = await saved_reply(start_server(), alice_session, fake_upstream, pieces)
    assert (reply.status, reply.content) == ("complete", "Every word kept.")
    assert "Every word kept." in shown_html
    valid = [count if 0 <= count < 2**31 else None for count in usage]
    assert [reply.prompt_tokens, reply.completion_tokens] == valid


async def test_a_model_name_or_finish_reason_longer_than_its_column_does_not_cost_the_reply(
    start_server, fake_upstream, alice_session
):
    """The model's own name and finish reason are stored in columns of 200 and 64
    characters: longer ones (PostgreSQL refuses them) made the final save fail and lost the
    text since the last checkpoint. They are cut to fit."""
    name, reason = "m" * 300, "r" * 100
    events = [
        json.loads(piece.decode().removeprefix("data: "))
        for piece in reply_events(["Every", " word", " kept."], finish_reason=reason)[:-1]
    ]
    pieces = [sse({**event, "model": name}) for event in events] + [b"data: [DONE]\n\n"]
    reply, shown_html = await saved_reply(start_server(), alice_session, fake_upstream, pieces)
    assert (reply.status, reply.content) == ("complete", "Every word kept.")
    assert (reply.model, reply.finish_reason) == (name[:200], reason[:64])
    assert "Every word kept." in shown_html


@pytest.mark.parametrize(
    "odd",
    [
        "\u0000",  # NUL: PostgreSQL refused it, in the checkpoints and in the final save
        "\ud83d",  # half a character (escaped in the JSON): nothing could encode it, not even
        # the page's socket, which closed
    ],
)
async def test_a_character_no_database_takes_does_not_cost_the_reply(
    start_server, fake_upstream, alice_session, odd
):
    """The reply's text was lost (it ended interrupted, with none). It is kept as the page
    shows it: U+FFFD, as markdown-it draws a NUL."""
    pieces = reply_events(["Before", " " + odd, " after."])
    reply, shown_html = await saved_reply(start_server(), alice_session, fake_upstream, pieces)
    assert (reply.status, reply.content) == ("complete", "Before \ufffd after.")
    assert "Before \ufffd after." in shown_html


async def test_stop_cancels_within_a_second_and_closes_the_upstream_connection(
    start_server, fake_upstream, alice_session
):
    server = start_server()
    tokens = [f"t{i} " for i in range(200)]

    async def plan(request: FakeRequest):
        return await request.stream(reply_events(tokens), delay=0.05)

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session)
    page = PageModel()
    while len(page.content(reply_id)) < 9:
        page.apply(await asyncio.wait_for(ws.recv(), 10))
    stopped_at = asyncio.get_running_loop().time()
    assert (await client.stop(conversation_id, reply_id)).status_code == 204
    await read_until_finished(ws, page, reply_id, timeout=5)
    took = asyncio.get_running_loop().time() - stopped_at
    await finish(client, ws)
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.status == "cancelled"
    assert took < 1.0
    assert 9 <= len(reply.content) < len("".join(tokens))
    assert "".join(tokens).startswith(reply.content)
    # The upstream saw the client go away instead of streaming all 200 tokens.
    for _ in range(50):
        if fake_upstream.requests[0].disconnected:
            break
        await asyncio.sleep(0.05)
    assert fake_upstream.requests[0].disconnected
    assert not fake_upstream.requests[0].finished


# Some servers make ids hundreds of characters long (LiteLLM puts Gemini's thought signatures
# in them): the tool's result must go back with the whole id, or the model server refuses it.
@pytest.mark.parametrize("call_id", ["call_1", "call_" + "s" * 400])
async def test_a_tool_call_runs_on_the_server_and_the_follow_up_reply_streams(
    start_server, fake_upstream, alice_session, call_id
):
    server = start_server(CHAT_TOOLS_ENABLED="true")

    async def plan(request: FakeRequest):
        if request.index == 0:
            call = {
                "index": 0,
                "id": call_id,
                "type": "function",
                "function": {"name": "calculate", "arguments": ""},
            }
            pieces = [sse(chunk(role="assistant", tool_calls=[call]))]
            for part in ['{"expr', 'ession": ', '"6 * 7"}']:
                pieces.append(
                    sse(chunk(tool_calls=[{"index": 0, "function": {"arguments": part}}]))
                )
            pieces += [sse(chunk(finish_reason="tool_calls")), b"data: [DONE]\n\n"]
            return await request.stream(pieces)
        return await request.stream(reply_events(["The answer ", "is 42."]))

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session, "What is 6*7?")
    page = await read_until_finished(ws, PageModel(), reply_id)
    messages = [
        m async for m in Message.objects.filter(conversation_id=conversation_id).order_by("id")
    ]
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant"]
    tool_reply, tool_result, answer = messages[1:]
    assert tool_reply.tool_calls == [
        {"id": call_id, "name": "calculate", "arguments": '{"expression": "6 * 7"}'}
    ]
    assert tool_reply.finish_reason == "tool_calls"
    assert json.loads(tool_result.content) == {"result": 42}
    assert tool_result.tool_call_id == call_id
    await read_until_finished(ws, page, answer.pk)
    await finish(client, ws)
    # While the tool ran, the reply's status line said so (the browser test checks that the
    # finished reply's footer takes its place).
    assert any(f'id="s{reply_id}"' in f and "Running calculate…" in f for f in page.frames)
    answer = await Message.objects.aget(pk=answer.pk)
    assert (answer.status, answer.content) == ("complete", "The answer is 42.")
    assert "calculate" in page.finished[reply_id]  # the tool card
    # The tool round's messages name the reply they follow (a tab that shows another loads
    # again).
    assert any(
        f'id="m{tool_result.pk}"' in f
        and f'hx-swap-oob="beforeend:#messages" data-after="{tool_reply.pk}"' in f
        for f in page.frames
    )
    first, second = fake_upstream.requests
    assert {t["function"]["name"] for t in first.body["tools"]} >= {"calculate", "current_datetime"}
    assert second.body["messages"][-2]["tool_calls"][0]["function"]["name"] == "calculate"
    assert second.body["messages"][-2]["tool_calls"][0]["id"] == call_id
    assert second.body["messages"][-1] == {
        "role": "tool",
        "tool_call_id": call_id,
        "content": tool_result.content,
    }


async def test_stop_while_a_tool_runs_ends_the_turn_there(
    start_server, fake_upstream, alice_session, tmp_path
):
    """Stop pressed while the reply's tool runs ends the turn at once, not when the tool is
    done: the reply is saved cancelled with its text and its call, and no follow-up reply is
    made. (tests/test_turn_stops.py stops turns at each point of the tool round.)"""
    tool = HeldTool(tmp_path)
    server = start_server(**tool.env())
    scenarios.slow_tool_plan(fake_upstream, calls=1)
    client, conversation_id, ws, reply_id = await converse(server, alice_session, "look it up")

    def tool_says(line: str):
        async def holds() -> bool:
            return tool.said(line)

        return holds

    await wait_for(tool_says("started"), timeout=10)
    async with client.socket(conversation_id) as late:  # a tab that opens now is told too
        await late.send(f'{{"resync": {reply_id}}}')
        snapshot = ""
        while f'id="s{reply_id}"' not in snapshot:
            snapshot = await asyncio.wait_for(late.recv(), 10)
        assert "Running slow_lookup…" in snapshot
    assert (await client.stop(conversation_id, reply_id)).status_code == 204
    page = await read_until_finished(ws, PageModel(), reply_id)
    assert not tool.said("ended")  # the turn ended while the tool ran
    assert any(f'id="s{reply_id}"' in f and "Running slow_lookup…" in f for f in page.frames)
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.content) == ("cancelled", "Looking it up.")
    assert [call["name"] for call in reply.tool_calls] == ["slow_lookup"]
    assert "slow_lookup" in page.finished[reply_id]  # the call's card stays
    tool.release()
    await wait_for(tool_says("ended"), timeout=10)
    await asyncio.sleep(0.5)  # what the tool's end could still have set off
    await finish(client, ws)
    messages = [
        (m.role, m.status)
        async for m in Message.objects.filter(conversation_id=conversation_id).order_by("id")
    ]
    assert messages == [("user", "complete"), ("assistant", "cancelled")]
    assert len(fake_upstream.requests) == 1


async def test_stop_sent_for_a_reply_whose_tool_round_just_ended_stops_the_follow_up(
    start_server, fake_upstream, alice_session
):
    """The tab sends Stop for the reply it shows streaming; when the click and the end of
    the tool round cross, that reply is done and the follow-up streams: Stop stops it."""
    server = start_server(CHAT_TOOLS_ENABLED="true", CHAT_TEST_SLOW_TOOL_SECONDS="0")
    answer = [f"word{i} " for i in range(100)]
    scenarios.slow_tool_plan(fake_upstream, calls=1, answer=answer, delay=0.05)
    client, conversation_id, ws, reply_id = await converse(server, alice_session, "look it up")

    async def follow_up_streaming() -> bool:
        return await Message.objects.filter(
            conversation_id=conversation_id, role="assistant", pk__gt=reply_id, status="streaming"
        ).aexists()

    await wait_for(follow_up_streaming, timeout=10)
    assert (await Message.objects.aget(pk=reply_id)).status == "complete"
    assert (await client.stop(conversation_id, reply_id)).status_code == 204
    follow_up = await Message.objects.filter(conversation_id=conversation_id).alatest("id")
    await read_until_finished(ws, PageModel(), follow_up.pk)
    await finish(client, ws)
    follow_up = await Message.objects.aget(pk=follow_up.pk)
    assert follow_up.status == "cancelled"
    assert "".join(answer).startswith(follow_up.content) and follow_up.content != "".join(answer)
    if len(fake_upstream.requests) > 1:  # the Stop may even come before the model is asked
        asked = fake_upstream.requests[1]
        assert asked.disconnected and not asked.finished
    assert (await Message.objects.aget(pk=reply_id)).status == "complete"


async def test_reasoning_streams_into_thinking_and_usage_is_shown(
    start_server, fake_upstream, alice_session
):
    server = start_server()

    async def plan(request: FakeRequest):
        pieces = [
            sse(chunk(role="assistant", reasoning_content="Let me think.")),
            sse(chunk(reasoning_content=" Done thinking.")),
            sse(chunk("The answer.")),
            sse(chunk(finish_reason="stop")),
            sse(usage_chunk(120, 30)),
            b"data: [DONE]\n\n",
        ]
        return await request.stream(pieces, delay=0.01)

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session)
    page = await read_until_finished(ws, PageModel(), reply_id)
    await finish(client, ws)
    assert page.reasoning(reply_id) == shown("Let me think. Done thinking.")
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.reasoning, reply.content) == ("Let me think. Done thinking.", "The answer.")
    final = page.finished[reply_id]
    assert "Thinking" in final and "Let me think. Done thinking." in final
    assert "120 / 30 tokens" in final and "first token" in final


async def test_tool_rounds_are_bounded_and_an_unknown_tool_gets_an_error_result(
    start_server, fake_upstream, alice_session
):
    server = start_server(CHAT_TOOLS_ENABLED="true", CHAT_MAX_TOOL_ROUNDS="2")

    async def plan(request: FakeRequest):
        if "tools" not in request.body:
            return await request.stream(reply_events(["Giving up on tools."]))
        return await request.stream(tool_call_events(f"call_{request.index}", "launch_rockets"))

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session)

    async def answered() -> bool:
        last = (
            await Message.objects.filter(conversation_id=conversation_id).order_by("-id").afirst()
        )
        return (
            last is not None and last.status == "complete" and last.content == "Giving up on tools."
        )

    await wait_for(answered, timeout=20)
    page = await read_until_finished(ws, PageModel(), reply_id)
    await finish(client, ws)
    # The status line names only the server's own tools, not what the model calls.
    status = [f for f in page.frames if f'id="s{reply_id}"' in f and "Running" in f]
    assert status and all("Running an unknown tool…" in f for f in status)
    roles = [
        m.role async for m in Message.objects.filter(conversation_id=conversation_id).order_by("id")
    ]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    results = [
        m.content
        async for m in Message.objects.filter(conversation_id=conversation_id, role="tool")
    ]
    assert all("Unknown tool 'launch_rockets'" in r for r in results)
    assert ["tools" in r.body for r in fake_upstream.requests] == [True, True, False]


async def test_a_refusal_streams_and_is_saved_like_any_answer(
    start_server, fake_upstream, alice_session
):
    server = start_server()

    async def plan(request: FakeRequest):
        pieces = [
            sse(chunk(role="assistant", refusal="")),
            sse(chunk(refusal="I can't ")),
            sse(chunk(refusal="help with that.")),
            sse(chunk(finish_reason="stop")),
            b"data: [DONE]\n\n",
        ]
        return await request.stream(pieces)

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session)
    page = await read_until_finished(ws, PageModel(), reply_id)
    await finish(client, ws)
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.content) == ("complete", "I can't help with that.")
    assert page.content(reply_id) == shown(reply.content)


@pytest.mark.parametrize(
    ("finish_reason", "said"),
    [
        ("stop", "The model sent an empty reply."),
        ("content_filter", "The model server's content filter stopped the reply before it began."),
        ("length", "The model reached its token limit before writing anything."),
    ],
)
async def test_a_reply_with_nothing_in_it_is_a_failure_with_retry_not_a_blank_answer(
    start_server, fake_upstream, alice_session, finish_reason, said
):
    server = start_server()

    async def plan(request: FakeRequest):
        if request.index == 0:
            pieces = [
                sse(chunk("", role="assistant")),
                sse(chunk(finish_reason=finish_reason)),
                sse(usage_chunk(20, 0)),
                b"data: [DONE]\n\n",
            ]
            return await request.stream(pieces)
        return await request.stream(reply_events(["second ", "try"]))

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session)
    page = await read_until_finished(ws, PageModel(), reply_id)
    reply = await Message.objects.aget(pk=reply_id)
    assert (reply.status, reply.content, reply.error) == ("error", "", said)
    assert (reply.prompt_tokens, reply.completion_tokens) == (20, 0)
    final = page.finished[reply_id]
    assert said.replace("'", "&#x27;") in final and "Retry" in final
    assert "20 / 0 tokens" in final  # none written is a count, not an unknown

    response = await client.http.post(
        f"/c/{conversation_id}/messages/{reply_id}/retry/",
        headers={"X-CSRFToken": await client.csrf(), "HX-Request": "true"},
    )
    assert response.status_code == 200
    retried = int(re.findall(r'<article id="m(\d+)"', response.text)[-1])
    await read_until_finished(ws, page, retried)
    await finish(client, ws)
    assert (await Message.objects.aget(pk=retried)).content == "second try"


async def test_a_new_reply_says_it_waits_for_the_model_until_its_first_text(
    start_server, fake_upstream, alice_session
):
    """A slow first token (a model loading, a queue, a long think not streamed): the status
    line says so from the reply's start until its first text, not only until the server takes
    the reply up (which left a bare cursor for as long as the model took)."""
    server = start_server()

    async def plan(request: FakeRequest):
        async def before_piece(i: int) -> None:
            if i == 1:  # after the role chunk, before the first token
                await asyncio.sleep(1.0)

        return await request.stream(reply_events(["first", " words"]), before_piece=before_piece)

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session)
    page = PageModel()
    # The status line, as the reply's article draws it and as its own updates change it
    line = re.compile(rf'<div id="s{reply_id}"[^>]*>([^<]*)</div>')
    said: list[tuple[float, str]] = []  # (when, what the status line says) after each frame
    text_at, saying = None, ""
    async with asyncio.timeout(30):
        while reply_id not in page.finished:
            frame = await ws.recv()
            page.apply(frame)
            now = asyncio.get_running_loop().time()
            if lines := line.findall(frame):
                saying = lines[-1]
            if text_at is None and "first" in page.content(reply_id):
                text_at = now
            if text_at is None:
                said.append((now, saying))
    await finish(client, ws)
    assert text_at is not None
    # Half a second before the first text came, the line said it waited (it was cleared
    # as the server took the reply up, a moment after the message was sent)
    during = [text for when, text in said if when < text_at - 0.5]
    assert during and during[-1] == "Waiting for the model…", said
    assert page.content(reply_id) == shown("first words")


@pytest.mark.parametrize(
    "first",
    ["-", "Use `", "\n\n"],
    ids=["an item's marker", "an open code span", "line ends alone"],
)
async def test_the_status_line_goes_as_the_first_text_shows_not_before(
    start_server, fake_upstream, alice_session, first
):
    """The line said "Waiting for the model…" until the first token came, then went at once,
    while the text came with the next frame (a coalescing window later: the reply's height
    fell by the line's, then grew, a jump found by a walk-through), or later still when the
    renderer held what came (an item's "-" until its first word): a bare cursor, 1 s here.
    It goes with the frame that first shows something: a first token of line ends alone
    draws nothing, and the line went with it, a coalescing window before the text."""
    server = start_server()

    async def plan(request: FakeRequest):
        async def before_piece(i: int) -> None:
            if i == 2:  # after the first token, before the second
                await asyncio.sleep(1.0)

        return await request.stream(
            reply_events([first, " words", " and more"]), before_piece=before_piece
        )

    fake_upstream.plan = plan
    client, conversation_id, ws, reply_id = await converse(server, alice_session)
    page = PageModel()
    line = re.compile(rf'<div id="s{reply_id}"[^>]*>([^<]*)</div>')
    saying = "Waiting for the model…"  # as the page draws the reply
    before_text: list[str] = []  # what the line said after each frame before any text
    async with asyncio.timeout(30):
        while reply_id not in page.finished:
            frame = await ws.recv()
            page.apply(frame)
            if lines := line.findall(frame):
                saying = lines[-1]
            if page.content(reply_id):
                break
            before_text.append(saying)
    assert saying == "", saying  # gone with the first text
    assert "" not in before_text, before_text
    await read_until_finished(ws, page, reply_id)
    await finish(client, ws)
