"""A tool that sleeps, registered by tests/settings.py in the server processes a test starts
with CHAT_TEST_SLOW_TOOL_SECONDS set. With CHAT_TEST_SLOW_TOOL_LOG set, it writes a line to
that file as it starts and as it ends."""

from __future__ import annotations

import os
import time

from chat import tools


def register_slow_tool(seconds: float) -> None:
    log = os.environ.get("CHAT_TEST_SLOW_TOOL_LOG", "")

    def note(line: str) -> None:
        if log:
            with open(log, "a") as file:
                file.write(line + "\n")

    @tools.tool(
        "slow_lookup",
        f"Looks something up; takes {seconds:g} s.",
        {"type": "object", "properties": {}, "required": []},
    )
    def slow_lookup() -> str:
        note("started")
        time.sleep(seconds)
        note("ended")
        return "found"
