import json

import pytest
from django.core.management import call_command

from chat import services
from chat.models import Conversation, Message

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


@pytest.mark.parametrize(
    "text",
    [
        '=HYPERLINK("http://evil")',
        "+1+1",
        "-1+cmd|' /C calc'!A0",
        "@SUM(A1)",
        "\t=1+1",
        "\r=1+1",
        "  =1+1",
        "\n=1+1",
        " \t @SUM(A1)",
        "＝1+1",
    ],
)
def test_a_csv_cell_that_a_spreadsheet_would_run_is_quoted(text: str):
    from chat.exports import csv_cell

    assert csv_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["hello", "a = b", "", "3 - 1", "e-mail", 5, -3, 1.5, None])
def test_plain_csv_cells_are_left_alone(value: object):
    from chat.exports import csv_cell

    assert csv_cell(value) == ("" if value is None else value)


def test_csv_export_neutralises_formulas_in_titles_owners_and_messages(
    tmp_path, django_user_model, monkeypatch
):
    import csv

    monkeypatch.setattr("chat.events.request_generation", lambda message_id: None)
    owner = django_user_model.objects.create_user("@evil", password="pw")
    conversation = services.conversation_create(owner=owner)
    services.message_submit(conversation=conversation, content="+cmd|' /C calc'!A0")
    # A generated title is the model's text: a prompt can make it anything.
    Conversation.objects.filter(pk=conversation.pk).update(title=' =HYPERLINK("http://evil")')
    output = tmp_path / "out.csv"
    call_command("export_conversations", "--format", "csv", "--output", str(output))
    with output.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["role"] for r in rows] == ["user", "assistant"]
    first = rows[0]
    assert first["conversation_id"] == str(conversation.pk)
    assert first["conversation_title"] == '\' =HYPERLINK("http://evil")'
    assert first["owner"] == "'@evil"
    assert first["content"] == "'+cmd|' /C calc'!A0"
    for row in rows:
        for column, cell in row.items():
            assert cell.lstrip()[:1] not in {"=", "+", "-", "@"} or cell.startswith("'"), column
