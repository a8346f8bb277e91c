"""The event loop the server processes run on: uvloop, unless `CHAT_EVENT_LOOP=asyncio`.

uvloop (libuv, in C) runs the same asyncio code with less CPU per wakeup: a process relaying 50
streams wakes a few thousand times a second, for each upstream chunk and each frame out, and
asyncio's own loop (selector, handles, timers, transports in Python) was about a fifth of its
profile. Measured apart, reading the upstream with httpx on aiohttp's engine cost 46-49 µs of
CPU per token on uvloop against 81-91 on asyncio's loop (docs/benchmarks.md has the server's
figures). Daphne runs Twisted's asyncio reactor on whatever loop asyncio makes, so the policy
must be set before `daphne.server` is imported: `python -m chatsite.serve` (daphne's command
line) and `manage.py` (`runworker`, `runserver`) call `install()` first.

Read from the environment, not Django's settings: the loop is chosen before Django loads.
"""

from __future__ import annotations

import asyncio
import os

VARIABLE = "CHAT_EVENT_LOOP"
CHOICES = ("uvloop", "asyncio")


def chosen() -> str:
    value = os.environ.get(VARIABLE, "").strip().lower() or "uvloop"
    if value not in CHOICES:
        raise SystemExit(f"{VARIABLE} must be one of {', '.join(CHOICES)}, not {value!r}")
    return value


def install() -> str:
    """Make new event loops uvloop's (unless asyncio's are asked for); the loop in use."""
    if chosen() == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:  # not on this platform (uvloop has no Windows build)
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"
