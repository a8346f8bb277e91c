"""The stream engine's halves as its package docstring draws them: every module stands in one,
and the lower half imports no Django and no Channels.

Each lower-half module is imported in a fresh interpreter, so nothing the test run has loaded
already can hide an import.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import chat.streaming

PACKAGE = Path(chat.streaming.__file__).parent
ROOT = PACKAGE.parents[1]

LOADED_FRAMEWORKS = """
import importlib, sys
importlib.import_module(sys.argv[1])
print(" ".join(sorted(
    name for name in sys.modules
    if name.split(".")[0] in ("django", "channels", "channels_redis", "daphne")
)))
"""


def half(title: str) -> list[str]:
    """The modules listed, one an indented line, under the docstring's line `title`."""
    lines = (chat.streaming.__doc__ or "").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title)) + 2
    modules = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        modules.append(line.split()[0])
    return modules


UPPER_HALF = half("Upper half")
LOWER_HALF = half("Lower half")


def test_every_module_of_the_package_stands_in_one_half():
    modules = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")
    assert sorted(UPPER_HALF + LOWER_HALF) == modules


@pytest.mark.parametrize("module", LOWER_HALF)
def test_a_lower_half_module_loads_no_django_nor_channels(module: str):
    loaded = subprocess.run(
        [sys.executable, "-c", LOADED_FRAMEWORKS, f"chat.streaming.{module}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert loaded == []
