"""A slow tool, registered by tests/settings.py in the server processes a test starts with
CHAT_TEST_SLOW_TOOL_SECONDS set: it runs that long, or until the file named by
CHAT_TEST_SLOW_TOOL_RELEASE exists. With CHAT_TEST_SLOW_TOOL_LOG set, it writes a line to that
file as it starts and as it ends."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from chat import tools


def register_slow_tool(seconds: float) -> None:
    log = os.environ.get("CHAT_TEST_SLOW_TOOL_LOG", "")
    release = os.environ.get("CHAT_TEST_SLOW_TOOL_RELEASE", "")

    def note(line: str) -> None:
        if log:
            with open(log, "a") as file:
                file.write(line + "\n")

    @tools.tool(
        "slow_lookup",
        f"Looks something up; takes up to {seconds:g} s.",
        {"type": "object", "properties": {}, "required": []},
    )
    def slow_lookup() -> str:
        note("started")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (release and os.path.exists(release)):
            time.sleep(0.02)
        note("ended")
        return "found"


@dataclass
class HeldTool:
    """The slow tool in a server process a test starts with `env()`: it runs until the test
    calls `release()`, and `said(line)` tells whether it has started or ended."""

    folder: Path

    def env(self) -> dict[str, str]:
        return {
            "CHAT_TOOLS_ENABLED": "true",
            "CHAT_TEST_SLOW_TOOL_SECONDS": "60",  # a bound; the test releases it
            "CHAT_TEST_SLOW_TOOL_RELEASE": str(self.folder / "release"),
            "CHAT_TEST_SLOW_TOOL_LOG": str(self.folder / "tool.log"),
        }

    def said(self, line: str) -> bool:
        log = self.folder / "tool.log"
        return log.exists() and line in log.read_text().split()

    def release(self) -> None:
        (self.folder / "release").touch()
