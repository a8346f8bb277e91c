"""Every async test here runs twice, on asyncio's event loop and on uvloop's: the coalescer's
timing (timers due now, timers a little early) differs between the two, and uvloop is what a
server process runs by default."""

from __future__ import annotations

from tests.transport.conftest import pytest_asyncio_loop_factories

__all__ = ["pytest_asyncio_loop_factories"]
