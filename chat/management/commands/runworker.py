from channels.management.commands.runworker import Command as ChannelsRunworker

from chat.worker import StreamWorker


class Command(ChannelsRunworker):
    """`runworker chat-stream`, with recovery and a graceful SIGTERM (see chat/worker.py)."""

    worker_class = StreamWorker
