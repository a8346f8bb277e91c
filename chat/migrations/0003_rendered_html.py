"""Store each finished reply's rendered HTML; fill it in for the replies saved before."""

from django.db import migrations, models


def render_finished_replies(apps, schema_editor):
    from chat.markdown import render_markdown

    Message = apps.get_model("chat", "Message")
    replies = Message.objects.filter(role="assistant").exclude(status__in=["pending", "streaming"])
    batch = []
    for message in replies.only("pk", "content", "reasoning").iterator(chunk_size=500):
        message.content_html = render_markdown(message.content)
        message.reasoning_html = render_markdown(message.reasoning) if message.reasoning else ""
        batch.append(message)
        if len(batch) >= 500:
            Message.objects.bulk_update(batch, ["content_html", "reasoning_html"])
            batch = []
    Message.objects.bulk_update(batch, ["content_html", "reasoning_html"])


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0002_titles_and_feedback"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="content_html",
            field=models.TextField(blank=True, editable=False),
        ),
        migrations.AddField(
            model_name="message",
            name="reasoning_html",
            field=models.TextField(blank=True, editable=False),
        ),
        migrations.RunPython(render_finished_replies, migrations.RunPython.noop),
    ]
