"""The check of each connection taken from the PostgreSQL pool (chatsite/postgresql): a round
trip to the server only when the connection's socket says something happened, or it has been
idle for a while; one that fails is replaced at once."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from psycopg_pool import ConnectionPool, PoolTimeout

from chatsite.postgresql import base as postgresql_base
from chatsite.postgresql.base import CheckedConnectionPool, check_pooled_connection
from tests.live import free_port

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The connections the check asked the server about."""
    asked: list[object] = []
    check = ConnectionPool.check_connection

    def recorded(conn: psycopg.Connection) -> None:
        asked.append(conn)
        check(conn)

    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(recorded))
    return asked


def connect() -> psycopg.Connection:
    return psycopg.connect(**connection.get_connection_params(), autocommit=True)


def test_the_settings_pool_is_the_checked_one():
    assert settings.DATABASES["default"]["ENGINE"] == "chatsite.postgresql"
    assert isinstance(connection.pool, CheckedConnectionPool)


def terminate(admin: psycopg.Connection, pids: list[int]) -> None:
    """End these sessions, as a restart does, and wait until each has exited."""
    ended = admin.execute(
        "SELECT pg_terminate_backend(pid, 5000) FROM unnest(%s::int[]) AS pid", (pids,)
    ).fetchall()
    assert ended == [(True,)] * len(pids)


@pytest.fixture
def pool() -> Iterator[CheckedConnectionPool]:
    with checked_pool(min_size=3) as made:
        yield made


@contextlib.contextmanager
def checked_pool(**options: Any) -> Iterator[CheckedConnectionPool]:
    """A pool of the test database's connections, open and filled to its `min_size`."""
    options = {"timeout": 2.0, **options}
    with CheckedConnectionPool(kwargs=connection.get_connection_params(), **options) as made:
        made.wait()
        yield made


def test_the_pool_replaces_dead_connections_at_once(pool, round_trips):
    """With no back-off between tries: a pool of dead connections (the database restarted)
    hands out a new one within its timeout (psycopg_pool's own check tries the second at once,
    then waits about a second, then two)."""
    held = [pool.getconn() for _ in range(3)]
    pids = [conn.info.backend_pid for conn in held]
    for conn in held:
        pool.putconn(conn)
    with connect() as admin:
        terminate(admin, pids)
    conn = pool.getconn()
    try:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.info.backend_pid not in pids
    finally:
        pool.putconn(conn)
    # Each dead one was asked about, not handed out as live.
    assert all(any(dead is asked for asked in round_trips) for dead in held)


@pytest.fixture
def one_connection_pool() -> Iterator[CheckedConnectionPool]:
    """A pool of one connection: each `getconn` hands out the same one."""
    with checked_pool(min_size=1, max_size=1) as made:
        yield made


def test_a_connection_back_moments_ago_is_taken_without_a_round_trip(
    one_connection_pool, round_trips
):
    pool = one_connection_pool
    conn = pool.getconn()
    pool.putconn(conn)
    assert round_trips == [conn]  # one the pool made and never handed out is always asked
    for _ in range(3):
        taken = pool.getconn()
        pool.putconn(taken)
        assert taken is conn
    assert round_trips == [conn]


def test_a_connection_idle_for_longer_is_asked_with_a_round_trip(
    one_connection_pool, round_trips, monkeypatch
):
    """However quiet its socket: a peer that lost the session without a word shows nothing."""
    pool = one_connection_pool
    monkeypatch.setattr(postgresql_base, "QUIET_TRUSTED_SECONDS", 0.05)
    conn = pool.getconn()
    pool.putconn(conn)
    round_trips.clear()
    time.sleep(0.1)
    taken = pool.getconn()
    pool.putconn(taken)
    assert taken is conn
    assert round_trips == [conn]


def test_checks_that_keep_failing_end_in_the_pools_timeout_without_spinning(monkeypatch):
    """Past as many failures as the pool holds, a pause between tries; at the deadline, the
    pool's timeout error, giving the whole wait."""
    checks: list[object] = []

    def failing(conn: psycopg.Connection, *, idle_seconds: float) -> None:
        checks.append(conn)
        raise psycopg.OperationalError("refused")

    with checked_pool(min_size=1, max_size=2, timeout=0.5) as pool:
        monkeypatch.setattr(postgresql_base, "check_pooled_connection", failing)
        with pytest.raises(PoolTimeout, match=r"after 0\.5\d sec"):
            pool.getconn()
    # Without the pause, hundreds (each a new connection); with it, one per 50 ms.
    assert 3 <= len(checks) <= 30


def test_the_pool_refuses_close_returns():
    with pytest.raises(ValueError, match="close_returns"):
        CheckedConnectionPool(kwargs={}, open=False, close_returns=True)


def test_an_interrupted_check_loses_no_connection_from_the_pool(pool, monkeypatch):
    def interrupted(conn: psycopg.Connection, *, idle_seconds: float) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(postgresql_base, "check_pooled_connection", interrupted)
        with pytest.raises(KeyboardInterrupt):
            pool.getconn()
    pool.wait(timeout=5.0)  # the connection given back is replaced
    held = [pool.getconn() for _ in range(3)]
    assert pool.get_stats()["pool_size"] == 3
    for conn in held:
        pool.putconn(conn)


def test_a_live_connection_used_moments_ago_passes_without_a_round_trip(round_trips):
    with connect() as conn:
        conn.execute("SELECT 1").fetchone()
        for _ in range(3):
            check_pooled_connection(conn, idle_seconds=0.0)
        assert conn.execute("SELECT 2").fetchone() == (2,)
    assert round_trips == []


def test_a_connection_the_server_ended_fails_the_check(round_trips):
    with connect() as conn, connect() as admin:
        terminate(admin, [conn.info.backend_pid])
        with pytest.raises(psycopg.OperationalError):
            check_pooled_connection(conn, idle_seconds=0.0)
    assert round_trips == [conn]


def test_a_closed_connection_fails_the_check(round_trips):
    conn = connect()
    conn.close()
    with pytest.raises(psycopg.OperationalError):
        check_pooled_connection(conn, idle_seconds=0.0)
    assert round_trips == []


def crowd(pool: CheckedConnectionPool, callers: int, hold: float) -> list[tuple[str, float]]:
    """`callers` threads at once, each taking a connection, holding it `hold` seconds and
    giving it back: what each got ("served" or the error's class name) and how long it
    waited for it."""
    outcomes: list[tuple[str, float]] = []

    def one() -> None:
        started = time.monotonic()
        try:
            conn = pool.getconn()
        except Exception as error:  # reported in the outcomes
            outcomes.append((type(error).__name__, time.monotonic() - started))
            return
        try:
            outcomes.append(("served", time.monotonic() - started))
            time.sleep(hold)
        finally:
            pool.putconn(conn)

    threads = [threading.Thread(target=one) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30.0)
    return outcomes


def test_a_burst_longer_than_the_timeout_is_served_while_the_pool_serves_others():
    """Twelve callers at once on two connections, each held 50 ms: the last wait about
    0.25 s, past the pool's timeout, while it hands connections out and takes them back
    every 50 ms: load, not an outage (before, the late callers failed with PoolTimeout)."""
    with checked_pool(min_size=2, max_size=2, timeout=0.15, busy_timeout=10.0) as pool:
        outcomes = crowd(pool, callers=12, hold=0.05)
    assert [what for what, _ in outcomes] == ["served"] * 12
    assert max(waited for _, waited in outcomes) > 0.15


def test_a_burst_waits_no_longer_than_the_busy_timeout():
    """One connection, twenty callers holding it 50 ms each: those still queued after the
    busy timeout (0.4 s; about a second of work) give up then, not at the pool's timeout."""
    with checked_pool(min_size=1, max_size=1, timeout=0.1, busy_timeout=0.4) as pool:
        outcomes = crowd(pool, callers=20, hold=0.05)
    failed = [waited for what, waited in outcomes if what != "served"]
    assert {what for what, _ in outcomes} == {"served", "PoolTimeout"}
    assert failed and min(failed) >= 0.35
    assert len(outcomes) - len(failed) >= 5


def test_connections_that_never_come_back_fail_the_caller_in_the_pools_timeout():
    """Every connection lent out and none given back for a whole timeout (a host gone
    silent, a lock that holds every query) is not load the pool is serving: the caller fails
    in the pool's timeout, not the busy one."""
    with checked_pool(min_size=2, max_size=2, timeout=0.2, busy_timeout=10.0) as pool:
        held = [pool.getconn() for _ in range(2)]
        try:
            time.sleep(0.05)
            started = time.monotonic()
            with pytest.raises(PoolTimeout):
                pool.getconn()
            assert time.monotonic() - started < 1.0
        finally:
            for conn in held:
                pool.putconn(conn)


def test_a_pool_that_cannot_connect_still_fails_in_its_timeout():
    """An outage is not load: the pool serves nobody, and its own timeout holds."""
    params = {**connection.get_connection_params(), "port": free_port(), "connect_timeout": 2}
    pool = CheckedConnectionPool(kwargs=params, min_size=0, max_size=2, timeout=0.3, open=False)
    pool.open(wait=False)
    try:
        outcomes = crowd(pool, callers=3, hold=0.0)
        assert [what for what, _ in outcomes] == ["PoolTimeout"] * 3
        assert max(waited for _, waited in outcomes) < 1.0
    finally:
        pool.close(timeout=1.0)


def test_callers_wait_on_while_the_pool_opens_connections_one_by_one():
    """Ten callers at once on a pool of one connection that may grow to ten: psycopg_pool
    opens them one after another, each taking 50 ms here (a loaded machine), so the last
    come well after the pool's timeout. The pool hands each out as it comes: load, not an
    outage (before, the late callers failed)."""

    def slow_to_open(conn: psycopg.Connection) -> None:
        time.sleep(0.05)

    options = {"configure": slow_to_open, "timeout": 0.2, "busy_timeout": 10.0}
    with checked_pool(min_size=1, max_size=10, **options) as pool:
        all_in = threading.Barrier(10, timeout=15.0)
        outcomes = crowd_until(pool, all_in)
        assert outcomes == ["served"] * 10
        assert pool.get_stats()["pool_size"] == 10


def crowd_until(pool: CheckedConnectionPool, all_in: threading.Barrier) -> list[str]:
    """As many callers as `all_in` waits for, each holding its connection until all have
    one (or one failed)."""
    outcomes: list[str] = []

    def one() -> None:
        try:
            conn = pool.getconn()
        except Exception as error:  # reported in the outcomes
            outcomes.append(type(error).__name__)
            all_in.abort()
            return
        try:
            outcomes.append("served")
            with contextlib.suppress(threading.BrokenBarrierError):
                all_in.wait()
        finally:
            pool.putconn(conn)

    threads = [threading.Thread(target=one) for _ in range(all_in.parties)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30.0)
    return outcomes
