"""Messages form a tree (versions of a reply, branches from an edited question). Existing
conversations become one path: each message follows the one before it, all selected."""

import django.db.models.deletion
from django.db import migrations, models


def link_existing_messages(apps, schema_editor):
    Message = apps.get_model("chat", "Message")
    previous = {}  # conversation id -> the last message seen
    batch = []
    for message in Message.objects.order_by("conversation_id", "created", "id").only(
        "pk", "conversation_id"
    ):
        message.parent_id = previous.get(message.conversation_id)
        previous[message.conversation_id] = message.pk
        batch.append(message)
        if len(batch) >= 500:
            Message.objects.bulk_update(batch, ["parent"])
            batch = []
    Message.objects.bulk_update(batch, ["parent"])


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0003_rendered_html"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="children",
                to="chat.message",
            ),
        ),
        migrations.AddField(
            model_name="message",
            name="selected",
            field=models.BooleanField(default=True),
        ),
        migrations.RunPython(link_existing_messages, migrations.RunPython.noop),
    ]
