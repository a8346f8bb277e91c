"""PostgreSQL stopped, or turned read-only, while replies stream on one process (its own
cluster, `initdb` and `pg_ctl` in a temporary directory; the in-process channel layer)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from django.conf import settings

from tests.fake_upstream import FakeRequest, reply_events
from tests.faults import (
    PostgresCluster,
    Tab,
    assert_outage_logged_once,
    close_code_of_a_new_socket,
    follow_once_streaming,
    read_log,
)
from tests.live import ROOT, ChatClient, reply_id_from, shown, wait_for

pytestmark = [
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]

TOKENS = [f"word{i} " for i in range(60)]
# Seconds between tokens, per reply: the first two end while the database is away (their final
# save waits for it), the last two after it is back (their checkpoints failed meanwhile).
DELAYS = [0.04, 0.05, 0.1, 0.15]


@pytest.fixture
def postgres():
    cluster = PostgresCluster().init()
    yield cluster
    cluster.cleanup()


def prepare(database_url: str, conversations: int) -> tuple[str, list[str]]:
    """Migrate the cluster's database, and make a user, a session and conversations."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CHAT_", "REDIS_URL"))},
        "DATABASE_URL": database_url,
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
    }
    command = [sys.executable, "-m", "bench.dbtool", "prepare", "1", str(conversations)]
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    clients = json.loads(out.stdout)["clients"]
    return clients[0][0], [conversation for _, conversation in clients]


@dataclass
class Streaming:
    server: Any
    client: ChatClient
    conversations: list[str]
    tabs: list[Tab]
    reply_ids: list[int]
    following: list[asyncio.Task[None]]


async def start_streaming(
    postgres, start_server, fake_upstream, delays: list[float], *, without_usage: int = 0
) -> Streaming:
    """A server on the cluster (the in-process channel layer, checkpoints every 0.5 s), and a
    reply of TOKENS in a conversation of its own for each of `delays` (seconds between
    tokens), each followed by a tab; the first `without_usage` replies' streams carry no
    usage. Returns once every reply shows some text."""
    session, conversations = prepare(postgres.url, len(delays))
    server = start_server(DATABASE_URL=postgres.url, REDIS_URL="", CHAT_CHECKPOINT_SECONDS="0.5")

    async def plan(request: FakeRequest):
        usage = None if request.index < without_usage else (11, None)
        events = reply_events(TOKENS, usage=usage)
        return await request.stream(events, delay=delays[request.index])

    fake_upstream.plan = plan
    client = ChatClient(server, session)
    tabs = [Tab(client, conversation) for conversation in conversations]
    reply_ids = []
    for tab in tabs:  # one at a time: request i streams at delays[i]
        reply_ids.append(reply_id_from(await client.send(tab.conversation_id, "go")))
        count = len(reply_ids)

        async def arrived() -> bool:
            return len(fake_upstream.requests) >= count  # noqa: B023 (awaited at once)

        await wait_for(arrived)
    following = await follow_once_streaming(tabs, reply_ids)
    return Streaming(server, client, conversations, tabs, reply_ids, following)


async def test_replies_ride_out_a_database_restart_and_pages_answer_503_meanwhile(
    postgres, start_server, fake_upstream
):
    # The first reply's stream carries no usage: its tokens are estimated, to count for today
    # once the database is back.
    streaming = await start_streaming(
        postgres, start_server, fake_upstream, DELAYS, without_usage=1
    )
    server, client, conversations = streaming.server, streaming.client, streaming.conversations
    tabs, reply_ids, following = streaming.tabs, streaming.reply_ids, streaming.following
    expected = "".join(TOKENS)
    # Away from the moment it is told to stop (a fast shutdown ends every session first; the
    # rest of the stop can take seconds on a busy machine).
    stopped_at = time.time()
    await asyncio.to_thread(postgres.stop)
    started = time.monotonic()
    page = await client.http.get(f"/c/{conversations[0]}/", timeout=10)
    answered_in = time.monotonic() - started
    started = time.monotonic()
    during = await close_code_of_a_new_socket(client, conversations[0])
    socket_answered_in = time.monotonic() - started
    await asyncio.sleep(max(3.0 - (time.time() - stopped_at), 0))
    await asyncio.to_thread(postgres.start)
    restarted_at = time.time()
    right_after = await close_code_of_a_new_socket(client, conversations[0])
    await asyncio.gather(*following)
    await client.aclose()

    assert page.status_code == 503 and page.headers["Retry-After"]
    assert answered_in < 2.0, f"the page took {answered_in:.2f} s to answer"
    assert during == 4013  # a socket opened meanwhile is closed cleanly, to try again
    # At once: not queued behind the open sockets' calls that wait on the database (daphne
    # drops a handshake that takes 5 s, without an HTTP answer).
    assert socket_answered_in < 1.0, f"the socket took {socket_answered_in:.2f} s to close"
    assert right_after in {4013, "open"}  # closed to try again, or the database is back
    # Two replies ended upstream while the database was away: their saves waited for it.
    ended = [max(r.sent_at) for r in fake_upstream.requests]
    assert sum(stopped_at < t < restarted_at for t in ended) >= 2, (stopped_at, ended)
    with psycopg.connect(postgres.url.replace("postgres://", "postgresql://")) as db:
        rows = db.execute(
            "SELECT id, status, error, content FROM chat_message WHERE id = ANY(%s) ORDER BY id",
            (reply_ids,),
        ).fetchall()
        spent = db.execute("SELECT tokens FROM chat_spenttokens").fetchall()
    assert [(status, error, content) for _, status, error, content in rows] == [
        ("complete", "", expected)
    ] * len(DELAYS)
    # What it wrote and its prompt ("go"), about four characters a token: counted, once.
    assert len(spent) == 1 and len(expected) // 4 < spent[0][0] < len(expected) // 4 + 20, spent
    for tab, reply_id in zip(tabs, reply_ids, strict=True):
        assert tab.page.content(reply_id) == shown(expected)
    assert len(fake_upstream.requests) == len(DELAYS)
    assert_outage_logged_once(server.log_text(), "the database")


def set_read_only(url: str, read_only: bool) -> None:
    """Make the whole server refuse writes, as a primary demoted in a failover does (every
    session's next transaction is read-only), or take that back."""
    with psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True) as admin:
        admin.execute("SET default_transaction_read_only = off")
        if read_only:
            admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        else:
            admin.execute("ALTER SYSTEM RESET default_transaction_read_only")
        admin.execute("SELECT pg_reload_conf()")


async def test_replies_ride_out_a_read_only_database(postgres, start_server, fake_upstream):
    """A server that turns read-only (a failover's demoted primary) is the database away, not
    a bad query: replies that end meanwhile wait for it and are saved whole once it takes
    writes again, and the outage is logged once, however many connections it hands out."""
    delays = [0.04, 0.05]
    streaming = await start_streaming(postgres, start_server, fake_upstream, delays)
    server, client, conversations = streaming.server, streaming.client, streaming.conversations
    tabs, reply_ids, following = streaming.tabs, streaming.reply_ids, streaming.following
    expected = "".join(TOKENS)
    await asyncio.to_thread(set_read_only, postgres.url, True)
    read_only_at = time.time()

    async def refused() -> bool:
        return "is unreachable" in server.log_text()

    await wait_for(refused, timeout=3)  # a checkpoint was refused
    # A page only reads: it is shown. Its connection, like any other the read-only server
    # hands out, does not end the outage (nor does a new socket, closed to try again).
    page = await client.http.get(f"/c/{conversations[0]}/", timeout=10)
    during = await close_code_of_a_new_socket(client, conversations[0])
    await asyncio.sleep(max(4.0 - (time.time() - read_only_at), 0))  # past both replies' ends
    await asyncio.to_thread(set_read_only, postgres.url, False)
    writable_at = time.time()
    await asyncio.gather(*following)
    await client.aclose()

    assert page.status_code == 200
    assert during == 4013
    ended = [max(r.sent_at) for r in fake_upstream.requests]
    assert all(read_only_at < t < writable_at for t in ended), (read_only_at, ended)
    with psycopg.connect(postgres.url.replace("postgres://", "postgresql://")) as db:
        rows = db.execute(
            "SELECT status, error, content FROM chat_message WHERE id = ANY(%s) ORDER BY id",
            (reply_ids,),
        ).fetchall()
    assert rows == [("complete", "", expected)] * len(delays)
    for tab, reply_id in zip(tabs, reply_ids, strict=True):
        assert tab.page.content(reply_id) == shown(expected)
    assert_outage_logged_once(server.log_text(), "the database")


async def test_pages_right_after_a_database_restart_answer(postgres, start_server):
    """The pool's connections from before a restart are dead. Each is checked as it is taken
    (chatsite/postgresql), so the first pages after the restart get new ones: no error, and
    no outage logged."""
    session, conversations = prepare(postgres.url, 1)
    # No recovery pass while the database restarts (one every 100 s): a query then would meet
    # the database away, and pages would answer 503 until the pool reconnects.
    server = start_server(DATABASE_URL=postgres.url, REDIS_URL="", CHAT_LEASE_SECONDS="300")
    client = ChatClient(server, session)
    url = f"/c/{conversations[0]}/"
    # Several at once: the pool holds several connections.
    before = await asyncio.gather(*(client.http.get(url, timeout=10) for _ in range(4)))
    await asyncio.to_thread(postgres.stop)
    await asyncio.to_thread(postgres.start)
    after = [(await client.http.get(url, timeout=10)).status_code for _ in range(6)]
    await client.aclose()

    assert [page.status_code for page in before] == [200] * 4
    assert after == [200] * 6, server.log_text()
    report = read_log(server.log_text())
    assert (report.tracebacks, report.errors, report.warnings) == (0, [], []), server.log_text()


async def test_a_burst_longer_than_the_pools_timeout_is_served_not_taken_for_an_outage(
    postgres, start_server
):
    """A hundred pages at once on a pool of two connections with a 0.1 s timeout: most wait
    longer than that while the pool serves the others. They are served, and no outage is
    logged (before, they answered 503 and the database was logged away)."""
    session, conversations = prepare(postgres.url, 1)
    server = start_server(
        DATABASE_URL=postgres.url,
        REDIS_URL="",
        CHAT_LEASE_SECONDS="300",
        DATABASE_POOL_SIZE="2",
        DATABASE_POOL_TIMEOUT="0.1",
    )
    client = ChatClient(server, session)
    url = f"/c/{conversations[0]}/"
    assert (await client.http.get(url, timeout=10)).status_code == 200
    pages = await asyncio.gather(*(client.http.get(url, timeout=30) for _ in range(100)))
    await client.aclose()

    assert [page.status_code for page in pages] == [200] * 100, server.log_text()
    report = read_log(server.log_text())
    assert (report.tracebacks, report.errors, report.warnings) == (0, [], []), server.log_text()
