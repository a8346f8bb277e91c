"""Store each finished reply's rendered HTML; fill it in for the replies saved before."""

from django.db import migrations, models

from . import _stored_html


def render_finished_replies(apps, schema_editor):
    _stored_html.render_finished_replies(apps)


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
