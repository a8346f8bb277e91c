"""The SSE decoder on its own: WHATWG line and field rules at chunk edges, and its cost.

tests/streaming/test_corpus.py checks whole vendor streams under random splits; these pin the edges
one behaviour at a time, and that a long line costs time in proportion to its length.
"""

from __future__ import annotations

import time

from chat.streaming.sse import ServerSentEvent, SSEDecoder

READ_SIZE = 1024
MiB = 1024 * 1024


def decode(*pieces: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = [event for piece in pieces for event in decoder.feed(piece)]
    return events + decoder.close()


def _reads_of_one_line(size: int) -> list[bytes]:
    """One `data:` line of `size` bytes, and its event's end, in 1 KiB reads."""
    raw = b"data: " + b"x" * size + b"\n\n"
    return [raw[i : i + READ_SIZE] for i in range(0, len(raw), READ_SIZE)]


def _cpu_seconds_to_decode(reads: list[bytes], size: int) -> float:
    decoder = SSEDecoder()
    start = time.process_time()
    events = [event for read in reads for event in decoder.feed(read)]
    elapsed = time.process_time() - start
    assert len(events) == 1 and len(events[0].data) == size
    return elapsed


def test_a_long_line_in_small_reads_decodes_in_time_proportional_to_its_length():
    """The best CPU time of each size, measured in turns (so that a slow spell of the machine
    slows both alike), up to nine turns: a slow (quadratic) decoder gets one or two."""
    sizes = (1 * MiB, 4 * MiB)
    reads = {size: _reads_of_one_line(size) for size in sizes}
    best = dict.fromkeys(sizes, float("inf"))
    spent, turns = 0.0, 0
    while turns < 9 and spent < 3.0:
        for size in sizes:
            elapsed = _cpu_seconds_to_decode(reads[size], size)
            best[size], spent = min(best[size], elapsed), spent + elapsed
        turns += 1
    one, four = best[1 * MiB], best[4 * MiB]
    # Linear is about 4; re-scanning the pending text on every read makes it about 16.
    assert four / max(one, 1e-6) < 8, f"1 MiB: {one:.4f}s, 4 MiB: {four:.4f}s"


def test_a_crlf_split_between_reads_ends_one_line():
    events = decode(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n")
    assert [e.data for e in events] == ["a\nb"]


def test_a_cr_at_the_end_of_a_read_then_an_empty_read_keeps_the_pending_cr():
    events = decode(b"data: a\r", b"", b"\n\r\n")
    assert [e.data for e in events] == ["a"]


def test_a_lone_cr_ends_a_line_when_the_next_read_starts_with_text():
    events = decode(b"data: a\r", b"\rdata: b\r\r")
    assert [e.data for e in events] == ["a", "b"]


def test_the_bom_is_dropped_once_even_when_split_across_reads():
    bom = "\ufeff".encode()
    events = decode(bom[:1], bom[1:], b"data: a\n\n", bom + b"data: b\n\n")
    # Only the stream's first BOM goes; a later one is part of a field name, so not `data`.
    assert [e.data for e in events] == ["a"]


def test_a_line_split_across_many_reads_is_joined():
    events = decode(b"da", b"ta", b": he", b"llo", b" world", b"\n", b"\n")
    assert [e.data for e in events] == ["hello world"]


def test_a_multibyte_character_split_across_reads_is_kept():
    raw = "data: héllo 🙂\n\n".encode()
    events = decode(*[raw[i : i + 1] for i in range(len(raw))])
    assert [e.data for e in events] == ["héllo 🙂"]


def test_fields_set_event_id_and_retry_and_comments_are_ignored():
    events = decode(b": hi\nevent: ping\nid: 7\nretry: 250\nretry: x\ndata: a\n\ndata: b\n\n")
    assert events == [
        ServerSentEvent(data="a", event="ping", id="7", retry=250),
        ServerSentEvent(data="b", event="message", id="7", retry=250),
    ]


def test_an_event_with_no_data_is_not_dispatched():
    assert decode(b"event: ping\n\nid: 3\n\n: comment\n\n") == []


def test_the_last_line_without_a_line_end_counts_at_close():
    assert [e.data for e in decode(b"data: [DONE]")] == ["[DONE]"]
