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
        with pytest.raises(PoolTimeout, match=r"after 0\.50 sec"):
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


def test_a_busy_pool_keeps_a_caller_waiting_past_its_timeout():
    """Every connection lent out is load, not an outage: the caller waits on and is served
    when one comes back (a burst of sends answered 503 after the pool's 1 s before)."""
    with checked_pool(min_size=2, max_size=2, timeout=0.3, busy_timeout=5.0) as pool:
        held = [pool.getconn() for _ in range(2)]
        assert pool.busy
        served: list[object] = []
        waiter = threading.Thread(target=lambda: served.append(pool.getconn()))
        started = time.monotonic()
        waiter.start()
        time.sleep(0.8)  # well past the pool's timeout
        assert served == []
        pool.putconn(held.pop())
        waiter.join(5.0)
        assert len(served) == 1 and time.monotonic() - started >= 0.8
        for conn in [*held, *served]:
            pool.putconn(conn)  # type: ignore[arg-type]
        assert not pool.busy


def test_a_busy_pool_gives_up_at_its_busy_timeout():
    with checked_pool(min_size=2, max_size=2, timeout=0.2, busy_timeout=0.7) as pool:
        held = [pool.getconn() for _ in range(2)]
        started = time.monotonic()
        with pytest.raises(PoolTimeout, match=r"after 0\.[67]\d sec"):
            pool.getconn()
        assert time.monotonic() - started >= 0.65
        for conn in held:
            pool.putconn(conn)


def test_a_pool_that_cannot_connect_still_fails_in_its_timeout():
    """An outage is not load: with no connection lent out, the pool's own timeout holds."""
    params = {**connection.get_connection_params(), "port": free_port(), "connect_timeout": 2}
    pool = CheckedConnectionPool(kwargs=params, min_size=0, max_size=2, timeout=0.3, open=False)
    pool.open(wait=False)
    try:
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            pool.getconn()
        assert time.monotonic() - started < 1.0
        assert not pool.busy
    finally:
        pool.close(timeout=1.0)


def test_callers_wait_on_while_the_pool_opens_connections_one_by_one():
    """Ten callers at once on a pool of one connection that may grow to ten: psycopg_pool
    opens them one after another, each taking 20 ms here (a loaded machine), so the last come
    well after the pool's timeout. Not every connection is lent out meanwhile, but the pool
    hands each out as it comes: load, not an outage (before, the late callers failed)."""

    def slow_to_open(conn: psycopg.Connection) -> None:
        time.sleep(0.02)

    options = {"configure": slow_to_open, "timeout": 0.1, "busy_timeout": 10.0}
    with checked_pool(min_size=1, max_size=10, **options) as pool:
        all_in = threading.Barrier(10, timeout=10.0)
        failed: list[BaseException] = []

        def take_and_hold() -> None:
            try:
                conn = pool.getconn()
            except BaseException as error:  # reported below
                failed.append(error)
                all_in.abort()
                return
            try:
                with contextlib.suppress(threading.BrokenBarrierError):
                    all_in.wait()
            finally:
                pool.putconn(conn)

        callers = [threading.Thread(target=take_and_hold) for _ in range(10)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(15.0)
        assert failed == []
        assert pool.get_stats()["pool_size"] == 10
