"""The ASGI module a server process loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def server_python(script: str) -> subprocess.CompletedProcess[str]:
    """Run `script` in a fresh interpreter with the tests' settings, as a server process."""
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_the_server_process_freezes_what_it_loaded_out_of_the_collectors_way():
    """Full collections must not walk Django and the app (a pause every stream waits out)."""
    script = "import gc, chatsite.asgi; print(gc.get_freeze_count())"
    out = server_python(script)
    assert int(out.stdout.split()[-1]) > 50_000  # Django, Channels, daphne and the app


def test_under_daphne_the_module_puts_its_twisted_patches_in_place():
    """Loaded where daphne has loaded Twisted (as `daphne.server` does), the module installs
    its patches; two of them checked here: writes go out at once, and form bodies are left
    to Django."""
    script = (
        "import twisted.internet, daphne.http_protocol as h, twisted.internet.tcp as tcp\n"
        "import chatsite.asgi\n"
        "print(getattr(h.WebRequest.__init__, 'leaves_forms_unparsed', False),"
        " getattr(tcp.Connection.write, 'sends_at_once', False))"
    )
    out = server_python(script)
    assert out.stdout.split()[-2:] == ["True", "True"]
