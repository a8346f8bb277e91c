"""The check of each connection taken from the PostgreSQL pool (chatsite/postgresql): a round
trip to the server only when the connection's socket says something happened."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from psycopg_pool import ConnectionPool

from chatsite.postgresql.base import CheckedConnectionPool, check_pooled_connection

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


def test_the_pool_replaces_a_dead_connection_at_once(round_trips):
    """With no back-off between tries: a pool of dead connections (the database restarted)
    hands out a new one within its timeout (psycopg_pool's own check waits about a second after
    the first dead one, two after the second)."""
    url = connection.get_connection_params()
    with CheckedConnectionPool(kwargs=url, min_size=3, timeout=2.0) as pool, connect() as admin:
        pool.wait()
        held = [pool.getconn() for _ in range(3)]
        pids = [conn.info.backend_pid for conn in held]
        for conn in held:
            pool.putconn(conn)
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
        time.sleep(0.2)  # the notices and the closes arrive
        conn = pool.getconn()
        try:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            assert conn.info.backend_pid not in pids
        finally:
            pool.putconn(conn)
    assert len(round_trips) >= 1  # the dead ones were asked about, not taken as live


def test_a_live_idle_connection_passes_without_a_round_trip(round_trips):
    with connect() as conn:
        conn.execute("SELECT 1").fetchone()
        for _ in range(3):
            check_pooled_connection(conn)
        assert conn.execute("SELECT 2").fetchone() == (2,)
    assert round_trips == []


def test_a_connection_the_server_ended_fails_the_check(round_trips):
    with connect() as conn, connect() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        deadline = time.monotonic() + 5
        while True:  # the server's notice and the close arrive soon after
            try:
                check_pooled_connection(conn)
            except psycopg.OperationalError:
                break
            assert time.monotonic() < deadline, "the check still passes"
            time.sleep(0.01)
    assert round_trips == [conn]


def test_a_closed_connection_fails_the_check(round_trips):
    conn = connect()
    conn.close()
    with pytest.raises(psycopg.OperationalError):
        check_pooled_connection(conn)
    assert round_trips == []
