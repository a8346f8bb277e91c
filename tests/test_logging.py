"""What the server logs: each request once."""

from __future__ import annotations

import logging


def test_the_development_server_logs_each_request_once(settings):
    settings.DEBUG = True  # Django's own console handler logs only then
    logger = logging.getLogger("django.channels.server")
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, "HTTP GET / 200", (), None)
    handlers = []
    current: logging.Logger | None = logger
    while current is not None:
        handlers += [
            h
            for h in current.handlers
            if record.levelno >= h.level
            and h.filter(record)
            and not type(h).__module__.startswith("_pytest")  # pytest's own capture
        ]
        current = current.parent if current.propagate else None
    assert len(handlers) == 1, handlers
