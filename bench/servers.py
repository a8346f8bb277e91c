"""The processes under test (daphne, `runworker chat-stream`), the fake upstream process, and
psutil readings of their CPU time and resident memory."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil

from chatsite import event_loop

ROOT = Path(__file__).resolve().parent.parent

# The ASGI server of the web processes: daphne (the app's), or uvicorn for comparison.
WEB_SERVERS = ("daphne", "uvicorn")
WEB_SERVER = "daphne"
# The server processes' event loop (chatsite/event_loop.py): uvloop (the app's default) or
# asyncio's own, for comparison.
EVENT_LOOPS = event_loop.CHOICES
EVENT_LOOP = "uvloop"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the app's own settings, plus `extra`."""
    drop = ("CHAT_", "CHATSITE_", "OPENAI_", "DJANGO_", "DATABASE_", "REDIS_URL", "CHANNEL_LAYER")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "CHAT_EVENT_LOOP": EVENT_LOOP,
        }
    )
    env.update(extra)
    return env


class Process:
    """One child process with its log in `log_dir`."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _check_alive(self) -> None:
        assert self.popen is not None
        if self.popen.poll() is not None:
            tail = "\n".join(self.log_text().splitlines()[-30:])
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")

    def wait_for_url(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer {url} in {timeout:g} s")

    def wait_for_log(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if text in self.log_text():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not log {text!r} in {timeout:g} s")

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def start_upstream(log_dir: Path) -> Process:
    port = free_port()
    process = Process(
        "upstream",
        [sys.executable, "-m", "bench.upstream", "--port", str(port)],
        clean_env(),
        log_dir,
    ).start()
    process.port = port
    try:
        process.wait_for_url(f"http://127.0.0.1:{port}/health")
    except BaseException:
        process.stop()
        raise
    return process


def start_web(
    name: str,
    env: dict[str, str],
    log_dir: Path,
    started: list[Process] | None = None,
) -> Process:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "chatsite.serve",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "chatsite.asgi:application",
    ]
    if WEB_SERVER == "uvicorn":
        # The comparison (`--server uvicorn`): the same Channels app on uvicorn with the loop
        # --event-loop names, httptools and websockets. No lifespan: Channels' router has
        # none; the embedded worker starts at the first call, as under daphne.
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--loop",
            EVENT_LOOP,
            "--no-access-log",
            "--ws-max-size",
            "65536",
            "chatsite.asgi:application",
        ]
    process = Process(name, command, env, log_dir).start()
    if started is not None:
        started.append(process)
    process.port = port
    process.wait_for_url(f"http://127.0.0.1:{port}/accounts/login/")
    return process


def start_worker(
    name: str, env: dict[str, str], log_dir: Path, started: list[Process] | None = None
) -> Process:
    command = [sys.executable, "manage.py", "runworker", "chat-stream"]
    process = Process(name, command, env, log_dir).start()
    if started is not None:
        started.append(process)
    process.wait_for_log("listening on")
    return process


@dataclass
class Usage:
    """CPU seconds and peak resident memory of some processes over one measured phase."""

    cpu_seconds: dict[str, float] = field(default_factory=dict)
    # (time.time(), CPU seconds of all the processes so far in the phase), every interval: CPU
    # over any part of a phase (its steady middle, without the replies' starts and ends).
    cpu_timeline: list[tuple[float, float]] = field(default_factory=list)
    other_cpu_seconds: dict[str, float] = field(default_factory=dict)
    rss_peak: dict[str, int] = field(default_factory=dict)
    rss_end: dict[str, int] = field(default_factory=dict)

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu_seconds.values())

    @property
    def rss_peak_total(self) -> int:
        return sum(self.rss_peak.values())

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds of all the processes between two time.time() moments in the phase,
        interpolated between samples."""
        points = self.cpu_timeline
        if len(points) < 2 or end <= start:
            return math.nan
        times = [t for t, _ in points]
        values = [v for _, v in points]
        return float(np.interp(end, times, values) - np.interp(start, times, values))


class Meter:
    """Samples the processes' RSS every `interval` s while a phase runs; CPU time from the
    difference of psutil's cpu_times at both ends."""

    def __init__(
        self,
        processes: list[Process],
        interval: float = 0.25,
        others: dict[str, int] | None = None,
    ) -> None:
        self.procs = {p.name: psutil.Process(p.pid) for p in processes}
        # Processes not started here (Redis): their CPU is read apart, never in the timeline.
        self.others = {name: psutil.Process(pid) for name, pid in (others or {}).items()}
        self._others0: dict[str, float] = {}
        self.interval = interval
        self._cpu0: dict[str, float] = {}
        self.usage = Usage()
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def _cpu(proc: psutil.Process) -> float:
        times = proc.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> dict[str, int]:
        return {name: int(proc.memory_info().rss) for name, proc in self.procs.items()}

    def start(self) -> Meter:
        self._cpu0 = {name: self._cpu(proc) for name, proc in self.procs.items()}
        self._others0 = {name: self._cpu(proc) for name, proc in self.others.items()}
        self.usage.cpu_timeline = [(time.time(), 0.0)]
        self.usage.rss_peak = self.rss()
        self._task = asyncio.create_task(self._sample())
        return self

    async def _sample(self) -> None:
        for _ in range(100_000):
            await asyncio.sleep(self.interval)
            cpu = sum(self._cpu(proc) - self._cpu0[name] for name, proc in self.procs.items())
            self.usage.cpu_timeline.append((time.time(), cpu))
            for name, value in self.rss().items():
                self.usage.rss_peak[name] = max(self.usage.rss_peak.get(name, 0), value)

    async def stop(self) -> Usage:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.usage.cpu_seconds = {
            name: self._cpu(proc) - self._cpu0[name] for name, proc in self.procs.items()
        }
        self.usage.cpu_timeline.append((time.time(), self.usage.cpu_total))
        self.usage.other_cpu_seconds = {
            name: self._cpu(proc) - self._others0[name] for name, proc in self.others.items()
        }
        self.usage.rss_end = self.rss()
        for name, value in self.usage.rss_end.items():
            self.usage.rss_peak[name] = max(self.usage.rss_peak.get(name, 0), value)
        return self.usage


def redis_server_pid(port: int = 6379) -> int | None:
    """The Redis server's process (shared, not started here), to read its CPU time beside the
    cluster's; None if it cannot be found or read."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if proc.info["name"] == "redis-server" and f":{port}" in " ".join(
                proc.info["cmdline"] or []
            ):
                proc.cpu_times()
                return int(proc.pid)
        except (psutil.Error, TypeError):
            continue
    return None
