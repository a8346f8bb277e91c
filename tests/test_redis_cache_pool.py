"""The cache's shared Redis pool (chatsite/redis_cache.py) under more callers than it holds."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from chatsite import redis_cache
from chatsite.redis_cache import SharedConnectionPool

pytestmark = pytest.mark.services


@pytest.fixture
def shared_pools() -> Iterator[None]:
    """The test's pools leave the process's registry (and Redis) when it ends."""
    before = dict(SharedConnectionPool._shared)
    yield
    for key, pool in list(SharedConnectionPool._shared.items()):
        if key not in before:
            pool.disconnect()
            del SharedConnectionPool._shared[key]


def test_the_pool_waits_by_default(redis_server, shared_pools):
    pool = SharedConnectionPool.from_url(redis_server.url)
    assert (pool.max_connections, pool.timeout) == (
        redis_cache.MAX_CONNECTIONS,
        redis_cache.WAIT_SECONDS,
    )
    assert SharedConnectionPool.from_url(redis_server.url) is pool


def test_a_caller_past_the_pools_size_waits_for_a_connection(redis_server, shared_pools):
    """redis-py's plain pool raised MaxConnectionsError for the third of two."""
    pool = SharedConnectionPool.from_url(redis_server.url, max_connections=2, timeout=5.0)
    held = [pool.get_connection() for _ in range(2)]
    served: list[object] = []
    waiter = threading.Thread(target=lambda: served.append(pool.get_connection()))
    try:
        waiter.start()
        waiter.join(0.3)
        assert served == []  # waiting, not refused
        pool.release(held.pop())
        waiter.join(5.0)
        assert len(served) == 1
    finally:
        waiter.join(5.0)
        for connection in [*held, *served]:
            pool.release(connection)  # type: ignore[arg-type]
