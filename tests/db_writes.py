"""Counting writes to chat_message with a database trigger: the database itself counts, so the
number is real whichever process wrote. Used by the end-to-end tests and by the benchmark."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection

LOG_TABLE = "message_write_log"


def install_write_counter() -> None:
    """Install the trigger (once) and empty the log."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {LOG_TABLE} "
                "(id INTEGER PRIMARY KEY AUTOINCREMENT, message_id INTEGER, op TEXT)"
            )
            for op in ("update", "insert"):
                cursor.execute(
                    f"CREATE TRIGGER IF NOT EXISTS count_message_{op} AFTER {op.upper()} "
                    f"ON chat_message BEGIN INSERT INTO {LOG_TABLE} (message_id, op) "
                    f"VALUES (NEW.id, '{op}'); END"
                )
        else:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {LOG_TABLE} "
                "(id SERIAL PRIMARY KEY, message_id BIGINT, op TEXT)"
            )
            cursor.execute(
                f"""
                CREATE OR REPLACE FUNCTION count_message_write() RETURNS trigger AS $$
                BEGIN
                  INSERT INTO {LOG_TABLE} (message_id, op) VALUES (NEW.id, lower(TG_OP));
                  RETURN NEW;
                END $$ LANGUAGE plpgsql
                """
            )
            cursor.execute("DROP TRIGGER IF EXISTS count_message_write ON chat_message")
            cursor.execute(
                "CREATE TRIGGER count_message_write AFTER INSERT OR UPDATE ON chat_message "
                "FOR EACH ROW EXECUTE FUNCTION count_message_write()"
            )
        cursor.execute(f"DELETE FROM {LOG_TABLE}")


def writes_by_message(message_ids: Sequence[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(message_ids), 500):
            batch = list(message_ids[start : start + 500])
            marks = ",".join(["%s"] * len(batch))
            cursor.execute(
                f"SELECT message_id, COUNT(*) FROM {LOG_TABLE} "
                f"WHERE message_id IN ({marks}) GROUP BY message_id",
                batch,
            )
            counts.update({int(m): int(n) for m, n in cursor.fetchall()})
    return counts


def writes_to(message_id: int) -> int:
    return writes_by_message([message_id]).get(message_id, 0)
