"""Exit 0 when the PostgreSQL at DATABASE_URL and the Redis at REDIS_URL both answer (used by
scripts/test to choose what runs on them); print why not otherwise."""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

import psycopg
import redis


def main() -> int:
    database = urlsplit(os.environ["DATABASE_URL"])
    try:
        redis.Redis.from_url(os.environ["REDIS_URL"], socket_connect_timeout=2).ping()
        psycopg.connect(
            host=database.hostname or "127.0.0.1",
            port=database.port or 5432,
            user=database.username or "postgres",
            password=database.password or None,
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except (redis.RedisError, psycopg.Error) as error:
        print(f"not reachable: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
