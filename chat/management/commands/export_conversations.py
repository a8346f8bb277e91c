import sys
from datetime import datetime, time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from chat.exports import csv_lines, jsonl_lines, with_messages
from chat.models import Conversation


class Command(BaseCommand):
    help = (
        "Write conversations as JSON Lines (one conversation per line, with its messages) "
        "or as CSV (one row per message)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", help="only this user's conversations (username)")
        parser.add_argument("--since", help="only conversations updated since DATE or DATETIME")
        parser.add_argument("--output", help="file to write (default: standard output)")
        parser.add_argument(
            "--format", choices=["jsonl", "csv"], default="jsonl", help="default: jsonl"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        conversations = Conversation.objects.order_by("created")
        if options["user"]:
            conversations = conversations.filter(owner__username=options["user"])
        if options["since"]:
            conversations = conversations.filter(updated__gte=self._since(options["since"]))
        out = (
            open(options["output"], "w", encoding="utf-8", newline="")
            if options["output"]
            else sys.stdout
        )
        rows = with_messages(conversations).iterator(chunk_size=200)
        as_csv = options["format"] == "csv"
        count = 0
        try:
            for line in csv_lines(rows) if as_csv else jsonl_lines(rows):
                out.write(line)
                count += 1
        finally:
            if out is not sys.stdout:
                out.close()
        if as_csv:
            self.stderr.write(f"Exported {count - 1} message(s).")  # less the header
        else:
            self.stderr.write(f"Exported {count} conversation(s).")

    @staticmethod
    def _since(value: str) -> datetime:
        moment = parse_datetime(value)
        if moment is None:
            day = parse_date(value)
            if day is None:
                raise CommandError(f"--since: {value!r} is not a date (YYYY-MM-DD) or datetime")
            moment = datetime.combine(day, time.min)
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment)
        return moment
