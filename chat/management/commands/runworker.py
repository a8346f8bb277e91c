from channels.management.commands.runworker import Command as ChannelsRunworker

from chat.streaming.worker import StreamWorker


class Command(ChannelsRunworker):
    """`runworker chat-stream`, with recovery and a graceful SIGTERM (see chat.streaming.worker)."""

    worker_class = StreamWorker
