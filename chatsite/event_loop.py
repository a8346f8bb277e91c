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
Loop policies are deprecated from Python 3.14 (the project runs 3.11) and uvloop's policy goes
with them: where it cannot be set, the default falls back to asyncio's loop with a warning, and
an explicit `CHAT_EVENT_LOOP=uvloop` stops the process.
"""

from __future__ import annotations

import asyncio
import os
import sys
import warnings

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

        with warnings.catch_warnings():  # Python 3.14-3.15 deprecate policies; they still work
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except (ImportError, AttributeError) as exc:  # no build here; no policies (Python 3.16)
        reason = f"uvloop cannot be used here ({type(exc).__name__}: {exc})"
        if os.environ.get(VARIABLE, "").strip():
            raise SystemExit(f"{VARIABLE}=uvloop, but {reason}") from None
        print(f"chatsite: {reason}; running on asyncio's event loop", file=sys.stderr)
        return "asyncio"
    return "uvloop"
