"""Replies whose worker died before this release say "...; the text received until then is
kept." in their error, which the page's notice follows with "Everything received so far is
kept.": the reason is now the first sentence alone (chat.services.WORKER_DIED), for them too."""

from django.db import migrations

OLD = "The server streaming this reply stopped; the text received until then is kept."
NEW = "The server streaming this reply stopped."


def forwards(apps, schema_editor):
    Message = apps.get_model("chat", "Message")
    Message.objects.filter(error=OLD).update(error=NEW)


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0008_tool_call_id_whole"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
