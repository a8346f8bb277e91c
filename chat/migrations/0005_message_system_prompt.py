"""Each reply keeps the system prompt it was made with. Replies made before this record it
get their conversation's current prompt: the best record there is, and what the transcript
showed them with until now."""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def fill_from_conversations(apps, schema_editor):
    Conversation = apps.get_model("chat", "Conversation")
    Message = apps.get_model("chat", "Message")
    Message.objects.filter(role="assistant").update(
        system_prompt=Subquery(
            Conversation.objects.filter(pk=OuterRef("conversation_id")).values("system_prompt")[:1]
        )
    )


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0004_message_tree"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="system_prompt",
            field=models.TextField(blank=True),
        ),
        migrations.RunPython(fill_from_conversations, migrations.RunPython.noop),
    ]
