"""Server CPU per request and per turn: what one user's clicks cost the one daphne process.

One user with many conversations, one of them long (markdown and code, stored rendered). Each
phase repeats one action N times back to back, one at a time, and divides the server
process's CPU time (user + system, all its threads, from psutil) over the phase by N:

- the conversation page, the list page (`conversations/`, the sidebar's list) and the start
  page `/`, each a plain GET;
- a new conversation and its socket: `POST /c/`, its redirect to the new page, and the
  WebSocket the page opens (kept open for the next phase);
- a turn in each of those conversations: the htmx POST of a message, its one-token reply
  streamed over the socket until the saved reply's footer arrives, and the title the model
  writes after the first exchange, until its frame arrives.

The client runs in this process, the fake upstream in its own: neither is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from websockets.asyncio.client import ClientConnection, connect

from bench.page import final_of
from bench.tokens import Shape

ARTICLE = re.compile(r'<article id="m(\d+)"')
SIDEBAR_ENTRY = re.compile(r'id="conv-link-')
TITLE_FRAME = 'id="conversation-title"'

# (scenario, what it is, target in ms of server CPU)
PHASES = (
    ("req-conversation", "the conversation page ({messages} messages of markdown and code)", 5.0),
    ("req-list", "the list page `conversations/` ({conversations} conversations)", 5.0),
    ("req-start", "the start page `/` ({conversations} conversations)", 5.0),
    ("req-new", "a new conversation: `POST /c/`, its redirect, the page and its socket", 10.0),
    ("req-turn", "a turn: send, a one-token reply streamed and saved, the title", 15.0),
)


@dataclass
class Site:
    port: int
    pid: int
    session: str
    csrf: str
    conversation: str  # the long one

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.origin,
            cookies={"sessionid": self.session, "csrftoken": self.csrf},
            timeout=30,
        )

    def post_headers(self, htmx: bool = False) -> dict[str, str]:
        headers = {"X-CSRFToken": self.csrf, "Origin": self.origin}
        if htmx:
            headers["HX-Request"] = "true"
        return headers

    def ws(self, conversation: str) -> Any:
        return connect(
            f"ws://127.0.0.1:{self.port}/ws/c/{conversation}/",
            additional_headers={"Cookie": f"sessionid={self.session}", "Origin": self.origin},
            compression=None,
            max_size=None,
            open_timeout=30,
            ping_interval=None,
            close_timeout=2,
        )


class CpuClock:
    """The server process's CPU time, in seconds."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)

    def now(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)


class Profiler:
    """py-spy attached to the server for one phase (`--profile`); stopped with SIGINT."""

    def __init__(self, pid: int, path: Path) -> None:
        self.path = path
        self.popen = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--rate",
                "500",
                "--format",
                "raw",
                "--threads",
                # BENCH_PROFILE_GIL=1: only the thread holding the interpreter lock, as in
                # bench.run; otherwise every thread, idle ones too.
                *(["--gil"] if os.environ.get("BENCH_PROFILE_GIL") else ["--idle"]),
                "-o",
                str(path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # attached before the phase starts

    def stop(self) -> Path | None:
        self.popen.send_signal(signal.SIGINT)
        try:
            self.popen.wait(60)
        except subprocess.TimeoutExpired:
            self.popen.kill()
        return self.path if self.path.exists() else None


async def _phase(
    clock: CpuClock,
    n: int,
    action: Callable[[int], Awaitable[None]],
    warmup: int,
    profile: Callable[[], Any] = lambda: None,
) -> dict[str, Any]:
    for i in range(warmup):
        await action(-1 - i)
    await asyncio.sleep(0.3)
    profile()  # after the warm-ups: a first request imports and compiles
    walls: list[float] = []
    started, cpu0 = time.monotonic(), clock.now()
    for i in range(n):
        t0 = time.monotonic()
        await action(i)
        walls.append(time.monotonic() - t0)
    # What the server does after the client has its answer (a socket's first query after the
    # handshake, the group joins) belongs to the phase too.
    await asyncio.sleep(0.3)
    cpu = clock.now() - cpu0
    elapsed = time.monotonic() - started
    walls.sort()
    return {
        "n": n,
        "cpu_s": cpu,
        "elapsed_s": elapsed,
        "cpu_ms_per": 1000 * cpu / n,
        "wall_ms_p50": 1000 * walls[len(walls) // 2],
        "wall_ms_max": 1000 * walls[-1],
    }


async def _read_until(ws: ClientConnection, reply_id: int, timeout: float) -> None:
    """Frames until the reply's saved end and the new title have both arrived."""
    finished = titled = False
    async with asyncio.timeout(timeout):
        while not (finished and titled):
            frame = str(await ws.recv())
            finished = finished or final_of(frame) == reply_id
            titled = titled or TITLE_FRAME in frame


async def measure(
    site: Site,
    *,
    n_requests: int,
    n_turns: int,
    conversations: int,
    messages: int,
    run_id: str,
    profile_dir: Path | None,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    clock = CpuClock(site.pid)
    results: list[dict[str, Any]] = []
    idle0, t0 = clock.now(), time.monotonic()
    await asyncio.sleep(3.0)
    idle_ms_per_s = 1000 * (clock.now() - idle0) / (time.monotonic() - t0)
    log(f"pages: server CPU while idle {idle_ms_per_s:.2f} ms/s")
    sockets: list[tuple[str, ClientConnection]] = []
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(site.http())

        def get(path: str, check: Callable[[str], bool]) -> Callable[[int], Awaitable[None]]:
            async def action(i: int) -> None:
                response = await http.get(path)
                if response.status_code != 200 or not check(response.text):
                    raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:300]}")

            return action

        async def open_conversation() -> tuple[str, ClientConnection]:
            response = await http.post(
                "/c/", headers=site.post_headers(), follow_redirects=True, data={}
            )
            if response.status_code != 200 or len(response.history) != 1:
                raise RuntimeError(f"POST /c/: {response.status_code} {response.text[:300]}")
            conversation = response.url.path.strip("/").split("/")[-1]
            return conversation, await stack.enter_async_context(site.ws(conversation))

        async def new_conversation(i: int) -> None:
            pair = await open_conversation()
            if i >= 0:
                sockets.append(pair)

        async def turn(i: int) -> None:
            # A warm-up turn goes to a conversation of its own.
            conversation, ws = sockets[i] if i >= 0 else await open_conversation()
            shape = Shape(f"{run_id}-turn-{i}", 1, 1000.0)
            response = await http.post(
                f"/c/{conversation}/messages/",
                headers=site.post_headers(htmx=True),
                data={"content": shape.message(), "idempotency_key": str(uuid.uuid4())},
            )
            ids = ARTICLE.findall(response.text)
            if response.status_code != 200 or len(ids) != 2:
                raise RuntimeError(f"POST message: {response.status_code} {response.text[:300]}")
            await _read_until(ws, int(ids[1]), 30.0)

        actions: dict[str, tuple[Callable[[int], Awaitable[None]], int]] = {
            "req-conversation": (
                get(
                    f"/c/{site.conversation}/",
                    lambda text: len(ARTICLE.findall(text)) == messages,
                ),
                n_requests,
            ),
            "req-list": (
                get("/conversations/", lambda text: len(SIDEBAR_ENTRY.findall(text)) >= 50),
                n_requests,
            ),
            "req-start": (
                get("/", lambda text: len(SIDEBAR_ENTRY.findall(text)) >= 50),
                n_requests,
            ),
            "req-new": (new_conversation, n_turns),
            "req-turn": (turn, n_turns),
        }
        for scenario, label, target in PHASES:
            action, n = actions[scenario]
            label = label.format(messages=messages, conversations=f"{conversations:,}")
            profilers: list[Profiler] = []

            def profile(name: str = scenario, started: list[Profiler] = profilers) -> None:
                if profile_dir is not None:
                    started.append(Profiler(site.pid, profile_dir / f"profile-pages-{name}.txt"))

            log(f"pages / {scenario}: {n} x {label.split(':')[0]} ...")
            try:
                out = await _phase(clock, n, action, warmup=3, profile=profile)
            finally:
                path = profilers[0].stop() if profilers else None
            if path is not None:
                from bench import report

                report.summarise_profile(path)
                log(f"  profile: {path} (+ .top.txt)")
            out.update(
                {
                    "setup": "pages",
                    "scenario": scenario,
                    "label": label,
                    "target_ms": target,
                    "idle_ms_per_s": idle_ms_per_s,
                    # For the report's generic code: one "stream" per phase, and it ran.
                    "streams": 1,
                    "ok": 1,
                }
            )
            log(
                f"  -> server CPU {out['cpu_ms_per']:.2f} ms each (target {target:g}), "
                f"wall p50 {out['wall_ms_p50']:.1f} ms"
            )
            results.append(out)
    return results
