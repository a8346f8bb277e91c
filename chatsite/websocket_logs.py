"""Autobahn's debug log lines cost nothing while the level drops them.

Every WebSocket autobahn accepts pretty-prints its configuration (some thirty options, with
`pprint.pformat`) for a debug log line that is written only at the debug level: about 1,900
Python calls per socket, a tenth of what opening a conversation (its page and its socket) costs
the server. `install()` makes the `pformat` of autobahn's protocol module lazy: it answers an
object that pretty-prints its value only when a log line is formatted with it, the same text
as before. (`Timings.__str__`, the module's one other use of `pformat`, still answers text.)
"""

from __future__ import annotations

import pprint
import sys
from typing import Any


class LazyPformat:
    """`pprint.pformat(value)`, made when the object is formatted or turned into text."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        return pprint.pformat(self.value)

    def __repr__(self) -> str:
        return repr(pprint.pformat(self.value))

    def __format__(self, spec: str) -> str:
        return format(pprint.pformat(self.value), spec)


def _timings_text(self: Any) -> str:
    return pprint.pformat(self._timings)


def install() -> bool:
    """Make `autobahn.websocket.protocol`'s `pformat` lazy, once, where daphne has loaded
    autobahn; True if it is (now) lazy."""
    if "autobahn.websocket.protocol" not in sys.modules:
        return False  # not under daphne: nothing to do
    from autobahn.websocket import protocol

    module: Any = protocol
    if module.pformat is LazyPformat:
        return True
    module.Timings.__str__ = _timings_text
    module.pformat = LazyPformat
    return True
