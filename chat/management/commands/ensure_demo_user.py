from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from chat.selectors import DEMO_PASSWORD, DEMO_USERNAME


class Command(BaseCommand):
    help = "Create the local demo account (demo / demo, staff) if no user exists yet."

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        if users.objects.exists():
            self.stdout.write("Users exist already; no demo account created.")
            return
        users.objects.create_superuser(DEMO_USERNAME, "demo@example.com", DEMO_PASSWORD)
        self.stdout.write("Created the demo account: username demo, password demo (admin too).")
