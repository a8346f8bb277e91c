"""Render anew the stored HTML of finished replies whose CJK text (or text with variation
selectors) has emphasis or strikethrough marks: their bold beside full-width punctuation
("**注意：**请") was saved with its stars showing, before the CJK-friendly flanking rules
(chat.flanking)."""

import re

from django.db import migrations

from chat.flanking import CJK_CHARACTERS

from . import _stored_html


def render_cjk_replies_anew(apps, schema_editor):
    # (a variation selector too: the amendment looks through it to the character before)
    cjk = re.compile(f"[{CJK_CHARACTERS}\ufe00-\ufe0e\U000e0100-\U000e01ef]")
    marks = re.compile(r"[*_~]")
    _stored_html.render_finished_replies(
        apps, lambda text: marks.search(text) is not None and cjk.search(text) is not None
    )


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0011_title_source_asked"),
    ]

    operations = [
        migrations.RunPython(render_cjk_replies_anew, migrations.RunPython.noop),
    ]
