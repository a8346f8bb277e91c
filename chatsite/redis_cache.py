"""One Redis connection pool per process for Django's cache.

Django keeps a cache object per async context (`django.core.cache.caches` is a context-local
`BaseConnectionHandler`), and every ASGI request runs in a context of its own. With the stock
`RedisCache` each request therefore built a client with a connection pool of its own and opened
a new connection to Redis for its first cache read: a TCP connect and redis-py's handshake
(`CLIENT SETINFO`) before the conversation page could read its articles, and a socket left
for the garbage collector. The pools here are kept per URL and options for the
whole process; redis-py's pools are thread-safe, hand out connections one caller at a time,
and reconnect a connection that Redis closed (a restart) before handing it out.

The pool is redis-py's blocking one: with all its connections in use (more request threads at
once on the cache than it holds, in a burst of sends that each count against the user's
limits) a caller waits for one, where the plain pool raised MaxConnectionsError.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar, Self

import redis

# Connections per process (redis-py's default), and how long a caller waits for one while all
# are in use.
MAX_CONNECTIONS = 100
WAIT_SECONDS = 10.0


class SharedConnectionPool(redis.BlockingConnectionPool):
    """`CACHES[...]["OPTIONS"]["pool_class"]`: `from_url` answers the process's pool for that
    URL and those options, made at the first call."""

    # (Not `_pools` and `_lock`: a pool has a lock of its own by that name.)
    _shared: ClassVar[dict[tuple[str, str], Any]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Self:
        kwargs = {"max_connections": MAX_CONNECTIONS, "timeout": WAIT_SECONDS, **kwargs}
        key = (url, repr(sorted(kwargs.items())))
        with cls._shared_lock:
            pool = cls._shared.get(key)
            if pool is None:
                pool = cls._shared[key] = super().from_url(url, **kwargs)
            return pool
