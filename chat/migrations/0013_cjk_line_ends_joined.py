"""Render anew the stored HTML of finished replies whose Chinese or Japanese text has line
ends inside its paragraphs: a line end between two of their characters was saved as one,
which Chromium draws as a space in the middle of a sentence (chat.markdown's `_softbreak`)."""

import re

from django.db import migrations

from chat.markdown import JOINED_ACROSS_LINES

from . import _stored_html


def render_cjk_replies_anew(apps, schema_editor):
    joined = re.compile(f"[{JOINED_ACROSS_LINES}]")
    _stored_html.render_finished_replies(
        apps, lambda text: "\n" in text.strip() and joined.search(text) is not None
    )


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0012_cjk_bold_rendered"),
    ]

    operations = [
        migrations.RunPython(render_cjk_replies_anew, migrations.RunPython.noop),
    ]
