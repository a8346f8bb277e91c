"""Django's PostgreSQL backend, with a cheaper and quicker check of each connection taken from
its pool.

Django's pool (`CONN_HEALTH_CHECKS`) checks every connection it hands out with an empty query:
a round trip to the server each time the ORM's work goes to a thread (a request, a consumer's
call, a reply's claim, checkpoint and save), about a quarter of a reply's database round trips.
And when a connection fails that check, psycopg_pool waits about a second before it tries the
next one: after a restart, with the pool's connections all dead, a request waited out the
pool's timeout (1 s) and answered 503.

A connection the server has ended has something to read on its socket: the server tells each
session it is shutting down, or terminating it, before it closes it, and a session whose server
process died is closed by the kernel. An idle live connection has nothing to read. So the check
looks at the socket first, and asks the server only when something is there; and a connection
that fails it is dropped and the next one taken at once.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import Any

import psycopg
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg import pq
from psycopg_pool import ConnectionPool


def check_pooled_connection(connection: psycopg.Connection[Any]) -> None:
    """Raise if `connection` is no longer usable. The round trip of
    `ConnectionPool.check_connection` only if the server sent something (a notice that it is
    ending the session, say) or closed the socket."""
    if connection.closed or connection.pgconn.status != pq.ConnStatus.OK:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()
    poller.register(connection.pgconn.socket, select.POLLIN)  # POLLHUP and POLLERR always
    if poller.poll(0):
        ConnectionPool.check_connection(connection)


class CheckedConnectionPool(ConnectionPool[Any]):
    """A pool that checks each connection it hands out (`check_pooled_connection`), and
    replaces one that fails at once, within the one timeout of `getconn`."""

    def getconn(self, timeout: float | None = None) -> psycopg.Connection[Any]:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            connection = super().getconn(timeout=max(deadline - time.monotonic(), 0.0))
            try:
                check_pooled_connection(connection)
            except Exception:
                connection.close()  # closed, the pool drops it and makes a new one
                self.putconn(connection)
                continue
            return connection


class DatabaseWrapper(base.DatabaseWrapper):
    # Django's, which its type stubs leave out (annotations only: nothing is overridden).
    _connection_pools: dict[str, ConnectionPool[Any]]
    _configure_connection: Callable[[psycopg.Connection[Any]], None]

    @property
    def pool(self) -> ConnectionPool[Any] | None:
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if (
            self.alias == NO_DB_ALIAS
            or not pool_options
            or not self.settings_dict["CONN_HEALTH_CHECKS"]
            or self.settings_dict.get("CONN_MAX_AGE", 0) != 0  # Django refuses it with a pool
            or self.alias in self._connection_pools
        ):
            return super().pool
        # As Django makes it (django.db.backends.postgresql.base), checked as above.
        connect_kwargs = self.get_connection_params()
        connect_kwargs["autocommit"] = True  # Django sets it as it takes a connection
        pool = CheckedConnectionPool(
            kwargs=connect_kwargs,
            open=False,  # opened as the first connection is taken
            configure=self._configure_connection,
            **({} if pool_options is True else pool_options),
        )
        self._connection_pools.setdefault(self.alias, pool)
        return self._connection_pools[self.alias]
