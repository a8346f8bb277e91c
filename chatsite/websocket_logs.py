"""Autobahn's debug log lines cost nothing while the level drops them.

Autobahn builds the arguments of its debug log lines before the logger drops them: every
WebSocket it accepts pretty-prints its configuration (some thirty options, `pprint.pformat`),
and colours the names of the methods it logs from with click (`hltype`, `hlval`), about 2,300
Python calls per socket, a sixth of what opening a conversation (its page and its socket) costs
the server. `install()` makes those three helpers lazy in autobahn's WebSocket modules: each
answers an object that makes its text only when a log line is formatted with it, the same
text as before. (`Timings.__str__`, the one other use of `pformat` there, still answers text.)
"""

from __future__ import annotations

import pprint
import sys
from collections.abc import Callable
from typing import Any

# Autobahn's modules that speak WebSocket for daphne, and the helpers they call only to build
# a log line's arguments.
MODULES = ("autobahn.websocket.protocol", "autobahn.twisted.websocket")
HELPERS = ("pformat", "hltype", "hlval")


class LazyText:
    """`function(*args, **kwargs)`, called when the object is formatted or turned into text."""

    __slots__ = ("args", "function", "kwargs")

    def __init__(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.function, self.args, self.kwargs = function, args, kwargs

    def _text(self) -> Any:
        return self.function(*self.args, **self.kwargs)

    def __str__(self) -> str:
        return str(self._text())

    def __repr__(self) -> str:
        return repr(self._text())

    def __format__(self, spec: str) -> str:
        return format(self._text(), spec)


def lazy(function: Callable[..., Any]) -> Callable[..., LazyText]:
    """`function`, answering a LazyText of its call."""

    def made_when_formatted(*args: Any, **kwargs: Any) -> LazyText:
        return LazyText(function, *args, **kwargs)

    made_when_formatted.lazy_text = True  # type: ignore[attr-defined]
    made_when_formatted.__wrapped__ = function  # type: ignore[attr-defined]
    return made_when_formatted


def _timings_text(self: Any) -> str:
    return pprint.pformat(self._timings)


def install() -> bool:
    """Make autobahn's log helpers lazy in its WebSocket modules, once, where daphne has
    loaded autobahn; True if they are (now) lazy."""
    if MODULES[0] not in sys.modules:
        return False  # not under daphne: nothing to do
    from autobahn.websocket import protocol

    timings: Any = protocol.Timings
    timings.__str__ = _timings_text
    for name in MODULES:
        module = __import__(name, fromlist=["_"])
        for helper in HELPERS:
            function = getattr(module, helper, None)
            if function is not None and not getattr(function, "lazy_text", False):
                setattr(module, helper, lazy(function))
    return True
