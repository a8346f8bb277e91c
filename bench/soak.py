"""The soak test: `.venv/bin/python -m bench.soak --minutes N [--users U] [--write]`.

Starts the fake upstream (`bench.upstream`) and one daphne (SQLite, the in-process channel
layer, the embedded worker), then U users talk to it for N minutes the way people do: each
sends a message in one of their conversations and then either reads the reply to its end, or
closes the tab mid-reply and opens it again a moment later (the page asks for the reply
again), or closes it and goes on in another conversation. At the end it reports:

- turns: replies asked for, and how each tab behaved;
- replies lost: any not saved `complete` with exactly the text the upstream sent, and any tab
  that stayed to the end but showed other text (must be 0);
- memory: the server's resident memory after a warm-up, at the end, its peak and its slope;
- log lines above INFO in the server's log (and tracebacks), grouped.

Raw numbers go to bench/results/soak-<time>.json; `--write` also puts the summary in
bench/soak.md, which the benchmark report includes (docs/benchmarks.md, section "Soak").
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import random
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from websockets.asyncio.client import ClientConnection

from bench.clients import REPLY_ID, Target
from bench.page import ReplyView, reference
from bench.servers import ROOT, Process, clean_env, start_upstream, start_web
from bench.tokens import Shape

SECRET = "soak-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
CONVERSATIONS_PER_USER = 4
LENGTHS = (30, 60, 120, 240)  # tokens per reply (few lengths: their references are cached)
RATES = (50.0, 100.0, 200.0)  # tokens per second
BEHAVIOURS = {"read": 0.5, "reconnect": 0.3, "leave": 0.2}
WARM_UP_SECONDS = 15.0
TAB_TIMEOUT = 60.0
LOG_LEVEL = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (\S+) (.*)$")
SOAK_MD = Path(__file__).with_name("soak.md")


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


@dataclass
class Turn:
    user: int
    tag: str
    tokens: int
    rate: float
    behaviour: str
    reply_id: int | None = None
    tab_text_ok: bool | None = None  # None: the tab did not stay to the end
    error: str = ""


@dataclass
class Soak:
    minutes: float
    users: int
    seed: int
    server: Process
    targets: list[list[Target]]  # per user, their conversations
    turns: list[Turn] = field(default_factory=list)
    busy_posts: int = 0
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds, bytes)

    async def run(self) -> None:
        deadline = time.monotonic() + self.minutes * 60
        sampler = asyncio.create_task(self._sample_memory())
        try:
            await asyncio.gather(*(self._user(u, deadline) for u in range(self.users)))
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler

    async def _sample_memory(self) -> None:
        process = psutil.Process(self.server.pid)
        started = time.monotonic()
        while True:
            self.rss.append((time.monotonic() - started, int(process.memory_info().rss)))
            await asyncio.sleep(1.0)

    async def _user(self, user: int, deadline: float) -> None:
        rng = random.Random(self.seed * 1000 + user)
        busy_until = [0.0] * len(self.targets[user])
        n = 0
        async with httpx.AsyncClient(timeout=30) as http:
            while time.monotonic() < deadline:
                free = [i for i, t in enumerate(busy_until) if t <= time.monotonic()]
                if not free:
                    await asyncio.sleep(0.2)
                    continue
                i = rng.choice(free)
                n += 1
                turn = Turn(
                    user,
                    f"soak-{self.seed}-{user}-{n}",
                    rng.choice(LENGTHS),
                    rng.choice(RATES),
                    rng.choices(list(BEHAVIOURS), weights=list(BEHAVIOURS.values()))[0],
                )
                try:
                    await self._turn(http, self.targets[user][i], turn, rng)
                except Exception as exc:  # a failed turn is reported, not fatal to the soak
                    turn.error = turn.error or f"{type(exc).__name__}: {exc}"
                if turn.reply_id is not None:
                    self.turns.append(turn)
                if turn.behaviour == "leave":
                    busy_until[i] = time.monotonic() + turn.tokens / turn.rate + 2.0
                await asyncio.sleep(rng.uniform(0.1, 1.0))  # reading, typing

    async def _turn(self, http: httpx.AsyncClient, target: Target, turn: Turn, rng: Any) -> None:
        shape = Shape(turn.tag, turn.tokens, turn.rate)
        headers = {
            "Cookie": f"sessionid={target.session}; csrftoken={target.csrf}",
            "X-CSRFToken": target.csrf,
            "HX-Request": "true",
            "Origin": target.origin,
        }
        async with target.ws() as ws:
            response = await http.post(
                f"{target.origin}/c/{target.conversation}/messages/",
                data={"content": shape.message()},
                headers=headers,
            )
            if response.status_code == 409:  # a reply left earlier is still streaming
                self.busy_posts += 1
                return
            ids = REPLY_ID.findall(response.text)
            if response.status_code != 200 or len(ids) != 2:
                raise RuntimeError(f"POST {response.status_code}: {response.text[:200]}")
            turn.reply_id = int(ids[1])
            view = ReplyView(turn.reply_id)
            if turn.behaviour == "read":
                await self._read(ws, view)
                turn.tab_text_ok = view.blocks == reference(turn.tokens, "plain").final_html
                return
            # Close the tab somewhere in the reply (or just after it).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(rng.uniform(0.05, 1.2) * turn.tokens / turn.rate):
                    await self._read(ws, view)
        if turn.behaviour == "reconnect":
            await asyncio.sleep(rng.uniform(0.1, 2.0))
            view = ReplyView(turn.reply_id)  # what it shows comes again, whole
            async with target.ws() as ws:
                await ws.send(json.dumps({"resync": turn.reply_id}))  # as chat.js does
                await self._read(ws, view)
            turn.tab_text_ok = view.blocks == reference(turn.tokens, "plain").final_html

    async def _read(self, ws: ClientConnection, view: ReplyView) -> None:
        async with asyncio.timeout(TAB_TIMEOUT):
            while not (await _apply(ws, view)).final:
                pass


async def _apply(ws: ClientConnection, view: ReplyView) -> Any:
    return view.apply(str(await ws.recv()))


def prepare(env: dict[str, str], users: int) -> tuple[str, list[list[tuple[str, str]]]]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.dbtool",
            "prepare",
            str(users),
            str(users * CONVERSATIONS_PER_USER),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    data = json.loads(out.stdout)
    # Conversation i belongs to user i % users (bench.dbtool).
    per_user: list[list[tuple[str, str]]] = [[] for _ in range(users)]
    for i, (session, conversation) in enumerate(data["clients"]):
        per_user[i % users].append((session, conversation))
    return data["csrf"], per_user


def saved_replies(env: dict[str, str], ids: list[int]) -> dict[str, dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.dbtool", "replies"],
        cwd=ROOT,
        env=env,
        input=json.dumps(ids),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result: dict[str, dict[str, Any]] = json.loads(out.stdout)
    return result


async def wait_saved(env: dict[str, str], ids: list[int]) -> dict[str, dict[str, Any]]:
    """The replies as saved, once none is still pending or streaming (or after a minute)."""
    deadline = time.monotonic() + 60
    while True:
        rows = await asyncio.to_thread(saved_replies, env, ids)
        active = [i for i, r in rows.items() if r["status"] in ("pending", "streaming")]
        if not active or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(1.0)


def log_problems(text: str) -> dict[str, Any]:
    lines = [m.groups() for line in text.splitlines() if (m := LOG_LEVEL.match(line))]
    grouped = collections.Counter(f"{level} {name} {text[:120]}" for level, name, text in lines)
    return {
        "above_info": len(lines),
        "tracebacks": text.count("Traceback"),
        "lines": dict(grouped.most_common()),
    }


def memory(rss: list[tuple[float, int]]) -> dict[str, float]:
    after = [(t, b) for t, b in rss if t >= WARM_UP_SECONDS] or rss
    if not after:
        return {}
    mb = 1024 * 1024
    slope = 0.0
    if len(after) > 2:
        ts = [t for t, _ in after]
        bs = [b for _, b in after]
        mean_t, mean_b = sum(ts) / len(ts), sum(bs) / len(bs)
        var = sum((t - mean_t) ** 2 for t in ts)
        if var:
            slope = sum((t - mean_t) * (b - mean_b) for t, b in after) / var
    return {
        "after_warm_up_mb": after[0][1] / mb,
        "end_mb": after[-1][1] / mb,
        "peak_mb": max(b for _, b in rss) / mb,
        "growth_mb": (after[-1][1] - after[0][1]) / mb,
        "slope_mb_per_min": slope * 60 / mb,
    }


def summary_markdown(result: dict[str, Any]) -> str:
    turns, lost, mem, logs = result["turns"], result["lost"], result["memory"], result["log"]
    by = turns["by_behaviour"]
    lines = [
        f"Run of {result['date']} (`python -m bench.soak --minutes {result['minutes']:g} "
        f"--users {result['users']}`): one daphne (SQLite, in-process layer, embedded worker) "
        "and the fake upstream; each user sends a message, then reads the reply to its end, or "
        "closes the tab mid-reply and opens it again 0.1-2 s later, or closes it and goes on "
        "elsewhere. Replies of 30-240 tokens at 50-200 tokens/s.",
        "",
        "| turns | read to the end | closed and reopened | closed and left | replies lost "
        "| tabs with wrong text | failed turns |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| {turns['total']:,} | {by.get('read', 0):,} | {by.get('reconnect', 0):,} "
        f"| {by.get('leave', 0):,} | {lost['replies']} | {lost['tabs']} | {turns['failed']} |",
        "",
        f"Server memory: {mem.get('after_warm_up_mb', 0):.1f} MB after {WARM_UP_SECONDS:g} s, "
        f"{mem.get('end_mb', 0):.1f} MB at the end (growth {mem.get('growth_mb', 0):+.1f} MB, "
        f"slope {mem.get('slope_mb_per_min', 0):+.2f} MB/min), peak {mem.get('peak_mb', 0):.1f} "
        f"MB. Log lines above INFO: {logs['above_info']}; tracebacks: {logs['tracebacks']}.",
    ]
    for line, count in logs["lines"].items():
        lines.append(f"- {count} x `{line}`")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    run_dir = ROOT / "bench" / "results" / f"soak-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    upstream = start_upstream(run_dir)
    env = clean_env(
        DATABASE_URL=f"sqlite:///{run_dir / 'soak.sqlite3'}",
        OPENAI_BASE_URL=f"http://127.0.0.1:{upstream.port}/v1",
        OPENAI_API_KEY="sk-soak-not-a-real-key",
        CHAT_MODEL="bench-model",
        CHAT_GENERATE_TITLES="false",
        CHAT_LOG_LEVEL="INFO",
        DJANGO_SECRET_KEY=SECRET,
        DJANGO_DEBUG="false",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    server: Process | None = None
    try:
        log(f"preparing {args.users} users, {CONVERSATIONS_PER_USER} conversations each")
        csrf, conversations = await asyncio.to_thread(prepare, env, args.users)
        server = start_web("soak-web", env, run_dir)
        targets = [
            [Target(server.port, session, csrf, conversation) for session, conversation in own]
            for own in conversations
        ]
        soak = Soak(args.minutes, args.users, args.seed, server, targets)
        log(f"{args.users} users for {args.minutes:g} min")
        await soak.run()
        log(f"{len(soak.turns)} turns; waiting for the last replies to be saved")
        ids = [t.reply_id for t in soak.turns if t.reply_id is not None]
        rows = await wait_saved(env, ids)
        rss = list(soak.rss)
    finally:
        if server is not None:
            server.stop()
        upstream.stop()
    lost_replies, lost_tabs, failed = [], [], []
    for turn in soak.turns:
        row = rows.get(str(turn.reply_id))
        expected = Shape(turn.tag, turn.tokens, turn.rate).text()
        if row is None or row["status"] != "complete" or row["content"] != expected:
            lost_replies.append({"turn": asdict(turn), "saved": row and {
                k: row[k] for k in ("status", "error")
            }})  # fmt: skip
        if turn.tab_text_ok is False:
            lost_tabs.append(asdict(turn))
        if turn.error:
            failed.append(asdict(turn))
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "minutes": args.minutes,
        "users": args.users,
        "seed": args.seed,
        "turns": {
            "total": len(soak.turns),
            "by_behaviour": dict(collections.Counter(t.behaviour for t in soak.turns)),
            "busy_posts": soak.busy_posts,
            "failed": len(failed),
        },
        "lost": {"replies": len(lost_replies), "tabs": len(lost_tabs)},
        "memory": memory(rss),
        "log": log_problems(server.log_text()),
        "lost_replies": lost_replies[:20],
        "lost_tabs": lost_tabs[:20],
        "failed_turns": failed[:20],
        "rss": rss,
    }
    (run_dir / "soak.json").write_text(json.dumps(result, indent=1))
    log(f"raw results in {run_dir.relative_to(ROOT)}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--write", action="store_true", help="put the summary in bench/soak.md (and docs/)"
    )
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    text = summary_markdown(result)
    print(text)
    if args.write:
        SOAK_MD.write_text(text + "\n")
        from bench.report import write_soak_section

        write_soak_section(ROOT / "docs" / "benchmarks.md")
        log("wrote bench/soak.md and its section of docs/benchmarks.md")
    if result["lost"]["replies"] or result["lost"]["tabs"] or result["turns"]["failed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
