"""Database chores of the benchmark, run as a child process with the server's DATABASE_URL (the
harness itself talks to two databases in one run, and Django reads its settings once):

    python -m bench.dbtool prepare USERS CONVERSATIONS   -> JSON {csrf, clients: [[session, id]]}
    python -m bench.dbtool replies < [ids]               -> JSON {id: {writes, status, ...}}
    python -m bench.dbtool settings                      -> JSON of the settings under test
    python -m bench.dbtool pages CONVERSATIONS MESSAGES  -> JSON {csrf, session, conversation}

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


def prepare(users: int, conversations: int) -> dict[str, object]:
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.middleware.csrf import _get_new_csrf_string
    from django.test import Client

    from chat.models import Conversation
    from tests.db_writes import install_write_counter

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


def pages(conversations: int, messages: int) -> dict[str, object]:
    """One user with `conversations` conversations (titled, last active over the past weeks),
    one of them the newest, with `messages` finished messages: questions, and markdown-heavy
    answers with code and tables, stored rendered as the app stores a finished reply."""
    from datetime import timedelta

    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.middleware.csrf import _get_new_csrf_string
    from django.test import Client
    from django.utils import timezone

    from bench.tokens import markdown_section
    from chat.markdown import render_markdown
    from chat.models import Conversation, Message

    call_command("migrate", verbosity=0, interactive=False)
    user = User.objects.create(username="pages-0")
    client = Client()
    client.force_login(user)
    made = Conversation.objects.bulk_create(
        [
            Conversation(owner=user, model="bench-model", title=f"Conversation number {i}")
            for i in range(conversations)
        ],
        batch_size=500,
    )
    now = timezone.now()
    for i, conversation in enumerate(made):
        conversation.updated = now - timedelta(hours=i)
    Conversation.objects.bulk_update(made, ["updated"], batch_size=500)
    long = made[0]
    parent = None
    for i in range(messages):
        if i % 2 == 0:
            content = f"Question {i // 2}: how do I filter the items, with an example in code?"
            message = Message.objects.create(
                conversation=long, parent=parent, role=Message.Role.USER, content=content
            )
        else:
            content = markdown_section(i // 2)
            message = Message.objects.create(
                conversation=long,
                parent=parent,
                role=Message.Role.ASSISTANT,
                content=content,
                content_html=render_markdown(content),
                status=Message.Status.COMPLETE,
                finish_reason="stop",
                model="bench-model",
                prompt_tokens=100 + i,
                completion_tokens=400,
                time_to_first_token=timedelta(milliseconds=300),
                duration=timedelta(seconds=8),
                completed=now,
            )
        parent = message
    return {
        "csrf": _get_new_csrf_string(),
        "session": client.cookies["sessionid"].value,
        "conversation": str(long.id),
    }


def replies(ids: list[int]) -> dict[str, dict[str, object]]:

    from chat.models import Message
    from tests.db_writes import writes_by_message

    counts = writes_by_message(ids)
    found = {}
    for message in Message.objects.filter(pk__in=ids):
        found[str(message.pk)] = {
            "writes": counts.get(message.pk, 0),
            "status": message.status,
            "content": message.content,
            "content_html": message.content_html,
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
    elif command == "pages":
        result = pages(int(sys.argv[2]), int(sys.argv[3]))
    elif command == "settings":
        result = settings()
    else:
        raise SystemExit(f"unknown command {command!r}")
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
