import asyncio
import json
from datetime import datetime

import pytest

from chat.tools import run_tool, tool_schemas


def result(name: str, arguments: dict | str) -> dict:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return json.loads(run_tool(name, text))


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("6 * 7", 42),
        ("(2 + 3) * sqrt(16)", 20.0),
        ("2 ^ 10", 1024),
        ("-3 // 2", -2),
        ("round(pi, 3)", 3.142),
        ("max(1, 5, 3)", 5),
        ("10 % 4", 2),
    ],
)
def test_calculate_evaluates_arithmetic(expression: str, value: float):
    assert result("calculate", {"expression": expression}) == {"result": value}


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",
        "().__class__",
        "open('/etc/passwd')",
        "x",
        "9 ** 99999",
        "factorial(100000)",
        "lambda: 1",
        "[1, 2]",
        "1 / 0",
        "'a' * 5",
    ],
)
def test_calculate_refuses_anything_but_arithmetic(expression: str):
    assert "error" in result("calculate", {"expression": expression})


def test_current_datetime_in_a_time_zone():
    value = result("current_datetime", {"timezone": "Europe/Paris"})["result"]
    assert datetime.fromisoformat(value).utcoffset() is not None
    assert "error" in result("current_datetime", {"timezone": "Mars/Olympus"})


def test_unknown_tools_and_bad_arguments_become_error_results():
    assert "Unknown tool" in result("rm_rf", {})["error"]
    assert "not valid JSON" in result("calculate", "{oops")["error"]
    assert "Bad arguments" in result("calculate", {"nope": 1})["error"]


def test_schemas_describe_every_tool():
    names = {schema["function"]["name"] for schema in tool_schemas()}
    assert names == {"calculate", "current_datetime"}


@pytest.mark.parametrize(
    "expression",
    [
        "((10**1000)**1000)**8",
        "(10**1000)**5",
        "2**999 * 2**999 * 2**999 * 2**999 * 2**999 * 2**999 * 2**999 * 2**999 * 2**999 * 2**999 * 2**999",
    ],
)
def test_calculate_refuses_results_too_large_to_compute_or_print_quickly(expression: str):
    import time

    started = time.monotonic()
    assert result("calculate", {"expression": expression}) == {"error": "Result too large."}
    assert time.monotonic() - started < 1


async def test_a_tool_runs_off_the_event_loop():
    from chat.tools import arun_tool

    assert json.loads(await arun_tool("calculate", '{"expression": "2 + 2"}')) == {"result": 4}


# Each costs at most a few milliseconds once bounded; unbounded, the first ran 26 s holding the GIL
# (a tool thread cannot be stopped, so its timeout did not help).
WORST_EXPRESSIONS = [
    "round(1, -20000000)",
    "round(10**999, -10**9)",
    "round(factorial(500), -3000)",
    "round(1.5, 10**100)",
    "round(1.5, 2.5)",
    "9**999 * 9**999",
    "9**999 * 9**999 * 9**999 * 9**999",
    "factorial(500) * factorial(500) * factorial(500)",
    "factorial(500) ** 2 // 7 % factorial(499)",
    "factorial(500) + factorial(500) - factorial(499)",
    "factorial(500.5)",
    "factorial(10**100)",
    "2**2**2**2**2",
    "(-8) ** 0.5",
    "1e308 ** 1000",
    "1e400 ** 2",
    "sqrt(9**999 * 9**999)",
    "log(9**999 * 9**999)",
    "floor(1e308) * floor(1e308) * floor(1e308) * floor(1e308) * floor(1e308)",
    "max(" + "9**999, " * 60 + "1)",
    "-" * 480 + "1",
    "(" * 150 + "1" + ")" * 150,
    "1" + " + 1" * 120,
    "9" * 499,
    "9" * 240 + " * " + "9" * 240,
]


@pytest.mark.parametrize("expression", WORST_EXPRESSIONS)
def test_calculate_bounds_the_cost_of_every_operation(expression: str):
    """Unbounded, the worst of these held the interpreter for 26 s; bounded, each takes a few
    milliseconds. The limit sits far from both, and the collector is held off, so that a busy
    machine or a full collection of the whole run's heap landing inside the call (160 ms once on
    CI, for "1 + 1 + ...") cannot fail it, while a lost bound still does."""
    import gc
    import time

    gc.collect()
    gc.disable()
    try:
        started = time.thread_time()
        outcome = result("calculate", {"expression": expression})
        spent = time.thread_time() - started
    finally:
        gc.enable()
    assert spent < 0.5, outcome
    assert set(outcome) <= {"result", "error"}


def test_calculate_refuses_with_a_clear_message():
    assert result("calculate", {"expression": "round(1, -20000000)"}) == {
        "error": "round() takes at most 3100 digits either way."
    }
    assert result("calculate", {"expression": "(-8) ** 0.5"}) == {
        "error": "The result is not a real number."
    }
    assert "whole number" in result("calculate", {"expression": "factorial(5.5)"})["error"]
    assert result("calculate", {"expression": "round(123456, -3)"}) == {"result": 123000}


async def test_worst_expressions_in_a_loop_do_not_stall_the_event_loop():
    """A tool thread cannot be stopped; each of its steps must release the GIL quickly."""
    import threading
    import time

    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            for expression in WORST_EXPRESSIONS:
                run_tool("calculate", json.dumps({"expression": expression}))

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        worst_gap = 0.0
        last = time.monotonic()
        deadline = last + 1.5
        while time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            worst_gap, last = max(worst_gap, now - last), now
    finally:
        stop.set()
        thread.join(60)
    assert worst_gap < 0.5


def test_a_tool_round_is_left_out_of_the_prompt_whole_with_its_turn():
    """A tool's result sent without the call it answers is refused by the model servers."""
    from chat.selectors import _within_budget

    call = {"id": "c1", "type": "function", "function": {"name": "calc", "arguments": "1+1"}}
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "q1" * 20},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "2"},
        {"role": "assistant", "content": "Two."},
        {"role": "user", "content": "q2"},
    ]
    assert _within_budget(messages, 0) == messages
    assert _within_budget(messages, 100) == messages
    assert _within_budget(messages, 10) == [messages[0], messages[-1]]
    assert _within_budget(messages[1:], 1) == [messages[-1]]  # the last turn always goes


@pytest.mark.django_db(transaction=True)
def test_a_continue_sends_its_reply_so_far_within_the_prompt_budget(user, monkeypatch, settings):
    """The reply so far and the request to go on were added after the budget was applied: a
    Continue on a long reply in a long conversation went over it, older turns kept."""
    import asyncio

    from chat import services
    from chat.models import Message
    from chat.streaming.generation import CONTINUE_PROMPT, Generation

    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    settings.CHAT_MAX_PROMPT_CHARS = 1000
    conversation = services.conversation_create(owner=user)
    after = None
    for i in range(3):
        _, reply = services.message_submit(
            conversation=conversation, content=f"q{i} " + "x" * 200, after=after
        )
        Message.objects.filter(pk=reply.pk).update(status="complete", content=f"a{i} " + "y" * 200)
        after = reply.pk
    _, reply = services.message_submit(conversation=conversation, content="last", after=after)
    Message.objects.filter(pk=reply.pk).update(
        status="interrupted", content="z" * 900, finish_reason="length"
    )
    generation = Generation(
        reply=Message.objects.select_related("conversation").get(pk=reply.pk), worker_id="w"
    )
    sent = asyncio.run(generation._request_body())["messages"]
    assert sent == [
        {"role": "user", "content": "last"},
        {"role": "assistant", "content": "z" * 900},
        {"role": "user", "content": CONTINUE_PROMPT},
    ]
    assert generation.prompt_characters == 4 + 900 + len(CONTINUE_PROMPT)
