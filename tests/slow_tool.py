"""A slow tool, registered by tests/settings.py in the server processes a test starts with
CHAT_TEST_SLOW_TOOL_SECONDS set: it runs that long, or until the file named by
CHAT_TEST_SLOW_TOOL_RELEASE exists. With CHAT_TEST_SLOW_TOOL_LOG set, it writes a line to that
file as it starts and as it ends."""

from __future__ import annotations

import os
import time

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
