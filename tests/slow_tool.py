"""A tool that sleeps, registered by tests/settings.py in the server processes a test starts
with CHAT_TEST_SLOW_TOOL_SECONDS set."""

from __future__ import annotations

import time

from chat import tools


def register_slow_tool(seconds: float) -> None:
    @tools.tool(
        "slow_lookup",
        f"Looks something up; takes {seconds:g} s.",
        {"type": "object", "properties": {}, "required": []},
    )
    def slow_lookup() -> str:
        time.sleep(seconds)
        return "found"
