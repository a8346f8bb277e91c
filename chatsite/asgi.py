"""ASGI entry point: HTTP, WebSockets and the `chat-stream` channel."""

import gc
import os
from typing import Any

from chatsite import (
    daphne_requests,
    daphne_shutdown,
    twisted_writes,
    websocket_frames,
    websocket_logs,
)
from chatsite.handlers import get_asgi_application

twisted_writes.install()  # under daphne: a write goes out at once, not on the reactor's next turn
websocket_frames.install()  # under daphne: a text message is framed and written in one step
websocket_logs.install()  # under daphne: a socket's debug log arguments are made only if logged
daphne_shutdown.install()  # under daphne: stopping cancels every socket, one just opened too
daphne_requests.install()  # under daphne: a POST's form body is left to Django, not parsed first

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from chat.middleware import WebSocketServiceMiddleware  # noqa: E402
from chat.routing import channel_routes, websocket_urlpatterns  # noqa: E402
from chat.socket_auth import socket_auth_stack  # noqa: E402
from chat.streaming.worker import EmbeddedWorkerMiddleware  # noqa: E402
from chatsite.websocket_origin import SiteOriginValidator  # noqa: E402

# Channels' AllowedHostsOriginValidator would check the Origin's host name only; ours also checks
# its scheme and port, as CSRF does. A socket that meets Redis or the database away closes with
# 4013 (Try Again Later), and the page reconnects.
websocket_application = WebSocketServiceMiddleware(
    SiteOriginValidator(socket_auth_stack(URLRouter(websocket_urlpatterns)))
)

http_application: Any = django_asgi_app
if settings.DEBUG or settings.CHAT_SERVE_STATIC:
    # Development and tests: daphne serves /static/ itself (production puts nginx in front).
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    http_application = ASGIStaticFilesHandler(django_asgi_app)

application = ProtocolTypeRouter(
    {
        "http": http_application,
        "websocket": websocket_application,
        "channel": channel_routes(),
    }
)
if settings.CHAT_EMBEDDED_WORKER:
    application = EmbeddedWorkerMiddleware(application)

# What the process has loaded so far lives as long as it does: freeze it, so that the
# collector's full collections no longer walk it. With Django and the app loaded each took
# 60-80 ms, a pause every stream in the process waited through: the 100-stream ramp's p99
# (coalescing window included) was 152-253 ms in five runs without, 69-137 in three with.
gc.collect()
gc.freeze()
