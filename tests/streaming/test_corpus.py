"""The stream parser against a corpus of real-world `/v1/chat/completions` stream shapes.

Each file in tests/streaming/corpus/ is a JSON list of cases: the raw SSE text of a stream and what
`parse_stream` must make of it. The same stream must parse the same however its bytes are split.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat.streaming.completion import parse_stream
from chat.streaming.errors import UpstreamStreamError

CORPUS_DIR = Path(__file__).parent / "corpus"
EXPECTED_KEYS = {
    "content",
    "reasoning",
    "refusal",
    "tool_calls",
    "finish_reason",
    "usage",
    "done",
    "error",
}


def _load_cases() -> list[dict[str, Any]]:
    cases = []
    for path in sorted(CORPUS_DIR.glob("*.json")):
        for case in json.loads(path.read_text(encoding="utf-8")):
            case["file"] = path.name
            cases.append(case)
    return cases


CASES = _load_cases()
CASE_IDS = [f"{case['file'][:-5]}:{case['name']}" for case in CASES]


def _outcome(pieces: list[bytes]) -> dict[str, Any]:
    """Everything parse_stream makes of the pieces, or the error it raised."""
    try:
        completion = parse_stream(pieces)
    except UpstreamStreamError as exc:
        return {"error": exc.message}
    usage = completion.usage
    return {
        "content": completion.content,
        "reasoning": completion.reasoning,
        "refusal": completion.refusal,
        "tool_calls": completion.tool_call_list(),
        "finish_reason": completion.finish_reason,
        "usage": None
        if usage is None
        else {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens},
        "model": completion.model,
        "done": completion.done,
        "error": None,
    }


def _check(case: dict[str, Any], outcome: dict[str, Any]) -> None:
    expected = case["expected"]
    if expected["error"] is not None:
        assert outcome["error"] is not None, f"expected an UpstreamStreamError, got {outcome}"
        assert expected["error"] in outcome["error"]
        return
    assert outcome["error"] is None, f"unexpected UpstreamStreamError: {outcome['error']}"
    for key in EXPECTED_KEYS - {"error"}:
        assert outcome[key] == expected[key], f"{key}: {outcome[key]!r} != {expected[key]!r}"
    if "model" in expected:
        assert outcome["model"] == expected["model"]


def test_corpus_is_well_formed() -> None:
    assert len(CASES) >= 50
    names = [case["name"] for case in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    for case in CASES:
        assert set(case) >= {"name", "source", "sse", "expected"}, case["name"]
        assert case["source"], case["name"]
        assert EXPECTED_KEYS <= set(case["expected"]) <= EXPECTED_KEYS | {"model"}, case["name"]
    # The split-anywhere property only means something if multi-byte text and CRLF are present.
    assert any(any(ord(ch) > 0xFFFF for ch in case["sse"]) for case in CASES)
    assert any(any(0x7F < ord(ch) <= 0xFFFF for ch in case["sse"]) for case in CASES)
    assert any("\r\n" in case["sse"] for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case_in_one_piece(case: dict[str, Any]) -> None:
    _check(case, _outcome([case["sse"].encode("utf-8")]))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case_byte_by_byte(case: dict[str, Any]) -> None:
    data = case["sse"].encode("utf-8")
    _check(case, _outcome([data[i : i + 1] for i in range(len(data))]))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case_byte_by_byte_with_empty_pieces(case: dict[str, Any]) -> None:
    data = case["sse"].encode("utf-8")
    pieces = [b""]
    for i in range(len(data)):
        pieces += [data[i : i + 1], b""]
    _check(case, _outcome(pieces))


@settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.data())
def test_any_split_gives_the_one_piece_result(data: st.DataObject) -> None:
    case = data.draw(st.sampled_from(CASES), label="case")
    raw = case["sse"].encode("utf-8")
    cuts = data.draw(
        st.lists(st.integers(min_value=0, max_value=len(raw)), max_size=40), label="cuts"
    )
    bounds = [0, *sorted(cuts), len(raw)]
    pieces = [raw[start:end] for start, end in itertools.pairwise(bounds)]
    assert b"".join(pieces) == raw
    assert _outcome(pieces) == _outcome([raw])


def test_usage_is_found_only_where_a_chunk_can_hold_it_even_with_escaped_keys():
    """Chunks are searched for usage only where their text holds the word or a JSON escape
    (chat.streaming.completion): a key written with escapes still counts."""
    from chat.streaming.completion import Completion
    from chat.streaming.sse import ServerSentEvent

    escaped = Completion()
    escaped.feed(
        ServerSentEvent('{"choices":[],"\\u0075sage":{"prompt_tokens":3,"completion_tokens":4}}')
    )
    assert (escaped.usage.prompt_tokens, escaped.usage.completion_tokens) == (3, 4)
    vendor = Completion()
    vendor.feed(ServerSentEvent('{"choices":[{"index":0,"delta":{"content":"Hi"}}]}'))
    assert vendor.usage is None
    vendor.feed(ServerSentEvent('{"choices":[],"x_v":{"usage":{"completion_tokens":1}}}'))
    assert vendor.usage.completion_tokens == 1 and vendor.content == "Hi"


def test_half_a_character_becomes_the_replacement_character():
    """A lone surrogate ("\\ud83d", escaped in the JSON) is half of a character: no text
    that holds one can be encoded, so the reply could be neither sent to a page nor saved."""
    from chat.streaming.completion import Completion
    from chat.streaming.sse import ServerSentEvent

    completion = Completion()
    for text in ["Before \\ud83d", " a pair \\ud83d\\ude00,", " after \\udc00."]:
        completion.feed(
            ServerSentEvent('{"choices":[{"index":0,"delta":{"content":"' + text + '"}}]}')
        )
    assert completion.content == "Before \ufffd a pair 😀, after \ufffd."
    completion.content.encode()  # whole characters only
