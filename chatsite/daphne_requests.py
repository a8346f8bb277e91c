"""Daphne's HTTP requests leave a POST's body to the application.

Twisted's `Request` parses a form body (URL-encoded or multipart) into `request.args` as it
arrives, on the event loop, before daphne hands the request on; daphne never reads
`args`, and Django parses the body itself, in its own thread and within its upload limits.
The parse was pure cost: about 64 µs of CPU for every POST's `Content-Type` (Twisted reads it
with the `email` package), and for a large body a pause of every stream and socket in the
process (a 2.4 MB URL-encoded body took 0.4 s, a 1.2 MB multipart one 0.47 s), which anyone
who can reach the login page could repeat. Twisted's own switch turns it off.
"""

from __future__ import annotations

import sys
from typing import Any


def install() -> bool:
    """Make daphne's requests skip Twisted's form parsing, once, where daphne has loaded
    Twisted; True if that is (now) so."""
    if "twisted.internet" not in sys.modules:
        return False  # not under daphne: nothing to do
    from daphne.http_protocol import WebRequest

    if getattr(WebRequest.__init__, "leaves_forms_unparsed", False):
        return True
    init = WebRequest.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["parsePOSTFormSubmission"] = False
        init(self, *args, **kwargs)

    __init__.leaves_forms_unparsed = True  # type: ignore[attr-defined]
    WebRequest.__init__ = __init__  # type: ignore[method-assign]
    return True
