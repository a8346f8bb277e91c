"""Conversation features in a real browser: titles, rename, delete, regenerate, edit and
resend, and feedback that reviewers see in the admin transcript."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import expect

from chat.models import Conversation, Message
from chat.titles import TITLE_PROMPT
from tests.browser.pages import SCHEMES, SIZES, axe_problems, check_looks
from tests.browser.support import BROWSER_MARKS, ChatPage, Gate, another_tab, eventually
from tests.fake_upstream import FakeRequest, reply_events

pytestmark = BROWSER_MARKS


def conversation_id_of(url: str) -> str:
    match = re.search(r"/c/([0-9a-f-]{36})/", url)
    assert match, url
    return match.group(1)


def answers(*texts: str, delay: float = 0.02):
    """A plan answering request N with texts[N] (the last one for any later request)."""

    async def plan(request: FakeRequest):
        if request.body["messages"][0] == {"role": "system", "content": TITLE_PROMPT}:
            return await request.stream(reply_events(["Packing for ", "Lisbon"]))
        text = texts[min(request.index, len(texts) - 1)]
        return await request.stream(reply_events(re.findall(r"\S+\s*", text)), delay=delay)

    return plan


async def test_the_sidebar_shows_the_first_words_then_the_title_the_model_wrote(
    page, server_factory, fake_upstream
):
    server = server_factory(CHAT_GENERATE_TITLES="true")
    fake_upstream.plan = answers("Light layers and an umbrella.", delay=0.2)
    chat = ChatPage(page, server)
    url = await chat.new_conversation()
    link = page.locator(f"#conv-link-{conversation_id_of(url)}")
    await expect(link).to_have_text("New conversation")
    reply_id = await chat.send("what should I pack for lisbon in march")
    await expect(link).to_have_text(re.compile("what should I pack"))
    await chat.wait_finished(reply_id)
    await expect(link).to_have_text("Packing for Lisbon")
    await expect(page.locator("#conversation-title")).to_have_text("Packing for Lisbon")


async def test_rename_and_delete_a_conversation(page, watch, server, fake_upstream):
    fake_upstream.plan = answers("Fine.")
    chat = ChatPage(page, server)
    url = await chat.new_conversation()
    conversation_id = conversation_id_of(url)
    await chat.wait_finished(await chat.send("hello"))

    # A blank title is refused beside the title, in the menu (it was said under the message
    # box, as if the message were missing, and stayed there once the menu closed).
    await page.locator(".conversation-menu summary").click()
    await page.get_by_label("Title").fill("   ")
    await page.get_by_role("button", name="Rename").click()
    refusal = page.locator(".conversation-menu .rename-form + .action-error")
    await expect(refusal).to_have_text("This field is required.")
    await expect(page.locator("#composer-error")).to_be_hidden()
    assert all("422" in e or "htmx" in e for e in watch.console_errors), watch.console_errors
    watch.console_errors.clear()  # the browser and htmx log the refusal (422)

    await page.get_by_label("Title").fill("Holiday plans")
    await page.get_by_role("button", name="Rename").click()
    await expect(page.locator("#conversation-title")).to_have_text("Holiday plans")
    await expect(refusal).to_have_count(0)
    await expect(page.locator(f"#conv-link-{conversation_id}")).to_have_text("Holiday plans")
    await page.reload()
    await expect(page.locator("#conversation-title")).to_have_text("Holiday plans")

    watch.accept_dialogs = True
    await page.locator(".conversation-menu summary").click()
    await page.get_by_role("button", name="Delete conversation").click()
    await page.wait_for_url(server.url + "/")
    assert watch.accepted_dialogs and "cannot be undone" in watch.accepted_dialogs[0]
    await expect(page.get_by_text("Holiday plans")).to_have_count(0)
    assert not await Conversation.objects.filter(pk=conversation_id).aexists()
    assert not await Message.objects.filter(conversation_id=conversation_id).aexists()
    # Back asks for the page again: it is gone (it showed as drawn before, "Reconnecting…")
    await page.go_back()
    await expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    watch.console_errors.clear()  # (the browser logs the 404)


async def test_a_message_sent_from_a_page_that_back_showed_again_is_not_lost(
    page, server, fake_upstream, watch
):
    """Found by a walk-through: Back showed the conversation's page as it was first drawn,
    its message box's idempotency key the one the next message had been sent with; the
    message sent from it was taken for that one, and lost without a word."""
    fake_upstream.plan = answers("First answer.", "Second answer.")
    chat = ChatPage(page, server)
    url = await chat.new_conversation()
    await chat.wait_finished(await chat.send("the first message"))
    await page.goto(server.url + "/")
    await page.go_back()
    await page.wait_for_url(url)
    await expect(page.locator("#messages article.user")).to_have_count(1)  # (as it is now)
    await chat.wait_for_socket()
    second = await chat.send("the second message")
    await chat.wait_finished(second)
    sent = Message.objects.filter(role="user").order_by("id").values_list("content", flat=True)
    assert [text async for text in sent] == ["the first message", "the second message"]
    assert watch.console_errors == []


async def test_regenerate_streams_a_new_version_in_place_of_the_last(page, server, fake_upstream):
    fake_upstream.plan = answers("The first answer.", "A better second answer.")
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("question")
    await chat.wait_finished(reply_id)
    await expect(chat.reply(reply_id).locator(".content")).to_have_text("The first answer.")

    await chat.reply(reply_id).get_by_role("button", name="Regenerate").click()
    replies = page.locator("#messages article.assistant")
    await expect(replies).to_have_count(1)
    await expect(replies).not_to_have_attribute("id", f"m{reply_id}")
    new_id = int((await replies.get_attribute("id") or "")[1:])
    await chat.wait_finished(new_id)
    await expect(chat.reply(new_id).locator(".content")).to_have_text("A better second answer.")
    await expect(chat.reply(new_id).locator(".versions")).to_contain_text("version 2 of 2")
    assert (await Message.objects.aget(pk=new_id)).content == "A better second answer."
    assert (await Message.objects.aget(pk=reply_id)).content == "The first answer."


async def test_edit_the_last_message_and_resend_shows_the_new_branch(page, server, fake_upstream):
    fake_upstream.plan = answers("Answer to the typo.", "Answer to the fixed question.")
    chat = ChatPage(page, server)
    await chat.new_conversation()
    old_reply = await chat.send("waht is 2+2")
    await chat.wait_finished(old_reply)

    user = page.locator("#messages article.user")
    await user.get_by_role("button", name="Edit").click()
    await user.get_by_label("Edit your message").fill("what is 2+2")
    await user.get_by_role("button", name="Save and send").click()

    await expect(page.locator(f"#m{old_reply}")).to_have_count(0)
    replies = page.locator("#messages article.assistant")
    await expect(replies).to_have_count(1)
    new_reply = int((await replies.get_attribute("id") or "")[1:])
    await chat.wait_finished(new_reply)
    await expect(user.locator(".content")).to_have_text("what is 2+2")
    await expect(chat.reply(new_reply).locator(".content")).to_have_text(
        "Answer to the fixed question."
    )
    assert fake_upstream.requests[-1].body["messages"][-1]["content"] == "what is 2+2"


@pytest.mark.parametrize("keys", ["Control+Enter", "Meta+Enter"])
async def test_ctrl_enter_saves_an_edit_and_enter_is_a_new_line(page, server, fake_upstream, keys):
    """The edit box had no key to save with (Enter is a new line there): Ctrl+Enter, or
    Command+Enter on a Mac, saves and sends it; an empty one is not sent."""
    fake_upstream.plan = answers("Answer to the first.", "Answer to the edit.")
    chat = ChatPage(page, server)
    await chat.new_conversation()
    old_reply = await chat.send("first")
    await chat.wait_finished(old_reply)
    user = page.locator("#messages article.user")
    box = user.get_by_label("Edit your message")
    await user.get_by_role("button", name="Edit").click()
    await box.fill("")
    await box.press(keys)
    await expect(box).to_be_visible()
    await expect(page.locator(f"#m{old_reply}")).to_have_count(1)
    await box.type("second")
    await box.press("Enter")
    await box.type("line")
    await expect(box).to_have_value("second\nline")
    await box.press(keys)
    await expect(page.locator(f"#m{old_reply}")).to_have_count(0)
    replies = page.locator("#messages article.assistant")
    await expect(replies).to_have_count(1)
    await chat.wait_finished(int((await replies.get_attribute("id") or "")[1:]))
    await expect(user.locator(".content")).to_contain_text("second")
    assert fake_upstream.requests[-1].body["messages"][-1]["content"] == "second\nline"


async def test_a_message_and_a_system_prompt_that_begin_with_a_new_line_keep_it_in_their_boxes(
    page, server, fake_upstream
):
    """HTML drops a newline right after a <textarea> tag: the edit box and the system prompt
    box lost the one their text began with, and saving them again dropped it."""
    chat = ChatPage(page, server)
    url = await chat.new_conversation()
    text = "\n    indented code"
    reply_id = await chat.send(text)
    await chat.wait_finished(reply_id)
    conversation_id = url.rstrip("/").rsplit("/", 1)[-1]
    await Conversation.objects.filter(pk=conversation_id).aupdate(system_prompt="\nBe brief.")
    await page.reload()
    user = page.locator("#messages article.user")
    await user.get_by_role("button", name="Edit").click()
    await expect(user.get_by_label("Edit your message")).to_have_value(text)
    await expect(page.locator("#settings-system-prompt")).to_have_value("\nBe brief.")


async def test_escape_closes_an_edit_keeping_it_and_cancel_puts_the_message_back(
    page, server, fake_upstream
):
    """Escape in the edit box threw the edit away, a long one too, at a key pressed by
    mistake: it closes the box, and the next Edit shows the edit as it was left. Cancel puts
    the message back."""
    fake_upstream.plan = answers("An answer.")
    chat = ChatPage(page, server)
    await chat.new_conversation()
    await chat.wait_finished(await chat.send("first question"))
    user = page.locator("#messages article.user")
    box = user.get_by_label("Edit your message")
    await user.get_by_role("button", name="Edit").click()
    await box.fill("a long and careful rewrite")
    await box.press("Escape")
    await expect(box).to_be_hidden()
    await expect(user.get_by_role("button", name="Edit")).to_be_focused()
    await expect(user.locator(".content")).to_have_text("first question")
    await user.get_by_role("button", name="Edit").click()
    await expect(box).to_have_value("a long and careful rewrite")
    await user.get_by_role("button", name="Cancel").click()
    await user.get_by_role("button", name="Edit").click()
    await expect(box).to_have_value("first question")


async def test_an_edit_refused_while_a_reply_streams_says_why_beside_the_edit(
    page, server, fake_upstream, watch
):
    """The reason went under the message box, out of sight on a phone, with nothing at the
    edit form itself; then it stayed there once the reply had ended, saying the assistant was
    still replying."""
    fake_upstream.plan = answers("A slow " * 100, delay=0.1)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    await chat.send("first question")
    user = page.locator("#messages article.user")
    await user.get_by_role("button", name="Edit").click()
    await user.get_by_label("Edit your message").fill("second thoughts")
    await user.get_by_role("button", name="Save and send").click()
    refused = user.locator(".action-error")
    await expect(refused).to_contain_text("still replying")
    await expect(refused).to_have_attribute("role", "alert")
    await expect(user.get_by_label("Edit your message")).to_have_value("second thoughts")
    await expect(page.locator("#composer-error")).to_be_hidden()
    await user.get_by_role("button", name="Cancel").click()
    await expect(refused).to_have_count(0)
    await expect(user.locator(".content")).to_have_text("first question")

    # Refused again, it goes once the reply ends, what was typed kept for Save again.
    await user.get_by_role("button", name="Edit").click()
    await user.get_by_label("Edit your message").fill("third thoughts")
    await user.get_by_role("button", name="Save and send").click()
    await expect(refused).to_contain_text("still replying")
    await page.locator(".composer-stop").click()
    await expect(page.locator("#messages article.assistant")).to_have_attribute(
        "data-status", "cancelled"
    )
    await expect(refused).to_have_count(0)
    await expect(user.get_by_label("Edit your message")).to_have_value("third thoughts")
    await user.get_by_role("button", name="Save and send").click()
    await expect(user.locator(".content")).to_have_text("third thoughts")
    assert all("409" in e for e in watch.console_errors), watch.console_errors
    watch.console_errors.clear()  # the browser and htmx log the 409s


async def test_feedback_is_saved_and_shown_in_the_admin_transcript(
    page, server, fake_upstream, user
):
    fake_upstream.plan = answers("An answer worth judging.")
    chat = ChatPage(page, server)
    url = await chat.new_conversation()
    reply_id = await chat.send("judge me")
    await chat.wait_finished(reply_id)

    reply = chat.reply(reply_id)
    await reply.get_by_role("button", name="Bad reply").click()
    await expect(reply.get_by_role("button", name="Bad reply")).to_have_attribute(
        "aria-pressed", "true"
    )
    await reply.get_by_label("Comment").fill("It missed the point.")
    await reply.get_by_role("button", name="Save comment").click()
    await expect(reply.get_by_text("Comment saved.")).to_be_visible()
    saved = await Message.objects.aget(pk=reply_id)
    assert (saved.feedback, saved.feedback_comment) == ("down", "It missed the point.")

    def make_staff() -> None:
        user.is_staff = user.is_superuser = True
        user.save()

    await sync_to_async(make_staff)()
    await page.goto(f"{server.url}/admin/chat/conversation/{conversation_id_of(url)}/transcript/")
    transcript = page.locator(f"#t{reply_id}")
    await expect(transcript).to_contain_text("An answer worth judging.")
    await expect(transcript).to_contain_text("thumbs down")
    await expect(transcript).to_contain_text("It missed the point.")

    # Changing your mind: thumbs up replaces thumbs down and keeps the comment.
    await page.goto(url)
    await chat.reply(reply_id).get_by_role("button", name="Good reply").click()
    await expect(chat.reply(reply_id).get_by_role("button", name="Good reply")).to_have_attribute(
        "aria-pressed", "true"
    )
    saved = await Message.objects.aget(pk=reply_id)
    assert (saved.feedback, saved.feedback_comment) == ("up", "It missed the point.")


async def test_a_conversation_deleted_in_another_tab_says_so_there_keeping_what_was_typed(
    page, context, server, fake_upstream, watch, tmp_path
):
    """Found by a walk-through: a tab open on a conversation that another tab deleted stood
    still, its reply cut mid-word with Stop still shown, and sent the next message into a
    404 (with DEBUG on, Django's error page replaced the page, and the message with it)."""
    fake_upstream.plan = answers("A slow answer " * 200, delay=0.05)
    chat = ChatPage(page, server)
    url = await chat.new_conversation()
    reply_id = await chat.send("a long question")
    other = await another_tab(context)
    await other.goto(url)
    left = ChatPage(other, server)
    await left.wait_for_socket()
    await left.wait_for_text(reply_id, 20)
    await other.locator("#composer-text").fill("a thought not sent yet")

    # The deleting tab says nothing of it (it goes to the start page): its answer held back a
    # moment, the socket's news comes first.
    async def held_back(route):
        answer = await route.fetch()
        await asyncio.sleep(1.0)
        await route.fulfill(response=answer)

    await page.route(re.compile(r"/delete/$"), held_back)
    watch.accept_dialogs = True
    await page.locator(".conversation-menu summary").click()
    await page.get_by_role("button", name="Delete conversation").click()
    await asyncio.sleep(0.7)
    assert await page.locator("main.chat.deleted").count() == 0
    assert await page.locator("#connection-status").text_content() in ("", None)
    await page.wait_for_url(server.url + "/")

    status = other.locator("#connection-status")
    await expect(status).to_have_text("This conversation was deleted. Start a new one.")
    await expect(status.get_by_role("link", name="Start a new one")).to_have_attribute(
        "href", re.compile(r"/$")
    )
    await expect(other.locator(f"#m{reply_id} .stop-form")).to_have_count(0)
    await expect(other.locator("#composer")).not_to_have_class(re.compile(r"\bbusy\b"))
    await expect(other.locator("#composer-text")).to_have_value("a thought not sent yet")
    await expect(other.locator("#composer-text")).not_to_be_editable()
    await expect(other.get_by_role("button", name="Send")).to_be_disabled()
    await expect(other.locator("#conversation-list a")).to_have_count(0)  # out of the list
    await expect(other.locator("#conversation-list .group-heading")).to_have_count(0)
    caret = await other.evaluate(
        """(id) => [...document.querySelectorAll(`#m${id} .streaming-tail, #m${id} .streaming-tail *`)]
              .map((el) => getComputedStyle(el, "::after").content)
              .filter((content) => content && content !== "none" && content !== "normal")""",
        reply_id,
    )
    assert caret == [], caret
    # Nothing more is asked of the server from it: it would be refused.
    asked: list[str] = []
    other.on("request", lambda request: asked.append(request.url))
    await other.locator("#composer-text").press("Enter")
    question = other.locator("#messages article.user")
    await question.get_by_role("button", name="Edit").click()
    await question.get_by_label("Edit your message").fill("an edit")
    await question.get_by_role("button", name="Save and send").click()
    shown = await left.state(reply_id)
    await asyncio.sleep(1.0)  # it does not reconnect, nor go on
    assert await left.state(reply_id) == shown
    assert asked == [] and await other.locator("#composer-error").is_hidden(), asked
    await expect(status).to_have_text("This conversation was deleted. Start a new one.")
    for size, viewport in SIZES.items():
        for scheme in SCHEMES:
            await other.set_viewport_size(viewport)
            await other.emulate_media(color_scheme=scheme)
            await check_looks(other, tmp_path / f"deleted-elsewhere-{size}-{scheme}.png")
    await other.close()


async def test_a_message_sent_in_one_tab_streams_in_the_other(page, context, server, fake_upstream):
    fake_upstream.plan = answers("Seen in both tabs.", delay=0.05)
    chat = ChatPage(page, server)
    url = await chat.new_conversation()
    other = await another_tab(context)
    await other.goto(url)
    await ChatPage(other, server).wait_for_socket()
    reply_id = await chat.send("hello from the first tab")
    await expect(other.locator("#messages article.user .content")).to_have_text(
        "hello from the first tab"
    )
    await expect(other.locator(f"#m{reply_id}")).to_have_attribute("data-status", "complete")
    await expect(other.locator(f"#m{reply_id} .content")).to_have_text("Seen in both tabs.")
    # The sending tab shows each message once, whichever of its response and the socket won.
    await chat.wait_finished(reply_id)
    await expect(page.locator("#messages article.user")).to_have_count(1)
    await expect(page.locator("#messages article.assistant")).to_have_count(1)
    await other.close()


async def test_a_title_that_changes_on_the_page_reaches_the_rename_box_and_the_tab(
    page, server_factory, fake_upstream
):
    server = server_factory(CHAT_GENERATE_TITLES="true")
    fake_upstream.plan = answers("Light layers and an umbrella.")
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("what should I pack for lisbon in march")
    await chat.wait_finished(reply_id)
    await expect(page.locator("#conversation-title")).to_have_text("Packing for Lisbon")
    await expect(page).to_have_title("Packing for Lisbon · chatsite")
    await page.locator(".conversation-menu summary").click()
    await expect(page.get_by_label("Title")).to_have_value("Packing for Lisbon")

    await page.get_by_label("Title").fill("Holiday plans")
    await page.get_by_role("button", name="Rename").click()
    await expect(page.locator("#conversation-title")).to_have_text("Holiday plans")
    await expect(page).to_have_title("Holiday plans · chatsite")


async def test_a_rename_shows_in_the_conversations_other_tabs(page, context, server):
    """Found by a walk-through: the other tab kept the old title, in its header, its list and
    its rename box, until a reload."""
    chat = ChatPage(page, server)
    url = await chat.new_conversation()
    conversation_id = conversation_id_of(url)
    other = await another_tab(context)
    await other.goto(url)
    await ChatPage(other, server).wait_for_socket()
    await page.locator(".conversation-menu summary").click()
    await page.get_by_label("Title").fill("Holiday plans")
    await page.get_by_role("button", name="Rename").click()
    await expect(page.locator("#conversation-title")).to_have_text("Holiday plans")
    await expect(other.locator("#conversation-title")).to_have_text("Holiday plans")
    await expect(other).to_have_title("Holiday plans · chatsite")
    await expect(other.locator(f"#conv-link-{conversation_id}")).to_have_text("Holiday plans")
    await other.locator(".conversation-menu summary").click()
    await expect(other.get_by_label("Title")).to_have_value("Holiday plans")
    await other.close()


async def test_the_header_switches_the_model_and_sets_a_system_prompt_with_a_mark(
    page, server_factory, fake_upstream
):
    server = server_factory(CHAT_MODELS="fake-model,other-model")
    fake_upstream.plan = answers("Bien sûr.")
    chat = ChatPage(page, server)
    url = await chat.new_conversation()
    header = page.locator("header.chat-header")
    await expect(header.locator(".prompt-mark")).to_have_count(0)
    await header.get_by_label("Model").select_option("other-model")
    conversation = Conversation.objects.filter(pk=conversation_id_of(url))

    async def switched() -> bool:
        return (await conversation.aget()).model == "other-model"

    await eventually(switched, message="the model was not switched")

    await header.locator(".prompt-menu summary").click()
    await page.get_by_label("System prompt").fill("Answer in French.")
    await page.get_by_role("button", name="Save system prompt").click()
    await expect(header.locator(".prompt-mark")).to_be_visible()
    await chat.wait_finished(await chat.send("hello"))
    sent = fake_upstream.requests[-1].body
    assert sent["model"] == "other-model"
    assert sent["messages"][0] == {"role": "system", "content": "Answer in French."}
    await page.reload()
    await expect(header.locator(".prompt-mark")).to_be_visible()
    await expect(header.get_by_label("Model")).to_have_value("other-model")


async def test_a_model_the_server_did_not_save_goes_back_in_the_picker(
    page, server_factory, fake_upstream, watch
):
    """Found by a walk-through: a model picked while the server could not be reached stayed
    in the picker, and the next reply would have come from the model before it, with nothing
    said. The picker goes back to the model the conversation has, and the page says why."""
    server = server_factory(CHAT_MODELS="fake-model,other-model")
    fake_upstream.plan = answers("Fine.")
    chat = ChatPage(page, server)
    url = await chat.new_conversation()
    picker = page.locator("header.chat-header").get_by_label("Model")
    await page.context.set_offline(True)
    await picker.select_option("other-model")
    await expect(page.locator("#composer-error")).to_have_text(
        "Could not reach the server. Try again."
    )
    await expect(picker).to_have_value("fake-model")
    await page.context.set_offline(False)
    await expect(page.locator("#composer-error")).to_be_hidden()
    await picker.select_option("other-model")
    conversation = Conversation.objects.filter(pk=conversation_id_of(url))

    async def switched() -> bool:
        return (await conversation.aget()).model == "other-model"

    await eventually(switched, message="the model was not switched")
    await expect(picker).to_have_value("other-model")
    watch.console_errors.clear()  # the browser logs the failed request


def held_at_third_word(fake_upstream, ending: str) -> Gate:
    """A reply held after its first two words until the returned gate opens; then it finishes,
    or (`ending` "failed") its connection drops after one more word."""
    gate = Gate(fake_upstream)
    words = ["Still ", "going ", "on ", "and ", "on."]

    async def plan(request: FakeRequest):
        cut = 4 if ending == "failed" and request.index == 0 else None
        return await request.stream(
            reply_events(words), delay=0.01, before_piece=gate.before(3), cut_after=cut
        )

    fake_upstream.plan = plan
    return gate


ENDINGS = {"finished": "complete", "stopped": "cancelled", "failed": "interrupted"}


@pytest.mark.parametrize(
    ("ending", "viewport", "touch"),
    [
        ("finished", {"width": 1280, "height": 800}, False),
        ("stopped", {"width": 1280, "height": 800}, False),
        ("failed", {"width": 1280, "height": 800}, False),
        ("stopped", {"width": 390, "height": 844}, True),
    ],
    ids=["finished", "stopped", "failed", "touch-stopped"],
)
async def test_while_a_reply_streams_the_message_box_sends_nothing_and_says_why_until_it_ends(
    page, server_factory, fake_upstream, watch, ending, touch
):
    """Enter while a reply streamed sent the message, for the server to refuse it (409,
    "still replying"): a round trip the browser logged as two errors. Now nothing is sent
    (Enter, or Ctrl+Enter on a touch screen, whose Send button Stop replaces); the box keeps
    the text and the caret where they were, Shift+Enter still starts a line, and the line
    under the box says why until the reply finishes, is stopped or fails."""
    server = server_factory(CHAT_MAX_RETRIES="0")
    gate = held_at_third_word(fake_upstream, ending)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("first question")
    await chat.wait_for_text(reply_id, len("Still going"))
    composer = page.locator("#composer")
    await expect(composer.get_by_role("button", name="Send")).to_have_count(0)
    await expect(composer.get_by_role("button", name="Stop")).to_be_visible()
    sent = len(watch.posts)

    await chat.composer.fill("second question")
    await chat.composer.evaluate("box => box.setSelectionRange(6, 6)")  # after "second"
    await chat.composer.press("Control+Enter" if touch else "Enter")
    error = page.locator("#composer-error")
    await expect(error).to_have_text(
        "The assistant is still replying. Wait for it to finish, or press Stop."
    )
    await expect(error).to_have_attribute("role", "alert")
    await expect(chat.composer).to_have_value("second question")
    await expect(chat.composer).to_be_focused()
    assert await chat.composer.evaluate("box => [box.selectionStart, box.selectionEnd]") == [6, 6]
    await chat.composer.press("Shift+Enter")
    await expect(chat.composer).to_have_value("second\n question")
    await page.wait_for_timeout(200)  # (time for a request to leave)
    assert len(watch.posts) == sent, watch.posts[sent:]
    assert await axe_problems(page) == []

    if ending == "stopped":
        await composer.get_by_role("button", name="Stop").click()
    else:
        gate.open()
    await chat.wait_finished(reply_id, ENDINGS[ending])
    await expect(error).to_be_hidden()
    await expect(composer.get_by_role("button", name="Send")).to_be_visible()
    await expect(chat.composer).to_have_value("second\n question")  # kept, to send now
    await chat.press_send()
    await expect(page.locator("#messages article.user")).to_have_count(2)
    assert await page.locator("#messages article.user .content").last.inner_text() == (
        "second\n question"
    )
    await expect(chat.composer).to_have_value("")
    # (no console error: the test's page watch fails it on any)


async def test_a_message_sent_while_a_reply_this_tab_has_not_heard_of_streams_is_refused(
    page, context, server, fake_upstream, watch
):
    """The server's refusal stays for what the page cannot know: a reply another tab started,
    its news still on the way to this tab. The page keeps the message and says why until
    that reply ends."""
    gate = held_at_third_word(fake_upstream, "finished")
    late = LateSocket()
    await late.attach(page)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    other = await another_tab(context)
    await other.goto(page.url)
    elsewhere = ChatPage(other, server)
    await elsewhere.wait_for_socket()

    late.held = True
    reply_id = await elsewhere.send("from the other tab")
    await elsewhere.wait_for_text(reply_id, len("Still going"))
    await chat.composer.fill("from this tab")
    await chat.composer.press("Enter")
    error = page.locator("#composer-error")
    await expect(error).to_contain_text("still replying")
    await expect(chat.composer).to_have_value("from this tab")
    assert all("409" in e for e in watch.console_errors), watch.console_errors
    assert watch.console_errors
    watch.console_errors.clear()  # the browser and htmx log the 409

    late.release()  # the other tab's turn shows here, its reply streaming
    await expect(chat.reply(reply_id)).to_contain_text("Still going")
    await expect(page.locator("#composer").get_by_role("button", name="Stop")).to_be_visible()
    gate.open()
    await chat.wait_finished(reply_id)
    await expect(error).to_be_hidden()
    await chat.press_send()
    await expect(page.locator("#messages article.user")).to_have_count(2)


class LateSocket:
    """Routes a page's sockets through the test, which holds back what the server sends while
    `held` (a socket that lags behind the HTTP answers), and lets it through, in order, on
    `release`."""

    def __init__(self) -> None:
        self.held = False
        self.frames: list[str | bytes] = []
        self.socket: Any = None

    async def attach(self, page: Any) -> None:
        await page.route_web_socket(re.compile(r"/ws/"), self._route)

    def _route(self, socket: Any) -> None:
        self.socket = socket
        socket.connect_to_server().on_message(self._from_server)

    def _from_server(self, message: str | bytes) -> None:
        if self.held:
            self.frames.append(message)
        else:
            self.socket.send(message)

    def release(self) -> None:
        self.held = False
        for message in self.frames:
            self.socket.send(message)
        self.frames.clear()


async def test_a_tab_that_goes_offline_says_so_and_catches_up_when_back(
    page, server, fake_upstream
):
    """The network lost mid-reply: the reply stood still, its cursor blinking, with nothing
    said (the socket stays open a while on a dead connection). The line under the header
    says so; back online, it goes and the reply goes on to its end."""
    text = "Words " * 60
    fake_upstream.plan = answers(text, delay=0.03)
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("a question")
    await chat.wait_for_text(reply_id, 10)
    status = page.locator("#connection-status")
    await page.context.set_offline(True)
    await expect(status).to_have_text(re.compile("You are offline"))
    await page.context.set_offline(False)
    await expect(status).to_have_text("")
    await chat.wait_finished(reply_id)
    await expect(chat.reply(reply_id).locator(".content")).to_have_text(text.strip())


async def test_a_message_that_could_not_reach_the_server_says_so_until_it_can_again(
    page, server, fake_upstream, watch
):
    """Found by a walk-through: "Could not reach the server" stayed under the message box
    once the server could be reached again. It goes then, the message kept in the box."""
    fake_upstream.plan = answers("An answer.")
    chat = ChatPage(page, server)
    await chat.new_conversation()
    await page.context.set_offline(True)
    await chat.composer.fill("sent while offline")
    await chat.composer.press("Enter")
    error = page.locator("#composer-error")
    await expect(error).to_have_text(re.compile("Could not reach the server"))
    await page.context.set_offline(False)
    await expect(error).to_be_hidden()
    await expect(chat.composer).to_have_value("sent while offline")
    watch.console_errors.clear()  # the browser logs the failed request


async def test_actions_that_could_not_reach_the_server_say_so_beside_them(
    page, server, fake_upstream, watch
):
    """Found by a walk-through: offline (or with the server down), Regenerate, a rating, Pin
    and the other actions but Send failed with nothing said: the reply as it was, the thumb
    not pressed, Pin still offered. Each says so beside it, and the line goes once the server
    can be reached again. The offline line speaks of a reply only while one streams."""
    fake_upstream.plan = answers("An answer.")
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("a question")
    await chat.wait_finished(reply_id)
    await page.context.set_offline(True)
    status = page.locator("#connection-status")
    await expect(status).to_have_text("You are offline.")
    reply = chat.reply(reply_id)
    unreachable = "Could not reach the server. Try again."
    await reply.get_by_role("button", name="Regenerate").click()
    await expect(reply.locator(".action-error")).to_have_text(unreachable)
    await reply.get_by_role("button", name="Good reply").click()
    await expect(reply.locator(".action-error")).to_have_count(2)
    await page.locator(".conversation-menu > summary").click()
    await page.get_by_role("button", name=re.compile("^Pin")).click()
    await expect(page.locator(".conversation-menu .action-error")).to_have_text(unreachable)
    await page.context.set_offline(False)
    await expect(status).to_have_text("")
    await expect(page.locator(".action-error")).to_have_count(0)
    watch.console_errors.clear()  # the browser logs the failed requests


async def test_the_offline_line_stays_when_the_network_goes_as_the_socket_opens(
    page, server, fake_upstream
):
    """Found by a walk-through: offline less than a second after the page's socket opened,
    the line went at that second (the socket's "back" cleared it), and the page said nothing
    while offline."""
    fake_upstream.plan = answers("An answer.")
    chat = ChatPage(page, server)
    await chat.new_conversation()
    await page.reload()
    await chat.wait_for_socket()
    await page.context.set_offline(True)
    status = page.locator("#connection-status")
    await expect(status).to_have_text("You are offline.")
    await asyncio.sleep(1.2)  # past the second the socket takes to count as back
    await expect(status).to_have_text("You are offline.")
    await page.context.set_offline(False)
    await expect(status).to_have_text("")


# Where the first and the last character of an element's first text stand: right to left,
# the first stands right of the last.
FIRST_AND_LAST_X_JS = """
(element) => {
  const node = document.createTreeWalker(element, NodeFilter.SHOW_TEXT,
    { acceptNode: (n) => n.textContent.trim() ? 1 : 3 }).nextNode();
  const text = node.textContent.trimEnd();
  const at = (i) => { const r = document.createRange(); r.setStart(node, i);
    r.setEnd(node, i + 1); return r.getBoundingClientRect().left; };
  const start = text.length - text.trimStart().length;
  return [at(start), at(text.length - 1)];
}
"""


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("viewport", SIZES.values(), ids=SIZES.keys())
async def test_right_to_left_text_reads_right_to_left(
    page, server, fake_upstream, viewport, scheme, tmp_path
):
    """Hebrew (or Arabic) in a message, a reply, a title: each line or paragraph is laid out
    right to left, its punctuation at its end (the question mark stood at the start), and an
    English one beside it left to right."""
    await page.set_viewport_size(viewport)
    await page.emulate_media(color_scheme=scheme)
    fake_upstream.plan = answers("שלום! מה שלומך היום?\n\nAn English paragraph.")
    chat = ChatPage(page, server)
    await chat.new_conversation()
    reply_id = await chat.send("שלום! מה שלומך היום? אני רוצה לדעת על WebSockets.")
    await chat.wait_finished(reply_id)
    for element in (
        page.locator("#messages article.user .user-text"),
        chat.reply(reply_id).locator(".content p").first,
        page.locator("#conversation-title"),
    ):
        first, last = await element.evaluate(FIRST_AND_LAST_X_JS)
        assert first > last, (await element.inner_text(), first, last)
    first, last = (
        await chat.reply(reply_id).locator(".content p").nth(1).evaluate(FIRST_AND_LAST_X_JS)
    )
    assert first < last
    await check_looks(page, tmp_path / f"right-to-left-{viewport['width']}-{scheme}.png")


async def test_what_is_typed_while_a_message_is_on_its_way_stays_in_the_box(
    page, server, fake_upstream
):
    """The message box emptied when the answer to a send came, taking what was typed since
    with it (a slow network; the reply shows over the socket first): only what was sent goes."""
    fake_upstream.plan = answers("An answer.")
    chat = ChatPage(page, server)
    await chat.new_conversation()

    async def slowly(route):
        await asyncio.sleep(1.0)
        await route.continue_()

    await page.route("**/messages/", slowly)
    await chat.composer.fill("first question")
    await chat.composer.press("Enter")
    await asyncio.sleep(0.3)
    await chat.composer.fill("and a second thought")  # typed while the first is on its way
    await expect(page.locator("#messages article.assistant")).to_have_count(1)
    await page.wait_for_function("() => !document.querySelector('#composer.htmx-request')")
    await asyncio.sleep(0.3)
    await expect(chat.composer).to_have_value("and a second thought")
    await expect(page.locator("#messages article.user .user-text")).to_have_text("first question")
