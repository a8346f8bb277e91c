from channels.routing import ChannelNameRouter
from django.conf import settings
from django.urls import path

from .consumers import ConversationConsumer
from .streaming.consumer import StreamingConsumer

websocket_urlpatterns = [
    path("ws/c/<uuid:conversation_id>/", ConversationConsumer.as_asgi()),
]


def channel_routes() -> ChannelNameRouter:
    return ChannelNameRouter({settings.CHAT_STREAM_CHANNEL: StreamingConsumer.as_asgi()})
