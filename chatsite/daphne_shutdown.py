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

It also makes a stopping daphne keep its clients informed. A stopping process lets its replies
in flight finish (CHAT_SHUTDOWN_GRACE_SECONDS), and daphne closes its ports and connections
only after that. So daphne now stops listening at once: a tab must reconnect to another
process (nginx tries the next on a refused connection), not to this one, whose new sockets
nothing would cancel. Each open socket (and one whose handshake its consumer had not answered
yet) is closed with 4013 as its consumer is cancelled, on which the page reconnects; before,
it stayed open and silent (pings answered) until the process ended. A request being answered
is let finish (for up to REQUEST_GRACE_SECONDS) rather than cancelled without a response: a
synchronous view runs on in its thread anyway, and its client would wait for nothing and then
find the connection gone.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, cast

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
        """Cancel every running application but the requests being answered (given up to
        REQUEST_GRACE_SECONDS), close each open socket with 4013, and return a Deferred that
        fires once all are done (Twisted waits for it before the reactor stops)."""
        from daphne.http_protocol import WebRequest
        from twisted.internet import defer

        cancelled, requests, sockets = [], [], []
        for protocol, details in list(self.connections.items()):
            application_instance = details.get("application_instance")
            if application_instance is None or application_instance.done():
                continue
            if isinstance(protocol, WebRequest):
                requests.append(application_instance)
            else:
                application_instance.cancel()
                cancelled.append(application_instance)
                sockets.append(protocol)
        logger.info("Killed %i pending application instances", len(cancelled))
        for protocol in sockets:
            try:
                _close_socket(protocol)
            except Exception:
                logger.exception("could not close %r", protocol)
        wait_deferred = defer.Deferred.fromFuture(
            asyncio.ensure_future(_all_ended(cancelled, requests))
        )
        wait_deferred.addErrback(lambda failure: None)
        return wait_deferred

    kill_all_applications.skips_connections_without_one = True  # type: ignore[attr-defined]
    server.kill_all_applications = kill_all_applications
    listen_success = server.listen_success

    def listen_success_and_stop_first(self: Any, port: Any) -> Any:
        """Daphne's, and the port stops listening as the reactor begins to stop."""
        from twisted.internet import reactor

        if hasattr(port, "stopListening"):
            cast(Any, reactor).addSystemEventTrigger("before", "shutdown", port.stopListening)
        return listen_success(self, port)

    server.listen_success = listen_success_and_stop_first
    return True


# chat.middleware.TRY_AGAIN_LATER: the page reconnects after a short, jittered delay.
TRY_AGAIN_LATER = 4013
# How long a stopping server lets the requests it is answering finish before it cancels them.
REQUEST_GRACE_SECONDS = 10.0


def _close_socket(protocol: Any) -> None:
    from daphne.ws_protocol import WebSocketProtocol

    if not isinstance(protocol, WebSocketProtocol):
        return
    if protocol.state == protocol.STATE_CONNECTING and hasattr(protocol, "handshake_deferred"):
        # Its consumer had not answered the handshake: accepted only to be closed like the
        # open ones (left, daphne rejects it after its 5 s connect timeout, and the page
        # waits that long before it tries another process).
        protocol.serverAccept()
    if protocol.state == protocol.STATE_OPEN:
        protocol.serverClose(code=TRY_AGAIN_LATER)


async def _all_ended(cancelled: list[Any], requests: list[Any]) -> None:
    if requests:
        _, late = await asyncio.wait(requests, timeout=REQUEST_GRACE_SECONDS)
        for application_instance in late:
            application_instance.cancel()
    await asyncio.gather(*cancelled, *requests, return_exceptions=True)
