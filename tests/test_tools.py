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
