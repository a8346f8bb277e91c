"""Django's ASGI handler, with the middleware and the view run as one synchronous call."""

from __future__ import annotations

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class SyncChainASGIHandler(ASGIHandler):
    """Every view here is synchronous. Django's own ASGI handler builds the middleware chain
    async: each middleware that can run either way (most of ours) then runs its sync hooks
    with a hop of its own to a thread and back (`MiddlewareMixin.__acall__`), about fifteen
    hops a request, each a few hundred microseconds of CPU. Built as for WSGI, the chain runs
    in one hop, the view in the same thread."""

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)
        chain = self._middleware_chain  # type: ignore[has-type]
        self._middleware_chain = sync_to_async(chain, thread_sensitive=True)


def get_asgi_application() -> SyncChainASGIHandler:
    """`django.core.asgi.get_asgi_application` with that handler."""
    django.setup(set_prefix=False)
    return SyncChainASGIHandler()
