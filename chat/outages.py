"""Riding out the services chatsite runs on: Redis (the channel layer) and the database.

Errors that mean "the service is away, try again later", never a bug:

    ServiceAway                         (SERVICE_ERRORS: any of these)
     ├─ ChannelLayerAway                Redis, as chat.streaming.channel_layers found it
     └─ DatabaseAway                    the database, known away: not tried (database_needed)
    django.db.OperationalError,         the database (DATABASE_ERRORS); psycopg's errors and
    django.db.InterfaceError            the pool's timeout reach Django code as these, and a
                                        write refused as read-only becomes one (`read_only_away`)

One `Outage` per service and process says whether the service is away and since when, and
logs one WARNING when it goes and one INFO when it is back, however many calls failed between.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from django.db import InterfaceError, InternalError, OperationalError, close_old_connections

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Waits between attempts while a service is away: doubling from the first to the last.
FIRST_RETRY_DELAY = 0.1
LAST_RETRY_DELAY = 1.0


class ServiceAway(Exception):
    """A service chatsite needs cannot be reached just now."""


class ChannelLayerAway(ServiceAway):
    """The channel layer's Redis cannot be reached just now."""


class DatabaseAway(ServiceAway):
    """The database was found away, and no probe has found it back yet."""


class DatabaseReadOnly(OperationalError):
    """The database refused a write as read-only (`read_only_away`): away until a probe finds
    it writable, however many connections it hands out meanwhile."""


DATABASE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
SERVICE_ERRORS: tuple[type[Exception], ...] = (ServiceAway, *DATABASE_ERRORS)


def retry_delay(attempt: int) -> float:
    """The wait before retry number `attempt` (0, 1, ...)."""
    return min(FIRST_RETRY_DELAY * 2**attempt, LAST_RETRY_DELAY)


class Outage:
    """Whether `service` is away, as this process last found it. Safe from any thread."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._lock = threading.Lock()
        self._away_since: float | None = None
        self._back_since: float | None = None
        self.returns = 0  # how many times it came back

    @property
    def away(self) -> bool:
        return self._away_since is not None

    def away_for(self) -> float:
        """Seconds since the service went away; 0 while it is there."""
        since = self._away_since
        return 0.0 if since is None else time.monotonic() - since

    def back_for(self) -> float:
        """Seconds since the service came back; 0 while it is away, infinity if it never was."""
        if self._away_since is not None:
            return 0.0
        since = self._back_since
        return math.inf if since is None else time.monotonic() - since

    def went_away(self, error: BaseException) -> None:
        with self._lock:
            if self._away_since is not None:
                return
            self._away_since = time.monotonic()
        # The error's text, not its traceback: an outage is expected, not a bug.
        logger.warning("%s is unreachable (%s); riding it out", self.service, _summary(error))

    def came_back(self) -> None:
        with self._lock:
            since, self._away_since = self._away_since, None
            if since is None:
                return
            self._back_since = time.monotonic()
            self.returns += 1
        logger.info("%s is back after %.1f s", self.service, self._back_since - since)


def _summary(error: BaseException) -> str:
    text = " ".join(str(error).split())[:200]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


redis = Outage("Redis")
database = Outage("the database")


_next_database_probe = 0.0
_database_probes = 0
# Whether the database's outage is a read-only server: connections come, so only a probe that
# finds it writable ends that outage (`database_connected` does not).
_database_read_only = False


async def database_answers() -> bool:
    """Whether work should go to the database now (background work: checkpoints, saves,
    recovery; and sockets, see `database_needed`): yes while it is there. While it is away,
    only once a probe finds it back, at most one per retry delay: each ORM call would hold the
    ORM's one thread for the pool's whole timeout, while the probe is a plain connection in a
    thread of its own, refused at once."""
    global _next_database_probe, _database_probes
    if not database.away:
        _database_probes = 0
        return True
    now = time.monotonic()
    if now < _next_database_probe:
        return False
    # The delays go on growing after a probe finds the database: it is back only once a query
    # finds it so. Until the pool reconnects (on its own schedule, seconds after a long
    # outage), each caller let through holds the ORM's thread for the pool's timeout and
    # fails: one a second at most, not one a tenth, keeps that thread free for the others.
    _next_database_probe = now + retry_delay(_database_probes)
    _database_probes += 1
    read_only = _database_read_only
    answers = await asyncio.to_thread(_database_accepts_connections)
    if answers and read_only:
        _database_back_from_read_only()
    return answers


def _database_back_from_read_only() -> None:
    global _database_read_only
    _database_read_only = False
    database.came_back()


async def database_needed() -> None:
    """Raise `DatabaseAway` unless `database_answers()`. For WebSocket work: every socket's
    database calls share the ORM's one thread (Channels' `database_sync_to_async`, Django's
    `a*` methods), where each would wait the pool's whole timeout while the database is away
    and hold up all the others, a socket's handshake among them."""
    if not await database_answers():
        raise DatabaseAway(f"away for {database.away_for():.1f} s")


def _database_accepts_connections() -> bool:
    from django.db import connections

    db = connections["default"]
    if db.vendor != "postgresql":
        return True
    import psycopg

    config = db.settings_dict
    try:
        with psycopg.connect(
            dbname=config["NAME"],
            user=config["USER"] or None,
            password=config["PASSWORD"] or None,
            host=config["HOST"] or None,
            port=config["PORT"] or None,
            connect_timeout=config["OPTIONS"].get("connect_timeout", 2),
        ) as probe:
            # Back means writable: a read-only server (see `read_only_away`) is still away.
            row = probe.execute("SHOW transaction_read_only").fetchone()
    except psycopg.Error:
        return False
    return row is not None and row[0] == "off"


async def retried_while_database_away(
    call: Callable[[], Awaitable[T]], *, within: float | None = None
) -> T:
    """`await call()`, a write that must not be lost (a reply's final save, a shutdown's
    hand-back), tried again while the database is away: what it writes waits in memory, for
    up to `within` seconds (CHAT_DATABASE_OUTAGE_SECONDS), and then its error is raised."""
    from asgiref.sync import sync_to_async
    from django.conf import settings

    loop = asyncio.get_running_loop()
    deadline = loop.time() + (settings.CHAT_DATABASE_OUTAGE_SECONDS if within is None else within)
    while True:
        if await database_answers() or loop.time() >= deadline:
            try:
                return await call()
            except DATABASE_ERRORS as error:
                await sync_to_async(database_failed)(error)
                if loop.time() >= deadline:
                    raise
        await asyncio.sleep(FIRST_RETRY_DELAY)


def database_failed(error: BaseException) -> None:
    """Note the database away and drop this thread's connections, which may be broken: the
    next query takes a fresh one (the pool checks it first). Call it from the thread that ran
    the query (in async code: through `sync_to_async`, as the ORM's `a*` methods run)."""
    global _database_read_only
    if isinstance(error, DatabaseReadOnly):
        _database_read_only = True
    database.went_away(error)
    close_old_connections()


def database_connected(sender: Any, connection: Any = None, **kwargs: Any) -> None:
    """`connection_created` receiver: a connection was made (or taken from the pool, which
    checks it), so the database is there, unless it is away for refusing writes (a read-only
    server hands out connections). A PostgreSQL connection reports a write refused as
    read-only as the database away (`read_only_away`)."""
    if database.away and not _database_read_only:
        database.came_back()
    if (
        connection is not None
        and connection.vendor == "postgresql"
        and read_only_away not in connection.execute_wrappers
    ):
        # First, so that `connection.execute_wrapper()` blocks (which pop the last) keep it.
        connection.execute_wrappers.insert(0, read_only_away)


# SQLSTATE read_only_sql_transaction: "cannot execute UPDATE in a read-only transaction".
READ_ONLY_SQLSTATE = "25006"


def read_only_away(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    """A Django execute wrapper: a write that PostgreSQL refuses because the server is
    read-only (a primary demoted in a failover, a hot standby behind a stale address, a
    database set read-only for maintenance) raises `DatabaseReadOnly`, an OperationalError:
    the database away, not the InternalError of a bad query. Callers ride it out as an outage
    (the final save of a reply waits, pages answer 503, new sockets close with 4013) instead
    of dropping what they were saving, until a probe finds the server writable. The
    connection is closed, so that the pool makes a new one (to the new primary) instead of
    handing this one out again."""
    try:
        return execute(sql, params, many, context)
    except InternalError as error:
        if getattr(error.__cause__, "sqlstate", None) != READ_ONLY_SQLSTATE:
            raise
        raw = context["connection"].connection
        if raw is not None:
            raw.close()
        raise DatabaseReadOnly(f"the database is read-only: {error}") from error
