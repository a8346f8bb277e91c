import json

import pytest
from django.core.management import call_command

from chat import services
from chat.models import Message

pytestmark = pytest.mark.django_db


def test_export_writes_one_conversation_per_line_with_all_messages(
    tmp_path, user, other_user, monkeypatch
):
    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    mine = services.conversation_create(owner=user, system_prompt="Be nice")
    _, reply = services.message_submit(conversation=mine, content="hello")
    Message.objects.filter(pk=reply.pk).update(status="complete", content="hi!", prompt_tokens=3)
    services.conversation_create(owner=other_user)
    output = tmp_path / "out.jsonl"
    call_command("export_conversations", "--user", "alice", "--output", str(output))
    lines = output.read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["id"] == str(mine.pk) and record["owner"] == "alice"
    assert record["system_prompt"] == "Be nice"
    assert [(m["role"], m["content"]) for m in record["messages"]] == [
        ("user", "hello"),
        ("assistant", "hi!"),
    ]
    assert (
        record["messages"][1]["prompt_tokens"] == 3
        and record["messages"][1]["status"] == "complete"
    )


def test_export_since_filters_by_date(tmp_path, user):
    services.conversation_create(owner=user)
    output = tmp_path / "out.jsonl"
    call_command("export_conversations", "--since", "2999-01-01", "--output", str(output))
    assert output.read_text() == ""
