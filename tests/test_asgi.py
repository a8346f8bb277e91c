"""The ASGI module a server process loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_server_process_freezes_what_it_loaded_out_of_the_collectors_way():
    """Full collections must not walk Django and the app (a pause every stream waits out)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    script = "import gc, chatsite.asgi; print(gc.get_freeze_count())"
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert int(out.stdout.split()[-1]) > 50_000  # Django, Channels, daphne and the app
