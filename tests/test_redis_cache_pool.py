"""The cache's shared Redis pool (chatsite/redis_cache.py) under more callers than it holds."""

from __future__ import annotations

import threading

import pytest

from chatsite.redis_cache import SharedConnectionPool

pytestmark = pytest.mark.services


def test_a_caller_past_the_pools_size_waits_for_a_connection(redis_server):
    """redis-py's plain pool raised MaxConnectionsError for the third of two."""
    pool = SharedConnectionPool.from_url(redis_server.url, max_connections=2, timeout=5.0)
    try:
        held = [pool.get_connection() for _ in range(2)]
        served: list[object] = []
        waiter = threading.Thread(target=lambda: served.append(pool.get_connection()))
        waiter.start()
        waiter.join(0.3)
        assert served == []  # waiting, not refused
        pool.release(held.pop())
        waiter.join(5.0)
        assert len(served) == 1
        for connection in [*held, *served]:
            pool.release(connection)  # type: ignore[arg-type]
    finally:
        pool.disconnect()
