"""Django's PostgreSQL backend, with a cheaper and quicker check of each connection taken from
its pool.

Django's pool (`CONN_HEALTH_CHECKS`) checks every connection it hands out with an empty query:
a round trip to the server each time the ORM's work goes to a thread (a request, a consumer's
call, a reply's claim, checkpoint and save), about four round trips a reply. And when
connections fail that check, psycopg_pool tries the next one, then waits about a second before
each further try: after a restart, with the pool's connections all dead, a request waited out
the pool's timeout (1 s) and answered 503.

A connection the server has ended has something to read on its socket: the server tells each
session it is shutting down, or terminating it, before it closes it, and the server's kernel
closes a session whose server process died. An idle live connection has nothing to read. So a
connection used moments ago is checked by a look at its socket, and asked with a round trip
only if something is there; one idle for longer is always asked (a peer that lost the session
without a word, as a host rebooted on the same address or a load balancer that resets an idle
flow it dropped, shows nothing until a packet is sent). A connection that fails is dropped and
the next one taken at once.

A busy pool is not a broken one: a request that waits out the pool's timeout while the pool
went on handing out connections and taking them back healthy (serving others) waits on, up to
`busy_timeout` in all. A burst of sends, or of tabs reconnecting after a deploy, answered 503
and closed sockets with "the database is away" when the pool's 1 s ran out under load, while
the pool was opening connections one by one. A pool that serves nobody for a whole timeout
fails the caller in it as before: the database is away (new connections cannot be made, the
ones in use come back broken), or every connection is stuck (a host gone silent, a lock that
holds every query), where shedding the request is the answer too.
"""

from __future__ import annotations

import math
import select
import time
import weakref
from collections.abc import Callable
from typing import Any

import psycopg
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg import pq
from psycopg_pool import ConnectionPool, PoolTimeout

# A connection back in the pool for longer than this is asked with a round trip even when its
# socket is quiet. Under load a connection comes back into use within milliseconds.
QUIET_TRUSTED_SECONDS = 2.0
# How long a request waits for a connection, in all, while the pool goes on serving others
# (load, not an outage).
BUSY_TIMEOUT_SECONDS = 10.0
# The pause between tries once one `getconn` has seen more failed checks than the pool holds
# (something other than dead connections is wrong); none before that.
RETRY_PAUSE_SECONDS = 0.05


def check_pooled_connection(
    connection: psycopg.Connection[Any], *, idle_seconds: float = math.inf
) -> None:
    """Raise a `psycopg.Error` if `connection` is no longer usable. The round trip of
    `ConnectionPool.check_connection` if it has been idle longer than QUIET_TRUSTED_SECONDS,
    or the server sent something (a notice that it is ending the session, say) or closed
    the socket."""
    if connection.closed or connection.pgconn.status != pq.ConnStatus.OK:
        raise psycopg.OperationalError("the connection is closed")
    if idle_seconds <= QUIET_TRUSTED_SECONDS:
        poller = select.poll()
        poller.register(connection.pgconn.socket, select.POLLIN)  # POLLHUP and POLLERR always
        if not poller.poll(0):
            return
    ConnectionPool.check_connection(connection)


class CheckedConnectionPool(ConnectionPool[Any]):
    """A pool that checks each connection it hands out (`check_pooled_connection`), and
    replaces one that fails at once, within the one timeout of `getconn`; while it goes on
    serving others (`served_within` the timeout), a caller waits on, up to `busy_timeout`
    seconds in all. (Waiting on, it asks psycopg_pool again, which queues it behind callers
    that came meanwhile: in a long burst an early caller may be served after later ones, and
    give up at `busy_timeout`.)"""

    def __init__(
        self, *args: Any, busy_timeout: float = BUSY_TIMEOUT_SECONDS, **kwargs: Any
    ) -> None:
        if kwargs.get("close_returns"):
            # `close()` would give a connection that failed its check back as live.
            raise ValueError("CheckedConnectionPool does not take close_returns")
        super().__init__(*args, **kwargs)
        self.busy_timeout = busy_timeout
        self._returned_at: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
            weakref.WeakKeyDictionary()
        )
        # When the pool last served someone: handed out a connection that passed its check,
        # or took one back healthy.
        self._served_at = -math.inf

    def putconn(self, conn: psycopg.Connection[Any]) -> None:
        if getattr(conn, "_pool", None) is self:  # else super() refuses it
            self._returned_at[conn] = now = time.monotonic()
            if conn.pgconn.transaction_status != pq.TransactionStatus.UNKNOWN:
                self._served_at = now
        super().putconn(conn)

    def getconn(self, timeout: float | None = None) -> psycopg.Connection[Any]:
        timeout = self.timeout if timeout is None else timeout
        started = time.monotonic()
        deadline = started + timeout
        failures = 0
        while True:
            try:
                connection = super().getconn(timeout=max(deadline - time.monotonic(), 0.001))
            except PoolTimeout:
                now = time.monotonic()
                if self.served_within(timeout) and now < started + self.busy_timeout:
                    deadline = min(now + timeout, started + self.busy_timeout)
                    continue
                raise PoolTimeout(
                    f"couldn't get a connection after {now - started:.2f} sec"
                ) from None
            try:
                returned_at = self._returned_at.pop(connection, None)
                idle = math.inf if returned_at is None else time.monotonic() - returned_at
                check_pooled_connection(connection, idle_seconds=idle)
            except psycopg.Error:
                self._discard(connection)
            except BaseException:
                self._discard(connection)
                raise
            else:
                self._served_at = time.monotonic()
                return connection
            failures += 1
            now = time.monotonic()
            if now >= deadline:
                raise PoolTimeout(f"couldn't get a connection after {now - started:.2f} sec")
            if failures > self.max_size:
                time.sleep(min(RETRY_PAUSE_SECONDS, max(deadline - time.monotonic(), 0.0)))

    def served_within(self, seconds: float) -> bool:
        """Whether the pool handed out a connection, or took one back healthy, in the last
        `seconds`: it is busy, not broken."""
        return time.monotonic() - self._served_at < seconds

    def _discard(self, connection: psycopg.Connection[Any]) -> None:
        """Give back a connection that failed its check, closed: the pool drops it and makes
        a new one in its place."""
        try:
            connection.close()
        finally:
            super().putconn(connection)


class DatabaseWrapper(base.DatabaseWrapper):
    # Django's, which its type stubs leave out (annotations only: nothing is overridden).
    _connection_pools: dict[str, ConnectionPool[Any]]
    _configure_connection: Callable[[psycopg.Connection[Any]], None]

    @property
    def pool(self) -> ConnectionPool[Any] | None:
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == NO_DB_ALIAS or not pool_options or self.alias in self._connection_pools:
            return super().pool
        if (
            not self.settings_dict["CONN_HEALTH_CHECKS"]
            or self.settings_dict.get("CONN_MAX_AGE", 0) != 0  # Django refuses it with a pool
        ):
            if isinstance(pool_options, dict) and "busy_timeout" in pool_options:
                # Django's own pool takes no `busy_timeout`: ours alone has it.
                self.settings_dict["OPTIONS"]["pool"] = {
                    k: v for k, v in pool_options.items() if k != "busy_timeout"
                }
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
