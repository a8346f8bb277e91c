"""Daphne cancels every socket's consumer when it stops, even one opened a moment before.

As its reactor shuts down (on SIGTERM, say), daphne's `Server.kill_all_applications` cancels
each connection's application, so that a consumer can leave its channel-layer groups. It reads
`details["application_instance"]` from every connection it knows, but some have none: the
request a WebSocket was upgraded from (it never runs the application), listed until daphne's
next cleanup pass, up to a second later, and a request whose body is still arriving. A SIGTERM
then raised `KeyError` there (Twisted logs it and goes on stopping) and cancelled no
connection after it: those sockets' consumers never ran their cleanup, and in Redis their
groups kept naming channels nobody read, so the other processes sent them every frame of the
conversation until the groups expired a day later.

`install()` makes it skip the connections without an application, as daphne's own cleanup
(`application_checker`) already does. Daphne 4.2.3 has the bug.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

logger = logging.getLogger("daphne.server")


def install() -> bool:
    """Patch daphne's `Server` once, where daphne has loaded it (its CLI and `runserver` do
    before they load the application, and so does Django's setup with daphne installed);
    True if the fix is (now) in place. Importing `daphne.server` installs Twisted's reactor,
    so this never imports it itself."""
    module = sys.modules.get("daphne.server")
    if module is None:
        return False
    server: Any = module.Server
    if getattr(server.kill_all_applications, "skips_connections_without_one", False):
        return True

    def kill_all_applications(self: Any) -> Any:
        """Cancel every running application and return a Deferred that fires once all are
        done (Twisted waits for it before the reactor stops)."""
        from twisted.internet import defer

        wait_for = []
        for details in self.connections.values():
            application_instance = details.get("application_instance")
            if application_instance is not None and not application_instance.done():
                application_instance.cancel()
                wait_for.append(application_instance)
        logger.info("Killed %i pending application instances", len(wait_for))
        wait_deferred = defer.Deferred.fromFuture(asyncio.gather(*wait_for))
        wait_deferred.addErrback(lambda failure: None)
        return wait_deferred

    kill_all_applications.skips_connections_without_one = True  # type: ignore[attr-defined]
    server.kill_all_applications = kill_all_applications
    return True
