"""A fake OpenAI-compatible upstream for the benchmark, run as its own process:
`python -m bench.upstream --port N`.

`POST /v1/chat/completions` streams the reply that the last user message describes (see
`bench.tokens.Shape`) at its token rate, and records when it wrote each chunk to the socket
(time.time()). `POST /bench/records` with a JSON list of tags returns and forgets their
records. A small hand-written HTTP/1.1 server on asyncio streams: it must cost the machine as
little as possible, since it shares the CPU with the server it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from typing import Any

from bench.tokens import Shape, parse_shape

MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAX_REPLY_SECONDS = 900.0

records: dict[str, dict[str, Any]] = {}
others = 0  # requests that are not a benchmark stream (e.g. title generation)


def _sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    body = f"data: {data}\n\n".encode()
    return f"{len(body):x}\r\n".encode() + body + b"\r\n"


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _pieces(shape: Shape) -> list[bytes]:
    return [_sse(_chunk({"content": text})) for text in shape.chunk_texts()]


def _response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _stream(writer: asyncio.StreamWriter, body: dict[str, Any], received: float) -> None:
    messages = [m for m in body.get("messages", []) if m.get("role") == "user"]
    shape = parse_shape(str(messages[-1].get("content", ""))) if messages else None
    if shape is None:
        # Anything else the app asks (a conversation title): a short answer, not recorded.
        global others
        others += 1
        shape = Shape(f"other-{others}", 4, 10000.0)
    pieces = _pieces(shape)
    record: dict[str, Any] = {
        "received": received,
        "sent": [],
        "done": None,
        "disconnected": False,
        "chunks": len(pieces),
    }
    if shape.tag.startswith("other-"):
        return await _send_plain(writer, shape)
    previous = records.get(shape.tag)
    if previous is not None:
        record["requests"] = previous.get("requests", 1) + 1
        print(f"request {record['requests']} for {shape.tag}", flush=True)
    records[shape.tag] = record
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    loop = asyncio.get_running_loop()
    started = loop.time() + shape.ttft_ms / 1000.0
    if shape.ttft_ms:
        await asyncio.sleep(shape.ttft_ms / 1000.0)
    writer.write(_sse(_chunk({"role": "assistant", "content": ""})))
    sent = record["sent"]
    interval = shape.chunk / shape.rate
    deadline = loop.time() + MAX_REPLY_SECONDS
    transport = writer.transport
    for j, piece in enumerate(pieces):
        delay = started + j * interval - loop.time()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        if transport.is_closing() or loop.time() > deadline:
            record["disconnected"] = True
            return
        writer.write(piece)
        sent.append(time.time())
        if transport.get_write_buffer_size() > 256 * 1024:
            await writer.drain()
    writer.write(_sse(_chunk({}, "stop")))
    usage = {"prompt_tokens": 11, "completion_tokens": shape.tokens}
    writer.write(_sse({"id": "chatcmpl-bench", "choices": [], "usage": usage}))
    writer.write(_sse("[DONE]"))
    record["done"] = time.time()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def _send_plain(writer: asyncio.StreamWriter, shape: Shape) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    writer.write(_sse(_chunk({"role": "assistant", "content": "Benchmark conversation"})))
    writer.write(_sse(_chunk({}, "stop")) + _sse("[DONE]") + b"0\r\n\r\n")
    await writer.drain()


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        for _ in range(100_000):  # requests on one keep-alive connection
            head = await reader.readuntil(b"\r\n\r\n")
            received = time.time()
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, path, _version = request_line.split(" ", 2)
            headers = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if length > MAX_REQUEST_BYTES:
                writer.write(_response("413 Too Large", b"{}"))
                break
            raw = await reader.readexactly(length) if length else b""
            if method == "POST" and path.endswith("/chat/completions"):
                await _stream(writer, json.loads(raw), received)
            elif method == "POST" and path == "/bench/records":
                tags = json.loads(raw)
                found = {tag: records.pop(tag) for tag in tags if tag in records}
                writer.write(_response("200 OK", json.dumps(found).encode()))
            elif method == "GET" and path.endswith("/models"):
                writer.write(_response("200 OK", b'{"object":"list","data":[{"id":"bench"}]}'))
            elif method == "GET" and path == "/health":
                writer.write(_response("200 OK", f'{{"others":{others}}}'.encode()))
            else:
                writer.write(_response("404 Not Found", b"{}"))
            if headers.get("connection", "").lower() == "close":
                break
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(_handle, "127.0.0.1", port, backlog=2048)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"bench upstream listening on {port}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
