"""One reply, from request to saved message: calls the model through the stream client, sends
coalesced deltas to the conversation, checkpoints partial text, and saves the result once.

A reply rides out a service that goes away for a while: frames Redis cannot take are skipped
(tabs catch up from a snapshot), checkpoints the database cannot take wait for the next, and
the final save is retried until the database is back (CHAT_DATABASE_OUTAGE_SECONDS at most).
A Redis outage longer than CHAT_REDIS_OUTAGE_SECONDS ends the reply interrupted."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from .. import events, fragments, limits, outages, selectors, services, titles, tools
from ..models import WAITING_FOR_MODEL, Message, fit_column
from ..progressive import ProgressiveRenderer, normalise
from .client import CompletionStream, Retrying
from .coalescer import Frame, FrameCoalescer, loop_lag
from .completion import CONTINUE_PROMPT, MAX_TOKEN_COUNT, Completion, StreamUpdate
from .errors import (
    CONTENT_FILTERED,
    EMPTY_REPLY,
    SPENT_BEFORE_TEXT,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamStreamError,
    sentence,
)
from .upstream import chat_completions_client

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A continuation's new thinking is a new pass (the model is not sent its old thinking), so a
# paragraph break parts it from the thinking kept. It goes out with the first new thinking:
# a tab's place in the text moves only then.
THINKING_JOINT = "\n\n"


class ReplyRenderer:
    """A streaming reply as the page shows it, rendered progressively in this process: each
    frame's text is fed to a renderer per text (answer, reasoning), which settles blocks once.
    `cursor` values say where a tab must stand for a frame to apply: the text's length and
    where its tail starts."""

    def __init__(self, message_id: int, content: str, reasoning: str) -> None:
        self.message_id = message_id
        self.content = ProgressiveRenderer()
        self.reasoning = ProgressiveRenderer()
        self.content.feed(content)  # a continuation starts from the text already there
        self.reasoning.feed(reasoning)
        self.content.release_held_mark()  # (as the page shows that text: all of it)
        self.reasoning.release_held_mark()
        # A continuation's open paragraph, shown rendered (as the reply was when it was cut)
        # until the page draws the tail again (`fragments.held_paragraph`).
        self._held = fragments.held_paragraph(self.content)
        self._held_from = self.content.settled
        if self._held is not None:
            self.content.hold_formatting()  # text after it is drawn as text, as the held page
        self._calls_shown = ""  # the tool calls' cards last sent

    def cursor(self) -> dict[str, list[int]]:
        return {
            "content": [len(self.content.text), self.content.settled],
            "reasoning": [len(self.reasoning.text), self.reasoning.settled],
        }

    def shows_anything(self) -> bool:
        """Whether the reply draws anything yet: text or thinking past white space, or a tool
        call's card (a first token of line ends alone draws nothing)."""
        return bool(self.content.text.strip() or self.reasoning.text.strip() or self._calls_shown)

    def frame(self, frame: Frame) -> tuple[dict[str, list[int]], str]:
        """Feed one frame; returns where a tab must stand before it, and its fragment."""
        before = self.cursor()
        parts = []
        for ids, renderer, text in (
            (fragments.REASONING, self.reasoning, frame.reasoning),
            (fragments.CONTENT, self.content, frame.content),
        ):
            if text:
                step = renderer.feed(text)
            elif renderer.held == "!":
                step = renderer.release_held_mark()  # (the reply goes on elsewhere: the
                # answer after the thinking, a tool call)
            else:
                continue
            if step.tail_replaced and renderer is self.content:
                self._held = None  # the page draws the tail as text from now on
            parts.append(fragments.text_step(ids, self.message_id, step, renderer.tail))
        calls = fragments.tool_calls(self.message_id, frame.tool_calls)
        if calls and calls != self._calls_shown:  # past its first characters, a card stays
            parts.append(calls)
            self._calls_shown = calls
        return before, "".join(parts)

    def snapshot(self) -> str:
        held = None
        if self._held is not None and self.content.settled == self._held_from:
            held = fragments.held_tail_html(self._held, self.content.text)
        return fragments.text_state(
            fragments.REASONING, self.message_id, self.reasoning.blocks_html, self.reasoning.tail
        ) + fragments.text_state(
            fragments.CONTENT, self.message_id, self.content.blocks_html, self.content.tail, held
        )

    def finish(self) -> tuple[dict[str, str], str | None]:
        """The reply's stored HTML, and the fragment that ends its text on a page that has
        every frame (None when the final render changed a block already shown)."""
        content_end, content_html = self.content.finish()
        reasoning_end, reasoning_html = self.reasoning.finish()
        stored = {"content_html": content_html, "reasoning_html": reasoning_html}
        if not (
            content_html == self.content.blocks_html
            and reasoning_html == self.reasoning.blocks_html
            and not (self.content.diverged or self.reasoning.diverged)
        ):
            return stored, None
        ending = fragments.text_end(fragments.CONTENT, self.message_id, content_end)
        if self.reasoning.text:  # the page keeps the thinking section when there is any
            ending += fragments.text_end(fragments.REASONING, self.message_id, reasoning_end)
        return stored, ending


@dataclass(eq=False)  # one running reply: equal to itself only
class Generation:
    """Streams one claimed reply. `snapshot()` may be called at any time while it runs."""

    reply: Message
    worker_id: str
    # How many tool rounds came before this reply in its turn, read from its branch with the
    # history (so a follow-up another worker takes over, or a Retry of one, counts them too).
    tool_round: int = field(default=0, init=False)
    stopped: bool = field(default=False, init=False)  # by `stop`: it ends now, tools or not
    cancelled_by_user: bool = field(default=False, init=False)  # stopped by Stop
    reached_size_limit: bool = False  # CHAT_MAX_REPLY_CHARS: the rest was not read
    next_reply: Message | None = None  # the follow-up reply after a tool round
    prompt_characters: int = field(default=0, init=False)  # the text of the request's messages
    stream: CompletionStream | None = None
    interruption: str = field(default="", init=False)  # why the server stopped it, if known
    # Stopped by the server's shutdown: a reply that has streamed nothing yet is left unsaved,
    # claimed, for the runner to put back in the queue (`left_for_hand_back` once it is).
    hand_back: bool = field(default=False, init=False)
    left_for_hand_back: bool = field(default=False, init=False)
    started_at: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    _saved_content: str = ""
    _saved_reasoning_length: int = 0  # thinking only grows while a reply streams
    _task: asyncio.Task[Any] | None = None
    status_line: str = field(default="", init=False)  # what the reply's status line says
    # The line goes with the next frame that shows something of the reply, in it: cleared on
    # its own as the first token came, it left the reply a line shorter for a coalescing window
    # (longer if the renderer held that token: an item's "-"; or if it was line ends alone),
    # then the text made it taller again.
    _status_goes_with_next_frame: bool = field(default=False, init=False)
    _tools_task: asyncio.Task[list[tuple[dict[str, Any], str]]] | None = None  # while they run
    _thinks_again: bool = field(default=False, init=False)  # a continuation's new thinking began

    def __post_init__(self) -> None:
        # A continuation (Continue after the token limit) appends to the text and thinking
        # already saved (a reply cut while thinking has no text); a new reply has neither.
        self.prefix = self.reply.content
        self.reasoning_prefix = self.reply.reasoning
        self._saved_content = self.prefix
        self._saved_reasoning_length = len(self.reasoning_prefix)
        self.view = ReplyRenderer(self.reply.pk, self.prefix, self.reasoning_prefix)

    @property
    def completion(self) -> Completion:
        return self.stream.completion if self.stream else Completion()

    @property
    def text(self) -> str:
        """The reply's visible text: what was there before, then the answer (or refusal)."""
        completion = self.completion
        return self.prefix + completion.content + completion.refusal

    @property
    def reasoning(self) -> str:
        joint = THINKING_JOINT if self._thinks_again else ""
        return self.reasoning_prefix + joint + self.completion.reasoning

    def snapshot(self) -> dict[str, Any]:
        """The reply as its frames so far drew it (text still in the coalescer is not in it:
        it comes in the next frame), with the cursor a tab stands at after it, and whether it
        is a continuation (a tab may show the reply as it was before: finished, cut short)."""
        html = (
            self.view.snapshot()
            + fragments.tool_calls(self.reply.pk, self.completion.tool_call_list())
            + fragments.status(self.reply.pk, self.status_line)
        )
        return {"cursor": self.view.cursor(), "html": html, "continued": self.continues}

    @property
    def continues(self) -> bool:
        """A continuation: it goes on from text or thinking already saved."""
        return bool(self.prefix or self.reasoning_prefix)

    async def run(self) -> None:
        self._task = asyncio.current_task()
        reply = self.reply
        conversation = reply.conversation
        coalescer = FrameCoalescer(
            self._send_frame,
            settings.CHAT_COALESCE_SECONDS,
            max_window=settings.CHAT_COALESCE_MAX_SECONDS,
            lag=loop_lag(),
        )
        heartbeats = Heartbeats.here()
        heartbeats.add(self)
        outcome: dict[str, Any]
        try:
            if self.stopped:  # while it was claimed, or the turn stopped as this reply was made
                raise asyncio.CancelledError
            # Said until the first update clears it: a new reply's page says it already (it
            # is drawn waiting), a continuation's is told
            self.status_line = WAITING_FOR_MODEL
            await events.message_started(
                conversation.id,
                reply.pk,
                cursor=self.view.cursor(),
                html=self.view.snapshot() if self.continues else "",
                status=self.status_line if self.continues else None,
            )
            self.stream = chat_completions_client().stream(await self._request_body())
            # The size limit counts what was there before (a continuation's text and thinking,
            # and the joint its new thinking takes) and what streams.
            room = self._room()
            async with asyncio.timeout(settings.CHAT_TOTAL_TIMEOUT):
                async for update in self.stream:
                    if isinstance(update, Retrying):
                        attempt = update.attempt + 1
                        await self._show_status(
                            f"{sentence(update.reason)} Trying again (attempt {attempt})…"
                            if update.now
                            else f"{sentence(update.reason)} Retrying in {update.delay:.1f} s "
                            f"(attempt {attempt})."
                        )
                        continue
                    if self.status_line:  # the first update, or the retry worked: it goes
                        if self.first_token_at is None:  # (not counting the notice's trip)
                            self.first_token_at = time.monotonic()
                        self._status_goes_with_next_frame = True
                    self._on_update(update, coalescer)
                    if self.stream.completion.size >= room:
                        self.reached_size_limit = True
                        break  # leaving the iteration closes the upstream connection
            if self.reached_size_limit:
                outcome = self._outcome(Message.Status.COMPLETE)
            else:
                outcome = self._outcome_of_stream()
        except asyncio.CancelledError:
            if self._goes_back_to_the_queue():
                self.left_for_hand_back = True
                heartbeats.discard(self)
                await coalescer.aclose()  # nothing is pending: no frame goes out
                raise
            status, error = self._stopped_as()
            outcome = self._outcome(status, error=error)
            await self._finish(outcome, coalescer, heartbeats)
            raise
        except TimeoutError:
            if self.completion.ended:  # its finish reason came; the upstream then kept quiet
                outcome = self._outcome(Message.Status.COMPLETE)
            else:
                outcome = self._outcome_of_error(
                    f"The reply took longer than {settings.CHAT_TOTAL_TIMEOUT:g} seconds.",
                    interrupted=True,
                )
        except UpstreamError as exc:
            fatal = isinstance(exc, UpstreamStreamError | UpstreamHTTPError)
            outcome = self._outcome_of_error(
                exc.message, interrupted=not fatal, transient=exc.transient
            )
        except Exception:
            logger.exception("generation of message %s failed", reply.pk)
            outcome = self._outcome_of_error("Something went wrong on our side.", interrupted=True)
        await self._finish(outcome, coalescer, heartbeats)

    def _room(self) -> int:
        """The characters the size limit leaves this pass: a continuation's earlier text and
        thinking count, and so does the joint its new thinking takes."""
        joint = len(THINKING_JOINT) if self.reasoning_prefix else 0
        return settings.CHAT_MAX_REPLY_CHARS - len(self.prefix) - len(self.reasoning_prefix) - joint

    async def _request_body(self) -> dict[str, Any]:
        conversation = self.reply.conversation
        then = (
            [
                {"role": "assistant", "content": self.prefix},
                {"role": "user", "content": CONTINUE_PROMPT},
            ]
            if self.prefix
            else []
        )
        messages = await outages.retried_while_database_away(
            lambda: sync_to_async(selectors.model_messages)(
                conversation=conversation, before=self.reply, then=then
            )
        )
        self.tool_round = selectors.tool_rounds_in_turn(messages[: len(messages) - len(then)])
        self.prompt_characters = selectors.prompt_characters(messages)
        body: dict[str, Any] = {
            "model": conversation.model or settings.CHAT_MODEL,
            "messages": messages,
            "stream_options": {"include_usage": True},
        }
        if self._offers_tools():
            body["tools"] = tools.tool_schemas()
        if settings.CHAT_MAX_TOKENS:
            body["max_tokens"] = settings.CHAT_MAX_TOKENS
        return body

    async def _send_frame(self, frame: Frame) -> bool:
        """Render one frame and send it to the tabs; False if it changes nothing on them (its
        text held back by the renderer: a list item's "-" until its first word), and so went
        nowhere. Rendering happens here, on the coalescer's schedule: a burst of tokens costs
        one render, and every tab gets the same fragment."""
        cursor, html = self.view.frame(frame)
        after = self.view.cursor()
        if not html and after == cursor:
            return False
        if self._status_goes_with_next_frame and self.view.shows_anything():
            self._status_goes_with_next_frame = False
            self.status_line = ""
            html += fragments.status(self.reply.pk, "")
        await events.message_delta(
            self.reply.conversation_id,
            self.reply.pk,
            cursor=cursor,
            next=after,
            html=html,
        )
        return True

    def _on_update(self, update: StreamUpdate, coalescer: FrameCoalescer) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        tool_calls = self.completion.tool_call_list() if update.tool_calls_changed else None
        reasoning = update.reasoning
        if reasoning and self.reasoning_prefix and not self._thinks_again:
            self._thinks_again = True
            reasoning = THINKING_JOINT + reasoning
        coalescer.push(update.content + update.refusal, reasoning, tool_calls)

    def _outcome(self, status: str, *, error: str = "") -> dict[str, Any]:
        completion = self.completion
        now = time.monotonic()
        fields: dict[str, Any] = {
            "status": status,
            "content": self.text,
            "reasoning": self.reasoning,
            "tool_calls": completion.tool_call_list(),
            "finish_reason": fit_column(Message, "finish_reason", completion.finish_reason or ""),
            "model": fit_column(Message, "model", completion.model or self.reply.model),
            "error": error,
            "duration": timedelta(seconds=now - self.started_at),
            "time_to_first_token": (
                timedelta(seconds=self.first_token_at - self.started_at)
                if self.first_token_at is not None
                else None
            ),
        }
        if self.continues:
            # As its tokens do, a continuation's time adds to the earlier passes', and its
            # first token is the reply's first (its tokens a second counted all passes'
            # tokens over this pass's time: 780 for a model writing 50)
            fields["duration"] += self.reply.duration or timedelta()
            if self.reply.time_to_first_token is not None:
                fields["time_to_first_token"] = self.reply.time_to_first_token
        if self.reached_size_limit:
            # Cut to the limit: what arrived with the last chunk beyond it is not kept. Only
            # this pass's text is cut, its thinking before its answer: a continuation's
            # earlier text and thinking stay as they were saved and shown.
            joint = THINKING_JOINT if self.reasoning_prefix else ""
            room = max(self._room(), 0)
            reasoning = completion.reasoning[:room]
            answer = (completion.content + completion.refusal)[: room - len(reasoning)]
            fields["reasoning"] = self.reasoning_prefix + (joint + reasoning if reasoning else "")
            fields["content"] = self.prefix + answer
            fields["tool_calls"] = []  # calls cut mid-stream are not run
            fields["finish_reason"] = "size_limit"
            fields["error"] = error or (
                f"The reply reached the size limit ({settings.CHAT_MAX_REPLY_CHARS:,} characters)."
            )
        if completion.usage is not None:
            # A continuation's tokens add to the earlier passes': each pass was a request of
            # its own, prompt and all, and the owner's tokens a day count them all.
            for name in ("prompt_tokens", "completion_tokens"):
                count = getattr(completion.usage, name)
                if self.continues and count is not None:
                    count = min(count + (getattr(self.reply, name) or 0), MAX_TOKEN_COUNT)
                fields[name] = count
        return fields

    @property
    def started(self) -> bool:
        """Whether `run` has begun (`stop` then ends it by its task)."""
        return self._task is not None

    def stop_like(self, other: Generation) -> None:
        """Stop as `other`, the turn's reply before this one, was stopped."""
        self.stop(
            by_user=other.cancelled_by_user, reason=other.interruption, hand_back=other.hand_back
        )

    def _stopped_as(self) -> tuple[str, str]:
        """The status and error a stopped reply is saved with."""
        if self.cancelled_by_user:
            return Message.Status.CANCELLED, ""
        return Message.Status.INTERRUPTED, self.interruption or "The server stopped while replying."

    def _goes_back_to_the_queue(self) -> bool:
        """Whether this stopped reply is left unsaved for the runner to hand back: stopped by
        the server's shutdown alone (not by Stop, nor for a reason of its own), before any of
        its text, thinking or tool calls streamed. Another worker then generates it whole."""
        completion = self.completion
        return (
            self.hand_back
            and not self.cancelled_by_user
            and not self.interruption
            and not (
                completion.content
                or completion.refusal
                or completion.reasoning
                or completion.tool_call_list()
            )
        )

    def _offers_tools(self) -> bool:
        # The last allowed round offers no tools, so the model has to answer in words.
        return settings.CHAT_TOOLS_ENABLED and self.tool_round < settings.CHAT_MAX_TOOL_ROUNDS

    def _outcome_of_stream(self) -> dict[str, Any]:
        completion = self.completion
        if (
            completion.ended
            and not self.continues
            and not (self.text or self.reasoning or completion.tool_calls)
        ):
            # Nothing at all: a failure to retry, not an answer that reads as a blank
            said = {"content_filter": CONTENT_FILTERED, "length": SPENT_BEFORE_TEXT}
            error = said.get(completion.finish_reason or "", EMPTY_REPLY)
            return self._outcome_of_error(error, interrupted=False)
        if completion.ended:
            return self._outcome(Message.Status.COMPLETE)
        return self._outcome_of_error(
            "The connection to the model ended before the reply was complete.", interrupted=True
        )

    def _outcome_of_error(
        self, message: str, *, interrupted: bool, transient: bool = True
    ) -> dict[str, Any]:
        """Text already streamed is kept; a cut stream is `interrupted`, a failure `error`. A
        continuation refused for a while (an overloaded server, a rate limit) before anything
        new came stays `interrupted`: its text is as it was, and Continue is still offered. One
        refused for good (a request too long for the model) is an `error`: Retry is left."""
        has_text = bool(self.text or self.reasoning)
        nothing_new = self.continues and not (self.completion.size or self.completion.tool_calls)
        if has_text and (interrupted or (nothing_new and transient)):
            return self._outcome(Message.Status.INTERRUPTED, error=message)
        return self._outcome(Message.Status.ERROR, error=message)

    async def _finish(
        self, outcome: dict[str, Any], coalescer: FrameCoalescer, heartbeats: Heartbeats
    ) -> None:
        # A cancelled generation (Stop, shutdown) must still save what it has, and a second
        # cancel must not leave the save running on its own: wait for it either way.
        save = asyncio.ensure_future(self._save(outcome, coalescer, heartbeats))
        cancelled = False
        try:
            while not save.done():
                try:
                    await asyncio.shield(save)
                except asyncio.CancelledError:
                    cancelled = True
        finally:
            heartbeats.discard(self)  # `_save` does, before its final save, unless it failed
        save.result()
        if cancelled:
            raise asyncio.CancelledError

    async def _save(
        self, outcome: dict[str, Any], coalescer: FrameCoalescer, heartbeats: Heartbeats
    ) -> None:
        # The heartbeat keeps the lease until the final save: tools can take longer than it.
        await coalescer.aclose()
        # Where every tab that has each frame stands: the ending applies there. (Finishing may
        # add a line end, for a CR held back in case it was half a CRLF.)
        tabs_at = self.view.cursor()
        stored, ending = self.view.finish()
        shown_as_saved = self.view.content.text == normalise(
            outcome["content"]
        ) and self.view.reasoning.text == normalise(outcome["reasoning"])
        if not shown_as_saved:
            # A frame was lost before it was rendered, or the size limit cut what was shown:
            # store the one-shot render instead.
            stored = services.rendered_fields(
                content=outcome["content"], reasoning=outcome["reasoning"]
            )
            ending = None
        outcome.update(stored)
        # When it ended, the same in each try of the save: a retry tells by it whether the try
        # before went through (`services.reply_finish_went_through`).
        outcome["completed"] = timezone.now()
        calls = outcome["tool_calls"]
        results = None
        if outcome["status"] == Message.Status.COMPLETE and calls and self._offers_tools():
            results = await self._tool_results(calls)
            if results is None:  # stopped first: the calls stay on the reply, unanswered
                outcome["status"], outcome["error"] = self._stopped_as()
        heartbeats.discard(self)
        if results is not None:
            saved, created = await self._saved(
                lambda: services.reply_finish_with_tool_round(
                    message_id=self.reply.pk,
                    worker_id=self.worker_id,
                    fields=outcome,
                    results=results,
                ),
                lambda: services.tool_round_went_through(
                    message_id=self.reply.pk, worker_id=self.worker_id, fields=outcome
                ),
            )
            if created:
                self.next_reply = created[-1]
        else:
            saved = await self._saved(
                lambda: services.reply_finish(
                    message_id=self.reply.pk, worker_id=self.worker_id, fields=outcome
                ),
                lambda: services.reply_finish_went_through(
                    message_id=self.reply.pk, worker_id=self.worker_id, fields=outcome
                ),
            )
        final = None
        if not saved:
            logger.warning("message %s was taken from this worker; not saved", self.reply.pk)
        elif ending is not None:
            # Tabs that have every frame get only what changes: the last blocks and the
            # footer. Nothing already on their page is sent again.
            finished = copy.copy(self.reply)
            for name, value in outcome.items():
                setattr(finished, name, value)
            ending += fragments.reply_finished(finished)
            final = {"cursor": tabs_at, "html": ending}
        await events.message_finished(self.reply.conversation_id, self.reply.pk, final)
        if (
            saved
            and outcome["status"] == Message.Status.COMPLETE
            and settings.CHAT_GENERATE_TITLES
            and self.reply.conversation.title_source == "words"
            and self.tool_round == 0
        ):
            titles.title_generate_soon(self.reply.conversation_id)
        if self.next_reply is not None:
            await events.messages_appended(
                self.reply.conversation_id, [m.pk for m in created], after=created[0].parent_id
            )

    async def _tool_results(
        self, calls: list[dict[str, Any]]
    ) -> list[tuple[dict[str, Any], str]] | None:
        """Each call with its tool's result, the tools run one after another; None if the
        reply is stopped before they are all done (or before they start)."""
        if self.stopped:
            return None

        async def run_tools() -> list[tuple[dict[str, Any], str]]:
            results = []
            for number, call in enumerate(calls, 1):
                if self.stopped:  # a stop that came as the last tool ended (`wait_for`)
                    raise asyncio.CancelledError
                # The model names the call; the line names only tools this server has.
                name = call["name"] if call["name"] in tools.REGISTRY else "an unknown tool"
                count = f" ({number} of {len(calls)})" if len(calls) > 1 else ""
                await self._show_status(f"Running {name}{count}…")
                results.append((call, await tools.arun_tool(call["name"], call["arguments"])))
            return results

        self._tools_task = asyncio.create_task(run_tools())
        try:
            results = await self._tools_task
        except asyncio.CancelledError:
            # `_finish` runs `_save` in a task of its own, which only the event loop's end
            # cancels: that cancel goes on; the tools' alone (by `stop`) is taken here.
            saving = asyncio.current_task()
            if saving is not None and saving.cancelling():
                raise
            return None
        finally:
            self._tools_task = None
            self.status_line = ""  # no tool runs: the finished reply's footer replaces the line
        return None if self.stopped else results

    async def _show_status(self, text: str) -> None:
        """Say `text` on the reply's status line in every tab (a notice while it waits: a
        retry, a tool running), and in the snapshot of a tab that connects meanwhile; "" clears
        it. The finished reply's footer replaces it."""
        self.status_line = text
        self._status_goes_with_next_frame = False  # (a line said since stays)
        try:
            await events.message_status(self.reply.conversation_id, self.reply.pk, text)
        except Exception:  # a notice is not worth the reply: tabs may miss this one
            logger.warning("message %s: status not sent", self.reply.pk, exc_info=True)

    async def _count_tokens_today(self) -> None:
        """What this pass spent that the reply's row does not count for today: a Continue on a
        reply made on an earlier day (its row counts for that day), and the estimate for a
        pass whose usage the model server did not send (Stop, the size limit, a cut stream:
        it bills what it read and wrote all the same). Raises the database's errors while it
        is away (`_saved` tries again)."""
        usage = self.completion.usage
        owner_id = self.reply.conversation.owner_id
        try:
            if usage is not None:
                if self.continues:
                    await sync_to_async(limits.count_tokens_of_earlier_reply)(
                        owner_id=owner_id,
                        created=self.reply.created,
                        tokens=(usage.prompt_tokens or 0) + (usage.completion_tokens or 0),
                    )
            elif self.stream is not None and self.stream.accepted:
                await sync_to_async(limits.count_tokens_today_outside_replies)(
                    owner_id=owner_id,
                    tokens=limits.estimated_tokens(self.prompt_characters + self.completion.size),
                )
        except outages.DATABASE_ERRORS:
            raise
        except IntegrityError:
            pass  # its owner was deleted meanwhile: no one to count them for
        except Exception:
            # Not worth the reply: its tokens alone go uncounted.
            logger.exception("message %s: its tokens could not be counted for today", self.reply.pk)

    async def _saved(
        self, save: Callable[[], Awaitable[T]], went_through: Callable[[], Awaitable[T]]
    ) -> T:
        """The final save, retried while the database is away: the reply waits in memory, for
        up to CHAT_DATABASE_OUTAGE_SECONDS. A retry that finds the reply no longer this
        worker's asks `went_through`: the try before it may have committed, its answer lost
        with the connection (else a tool round's new reply would wait for no one).

        The pass's tokens count first, once (`_count_tokens_today`): a message sent as soon as
        a tab, or the row, shows the reply ended is checked with them. The model server billed
        them whether or not the save goes through."""
        tried = counted = False

        async def attempt() -> T:
            nonlocal tried, counted
            if not counted:
                await self._count_tokens_today()
                counted = True
            again, tried = tried, True
            result = await save()
            if again and not (result[0] if isinstance(result, tuple) else result):
                return await went_through()
            return result

        return await outages.retried_while_database_away(attempt)

    def checkpoint(self) -> services.Checkpoint:
        """What a checkpoint saves now: the text and the thinking, if either changed since the
        last one saved (a reply may think for a minute before its text begins)."""
        text, reasoning = self.text, self.reasoning
        fields: dict[str, Any] = {}
        if text != self._saved_content or len(reasoning) != self._saved_reasoning_length:
            fields = {"content": text, "reasoning": reasoning}
        return services.Checkpoint(self.reply.pk, self.worker_id, fields)

    def note_saved(self, checkpoint: services.Checkpoint) -> None:
        """`checkpoint` was saved: the next one saves only if something changed since."""
        if "content" in checkpoint.fields:
            self._saved_content = checkpoint.fields["content"]
            self._saved_reasoning_length = len(checkpoint.fields["reasoning"])

    def stop(self, *, by_user: bool, reason: str = "", hand_back: bool = False) -> None:
        """End the reply now, streaming or running its tools: it is saved `cancelled` (Stop)
        or `interrupted` (`reason`, or the server stopping), with all its text. A Stop stays
        a Stop whatever comes after it. `hand_back` (the server's shutdown): if nothing of it
        has streamed yet, it is not saved but left for the runner to put back in the queue."""
        self.stopped = True
        self.cancelled_by_user = self.cancelled_by_user or by_user
        self.interruption = self.interruption or reason
        self.hand_back = self.hand_back or hand_back
        if self._tools_task is not None:
            self._tools_task.cancel()  # the save goes on without them (`_tool_results`)
        if self._task is not None:
            self._task.cancel()


# How many replies' checkpoints go in one call to the database's thread.
CHECKPOINTS_PER_CALL = 25


class Heartbeats:
    """The heartbeat of every reply this process streams on one event loop: each interval,
    one task saves their partial text and renews their leases, in as few calls to the
    database's thread as CHECKPOINTS_PER_CALL allows, and ends the replies whose leases were
    lost, or all of them when Redis has been away too long (tabs cannot follow them, nor Stop
    reach them).

    Few calls, not one a reply: a task, a timer and a thread hop per reply per interval were
    about 3% of a process's CPU at 50 streams (sampled with the interpreter lock; under 1%
    this way). A call takes CHECKPOINTS_PER_CALL replies at most: the database's thread is
    the process's one, and a claim or a final save waiting behind it slips in between.

    The database away ends the beat: the replies not saved yet keep their text in memory for
    the next one (or their final save)."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Heartbeats] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self) -> None:
        self._generations: set[Generation] = set()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def here(cls) -> Heartbeats:
        loop = asyncio.get_running_loop()
        heartbeats = cls._by_loop.get(loop)
        if heartbeats is None:
            heartbeats = cls._by_loop[loop] = cls()
        return heartbeats

    def __contains__(self, generation: Generation) -> bool:
        return generation in self._generations

    def add(self, generation: Generation) -> None:
        """Beat for `generation` from the next interval on, until `discard`."""
        self._generations.add(generation)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    def discard(self, generation: Generation) -> None:
        """No more checkpoints for `generation` (it saves itself now); an outcome still on its
        way for it is ignored. The task ends with the last one."""
        self._generations.discard(generation)
        if not self._generations and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while self._generations:
            await asyncio.sleep(
                min(settings.CHAT_CHECKPOINT_SECONDS, settings.CHAT_LEASE_SECONDS / 3)
            )
            try:
                await self._beat()
            except Exception:
                logger.exception("checkpoints failed")

    async def _beat(self) -> None:
        limit = settings.CHAT_REDIS_OUTAGE_SECONDS
        if outages.redis.away_for() > limit:
            for generation in list(self._generations):
                self.discard(generation)
                generation.stop(
                    by_user=False,
                    reason=f"Our servers lost touch with each other for over {limit:g} s.",
                )
            return
        if not self._generations or not await outages.database_answers():
            return  # the text stays in memory for the next checkpoint, or the final save
        beating = list(self._generations)
        for start in range(0, len(beating), CHECKPOINTS_PER_CALL):
            replies = [g for g in beating[start : start + CHECKPOINTS_PER_CALL] if g in self]
            if not replies:
                continue
            checkpoints = [generation.checkpoint() for generation in replies]
            try:
                outcomes = await services.replies_checkpoint(checkpoints)
            except outages.DATABASE_ERRORS as error:
                await sync_to_async(outages.database_failed)(error)
                return
            for generation, checkpoint, outcome in zip(replies, checkpoints, outcomes, strict=True):
                self._take_outcome(generation, checkpoint, outcome)

    def _take_outcome(
        self, generation: Generation, checkpoint: services.Checkpoint, outcome: bool | Exception
    ) -> None:
        if generation not in self:
            return  # it ended meanwhile
        if isinstance(outcome, Exception):
            logger.error("checkpoint of message %s failed", generation.reply.pk, exc_info=outcome)
        elif not outcome:
            # The lease expired and recovery gave the reply up: stop, so that it never has two
            # writers. The saved state (interrupted) is what the page shows.
            logger.warning("message %s: lease lost; stopping its generation", generation.reply.pk)
            self.discard(generation)
            generation.stop(by_user=False)
        else:
            generation.note_saved(checkpoint)
