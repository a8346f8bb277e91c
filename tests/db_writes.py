"""Counting writes to chat_message with a database trigger: the database itself counts, so the
number is real whichever process wrote."""

from __future__ import annotations

from django.db import connection


def install_write_counter() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS test_message_writes "
                "(id INTEGER PRIMARY KEY AUTOINCREMENT, message_id INTEGER, op TEXT)"
            )
            cursor.execute(
                "CREATE TRIGGER IF NOT EXISTS test_message_update AFTER UPDATE ON chat_message "
                "BEGIN INSERT INTO test_message_writes (message_id, op) VALUES (NEW.id, 'update'); END"
            )
            cursor.execute(
                "CREATE TRIGGER IF NOT EXISTS test_message_insert AFTER INSERT ON chat_message "
                "BEGIN INSERT INTO test_message_writes (message_id, op) VALUES (NEW.id, 'insert'); END"
            )
        else:
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS test_message_writes "
                "(id SERIAL PRIMARY KEY, message_id BIGINT, op TEXT)"
            )
            cursor.execute(
                """
                CREATE OR REPLACE FUNCTION test_count_message_write() RETURNS trigger AS $$
                BEGIN
                  INSERT INTO test_message_writes (message_id, op) VALUES (NEW.id, lower(TG_OP));
                  RETURN NEW;
                END $$ LANGUAGE plpgsql
                """
            )
            cursor.execute("DROP TRIGGER IF EXISTS test_message_write ON chat_message")
            cursor.execute(
                "CREATE TRIGGER test_message_write AFTER INSERT OR UPDATE ON chat_message "
                "FOR EACH ROW EXECUTE FUNCTION test_count_message_write()"
            )
        cursor.execute("DELETE FROM test_message_writes")


def writes_to(message_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM test_message_writes WHERE message_id = %s", [message_id]
        )
        return int(cursor.fetchone()[0])
