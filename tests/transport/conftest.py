"""Every async test here runs twice: on asyncio's event loop and on uvloop's, the two loops a
server process may run on (chatsite.event_loop; uvloop is the default).

A directory of its own, because pytest-asyncio asks this hook about every async test in the
hook's scope and refuses an answer of "no factories" for a test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
