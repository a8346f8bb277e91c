"""Services of a test's own, to take away and bring back: a `redis-server` and a PostgreSQL
cluster on free ports (never the machine's shared ones), and what a server log says about it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.live import ChatClient, PageModel, ServerProcess, free_port, wait_for


def missing(program: str) -> None:
    """Skip the test (fail it with REQUIRE_SERVICES=1, as CI does): `program` is not installed."""
    reason = f"{program} is not installed"
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


class RedisServer:
    """`redis-server` on a free port, without persistence: a restart loses every key, as a
    Redis restarted without its data does."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
            missing("redis-server")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="chatsite-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.dir)]
        with open(self.dir / "redis.log", "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, check=False
            )
            if probe.stdout.strip() == b"PONG":
                return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


class PostgresCluster:
    """A PostgreSQL cluster of its own (`initdb`, `pg_ctl`) in a temporary directory, with one
    database `chatsite`. PostgreSQL refuses to run as root: as root it runs as `postgres`."""

    def __init__(self) -> None:
        bin_dir = _postgres_bin()
        if bin_dir is None:
            missing("PostgreSQL (initdb, pg_ctl in /usr/lib/postgresql/*/bin)")
        assert bin_dir is not None
        self.bin = bin_dir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="chatsite-pg-"))
        self.data = self.dir / "data"
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/chatsite"

    def _run(self, *command: str) -> None:
        subprocess.run([*self.as_user, *command], check=True, capture_output=True, timeout=120)

    def init(self) -> PostgresCluster:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres")
        self.start()
        self._run(
            str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "chatsite",
        )  # fmt: skip
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        log = str(self.dir / "postgres.log")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w",
                  "start")  # fmt: skip

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def cleanup(self) -> None:
        subprocess.run(
            [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
             "-w", "stop"],
            capture_output=True, check=False, timeout=60,
        )  # fmt: skip
        shutil.rmtree(self.dir, ignore_errors=True)


# --- A tab that reconnects the way the page does ----------------------------------------------


@dataclass
class Tab:
    """One conversation's page: its socket reconnects whenever it closes, and asks for the
    reply on every open, as static/chat/chat.js does."""

    client: ChatClient
    conversation_id: Any
    page: PageModel = field(default_factory=PageModel)
    closes: list[int] = field(default_factory=list)  # close codes; 1006 for a lost connection

    async def follow(self, reply_id: int, *, timeout: float = 60.0, retry: float = 0.2) -> None:
        async with asyncio.timeout(timeout):
            while reply_id not in self.page.finished:
                try:
                    async with self.client.socket(self.conversation_id) as ws:
                        await ws.send(json.dumps({"resync": reply_id}))
                        while reply_id not in self.page.finished:
                            self.page.apply(await ws.recv())
                except websockets.ConnectionClosed as closed:
                    self.closes.append(closed.rcvd.code if closed.rcvd else 1006)
                except (OSError, websockets.InvalidHandshake):
                    self.closes.append(1006)
                else:
                    return
                await asyncio.sleep(retry)


async def follow_once_streaming(tabs: list[Tab], reply_ids: list[int]) -> list[asyncio.Task[None]]:
    """Follow each tab's reply in a task of its own (`Tab.follow`); return the tasks once every
    reply shows some text."""
    following = [
        asyncio.create_task(tab.follow(reply_id))
        for tab, reply_id in zip(tabs, reply_ids, strict=True)
    ]

    async def all_streaming() -> bool:
        return all(
            len(tab.page.content(reply_id)) > 20
            for tab, reply_id in zip(tabs, reply_ids, strict=True)
        )

    await wait_for(all_streaming, timeout=20)
    return following


async def close_code_of_a_new_socket(client: ChatClient, conversation_id: Any) -> int | str:
    """What a socket opened now gets: its close code, "open" if it stays open a second, or
    the HTTP status of a refused handshake."""
    try:
        async with client.socket(conversation_id) as ws:
            async with asyncio.timeout(1.0):
                while True:
                    await ws.recv()
    except TimeoutError:
        return "open"
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else 1006
    except websockets.InvalidStatus as refused:
        return refused.response.status_code


# --- What a server log says ---------------------------------------------------------------------

LOG_LINE = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+) (.*)$")


@dataclass
class LogReport:
    tracebacks: int
    warnings: list[str]  # WARNING lines
    errors: list[str]  # ERROR and CRITICAL lines
    infos: list[str]


def read_log(text: str) -> LogReport:
    warnings, errors, infos = [], [], []
    for line in text.splitlines():
        match = LOG_LINE.match(line)
        if not match:
            continue
        level, _, message = match.groups()
        if level == "WARNING":
            warnings.append(message)
        elif level in {"ERROR", "CRITICAL"}:
            errors.append(message)
        elif level == "INFO":
            infos.append(message)
    return LogReport(text.count("Traceback"), warnings, errors, infos)


def assert_running(servers: list[ServerProcess]) -> None:
    """Every server process is still running; else fail with the log of each that ended."""
    ended = [server for server in servers if server.process and server.process.poll() is not None]
    assert not ended, "\n\n".join(
        f"exited with {server.process.returncode}:\n{server.log_text()[-6000:]}"
        for server in ended
        if server.process
    )


async def back_logged(servers: list[ServerProcess], service: str) -> None:
    """Wait until each of `servers` has logged that `service` is back: each process finds it
    back on its own probe's schedule, which nothing orders before what a test waits for."""

    async def all_back() -> bool:
        return all(f"{service} is back" in server.log_text() for server in servers)

    await wait_for(all_back, timeout=10)


def assert_outage_logged_once(log_text: str, service: str) -> None:
    """No traceback, no error, one WARNING that `service` went away and one INFO that it is
    back, and no other WARNING."""
    report = read_log(log_text)
    assert report.tracebacks == 0, log_text
    assert report.errors == [], log_text
    assert len(report.warnings) == 1 and report.warnings[0].startswith(
        f"{service} is unreachable"
    ), log_text
    assert sum(1 for line in report.infos if line.startswith(f"{service} is back")) == 1, log_text
