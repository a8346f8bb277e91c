"""URLs drawn on every page, each reversed once: Django's `reverse` costs some 30 microseconds a
call, and a conversation page draws twenty URLs.

`url(name, *args)` is `reverse(name, args=args)` for arguments that are UUIDs and integers
(what chatsite's URLs take): the URL is reversed once with stand-in arguments, per URL
configuration and script prefix, and formatted with the real ones after that.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.urls import get_script_prefix, get_urlconf, reverse

_STAND_INS: dict[type, Any] = {uuid.UUID: uuid.UUID(int=0x5EED), int: 987654321}
_patterns: dict[tuple[Any, ...], str] = {}


def url(name: str, *args: Any) -> str:
    """`reverse(name, args=args)`."""
    kinds = tuple(type(arg) for arg in args)
    key = (name, kinds, get_script_prefix(), get_urlconf(), settings.ROOT_URLCONF)
    pattern = _patterns.get(key)
    if pattern is None:
        if not all(kind in _STAND_INS for kind in kinds):  # (a bool is not an int here)
            return reverse(name, args=args)
        stand_ins = [str(_STAND_INS[kind]) for kind in kinds]
        reversed_ = reverse(name, args=[_STAND_INS[kind] for kind in kinds])
        if any(
            reversed_.count(stand_in) != kinds.count(kind)
            for stand_in, kind in zip(stand_ins, kinds, strict=True)
        ):
            return reverse(name, args=args)
        pattern = reversed_.replace("{", "{{").replace("}", "}}")
        for number, stand_in in enumerate(stand_ins):
            pattern = pattern.replace(stand_in, f"{{{number}}}", 1)
        _patterns[key] = pattern
    return pattern.format(*args)
