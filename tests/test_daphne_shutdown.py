"""Daphne's shutdown cancels every socket's consumer, one opened a moment before it too
(chatsite.daphne_shutdown). The end-to-end check, on Redis, is in tests/e2e/test_scale_out.py."""

from __future__ import annotations

import asyncio

import pytest
from daphne.server import Server

from chatsite import daphne_shutdown


def test_install_is_idempotent() -> None:
    assert daphne_shutdown.install()
    patched = Server.kill_all_applications
    assert daphne_shutdown.install()
    assert Server.kill_all_applications is patched


async def test_stopping_cancels_the_sockets_listed_after_an_upgraded_request() -> None:
    """The request a WebSocket was upgraded from ran no application, and daphne lists it until
    its next cleanup pass: a shutdown in that second raised KeyError on it and cancelled
    nothing listed after it."""
    daphne_shutdown.install()
    server = Server(application=None, endpoints=["tcp:port=0:interface=127.0.0.1"])  # never run
    opened_before = asyncio.ensure_future(asyncio.sleep(3600))
    opened_just_now = asyncio.ensure_future(asyncio.sleep(3600))
    finished = asyncio.get_running_loop().create_future()
    finished.set_result(None)
    server.connections = {
        "socket opened before": {"connected": 0.0, "application_instance": opened_before},
        "request upgraded just now": {"connected": 1.0, "disconnected": 1.0},
        "socket opened just now": {"connected": 1.0, "application_instance": opened_just_now},
        "request answered": {"connected": 0.5, "application_instance": finished},
    }
    stopped = asyncio.get_running_loop().create_future()
    server.kill_all_applications().addBoth(stopped.set_result)
    for socket in (opened_before, opened_just_now):
        with pytest.raises(asyncio.CancelledError):
            await socket
    await asyncio.wait_for(stopped, 5)  # Twisted's wait for them all ends once they have
