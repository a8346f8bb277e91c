"""Database chores of the benchmark, run as a child process with the server's DATABASE_URL (the
harness itself talks to two databases in one run, and Django reads its settings once):

    python -m bench.dbtool prepare USERS CONVERSATIONS   -> JSON {csrf, clients: [[session, id]]}
    python -m bench.dbtool replies < [ids]               -> JSON {id: {writes, status, ...}}
    python -m bench.dbtool settings                      -> JSON of the settings under test

`prepare` migrates, installs a trigger that counts every write to chat_message (the database
counts, whichever process wrote), and creates users, their sessions and empty conversations.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()


def install_write_counter() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS bench_message_writes "
                "(id INTEGER PRIMARY KEY AUTOINCREMENT, message_id INTEGER, op TEXT)"
            )
            for op in ("UPDATE", "INSERT"):
                cursor.execute(
                    f"CREATE TRIGGER IF NOT EXISTS bench_message_{op.lower()} AFTER {op} "
                    "ON chat_message BEGIN INSERT INTO bench_message_writes (message_id, op) "
                    f"VALUES (NEW.id, '{op.lower()}'); END"
                )
        else:
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS bench_message_writes "
                "(id SERIAL PRIMARY KEY, message_id BIGINT, op TEXT)"
            )
            cursor.execute(
                """
                CREATE OR REPLACE FUNCTION bench_count_message_write() RETURNS trigger AS $$
                BEGIN
                  INSERT INTO bench_message_writes (message_id, op) VALUES (NEW.id, lower(TG_OP));
                  RETURN NEW;
                END $$ LANGUAGE plpgsql
                """
            )
            cursor.execute("DROP TRIGGER IF EXISTS bench_message_write ON chat_message")
            cursor.execute(
                "CREATE TRIGGER bench_message_write AFTER INSERT OR UPDATE ON chat_message "
                "FOR EACH ROW EXECUTE FUNCTION bench_count_message_write()"
            )


def prepare(users: int, conversations: int) -> dict[str, object]:
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.middleware.csrf import _get_new_csrf_string
    from django.test import Client

    from chat.models import Conversation

    call_command("migrate", verbosity=0, interactive=False)
    install_write_counter()
    people = []
    for i in range(users):
        user, _ = User.objects.get_or_create(username=f"bench-{i}")
        people.append(user)
    sessions = []
    for user in people:
        client = Client()
        client.force_login(user)
        sessions.append(client.cookies["sessionid"].value)
    made = Conversation.objects.bulk_create(
        [Conversation(owner=people[i % users], model="bench-model") for i in range(conversations)],
        batch_size=500,
    )
    return {
        "csrf": _get_new_csrf_string(),
        "clients": [[sessions[i % users], str(c.id)] for i, c in enumerate(made)],
    }


def replies(ids: list[int]) -> dict[str, dict[str, object]]:
    from django.db import connection

    from chat.models import Message

    counts: dict[int, int] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            marks = ",".join(["%s"] * len(batch))
            cursor.execute(
                "SELECT message_id, COUNT(*) FROM bench_message_writes "
                f"WHERE message_id IN ({marks}) GROUP BY message_id",
                batch,
            )
            counts.update({int(m): int(n) for m, n in cursor.fetchall()})
    found = {}
    for message in Message.objects.filter(pk__in=ids):
        found[str(message.pk)] = {
            "writes": counts.get(message.pk, 0),
            "status": message.status,
            "content": message.content,
            "error": message.error,
            "duration": message.duration.total_seconds() if message.duration else None,
        }
    return found


def settings() -> dict[str, object]:
    """What the server processes, started with the same environment, will run with."""
    from django.conf import settings as s

    database = s.DATABASES["default"]
    layer: dict[str, Any] = s.CHANNEL_LAYERS["default"]
    return {
        "channel_layer": layer["BACKEND"],
        "channel_layer_config": {k: v for k, v in layer.get("CONFIG", {}).items() if k != "hosts"},
        "database": database["ENGINE"],
        "database_pool": database.get("OPTIONS", {}).get("pool"),
        "embedded_worker": s.CHAT_EMBEDDED_WORKER,
        "generate_titles": s.CHAT_GENERATE_TITLES,
        "coalesce_ms": s.CHAT_COALESCE_SECONDS * 1000,
        "checkpoint_seconds": s.CHAT_CHECKPOINT_SECONDS,
        "max_concurrent_generations": s.CHAT_MAX_CONCURRENT_GENERATIONS,
        "debug": s.DEBUG,
    }


def main() -> None:
    _setup()
    command = sys.argv[1]
    if command == "prepare":
        result: object = prepare(int(sys.argv[2]), int(sys.argv[3]))
    elif command == "replies":
        result = replies([int(i) for i in json.load(sys.stdin)])
    elif command == "settings":
        result = settings()
    else:
        raise SystemExit(f"unknown command {command!r}")
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
