"""Screenshots of every page for docs/screenshots/: the tour of tests/browser/pages.py at
laptop and phone size, light and dark, against a real server with the demo model, logged in
as the demo account, with a few earlier conversations in the sidebar.

    scripts/screenshots [--out DIR]      (or: .venv/bin/python -m tests.screenshots)

Writes STOP-SIZE-SCHEME.png, e.g. conversation-phone-dark.png.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
EARLIER = [
    ("Packing for Lisbon in March", 0.1, True),
    ("Fix a flaky pytest fixture", 0.2, False),
    ("Sourdough starter schedule", 1.2, False),
    ("Compare PostgreSQL and SQLite locking", 1.5, False),
    ("Weekly running plan for a 10k", 3, False),
    ("Refactor a Django view into services", 4, False),
    ("Birthday gift ideas for a ten year old", 6, False),
    ("Explain Raft consensus simply", 12, False),
    ("Translate a letter into French", 40, False),
    ("Why is my CSS grid overflowing", 75, False),
]


def seed() -> None:
    """The demo account (as `scripts/run` makes it) and its earlier conversations."""
    from django.core.management import call_command
    from django.utils import timezone

    from chat.models import Conversation, Message
    from chat.selectors import DEMO_USERNAME

    call_command("migrate", verbosity=0)
    call_command("ensure_demo_user", verbosity=0)
    from django.contrib.auth.models import User

    demo = User.objects.get(username=DEMO_USERNAME)
    for title, days_ago, pinned in EARLIER:
        conversation = Conversation.objects.create(
            owner=demo, title=title, title_source="model", model="demo", pinned=pinned
        )
        Message.objects.create(conversation=conversation, role="user", content=title)
        Conversation.objects.filter(pk=conversation.pk).update(
            updated=timezone.now() - timedelta(days=days_ago)
        )


def forget_tour_conversations() -> None:
    """Each tour starts its own conversation; the next tour's sidebar should not list it."""
    from chat.models import Conversation

    Conversation.objects.exclude(title__in=[title for title, _, _ in EARLIER]).delete()


async def take(out: Path) -> list[Path]:
    from asgiref.sync import sync_to_async
    from playwright.async_api import async_playwright

    from chat.selectors import DEMO_PASSWORD, DEMO_USERNAME
    from tests.browser.pages import SCHEMES, SIZES, tour
    from tests.live import ServerProcess

    server = ServerProcess(
        {
            "OPENAI_BASE_URL": "",
            "OPENAI_API_KEY": "",
            "CHAT_MODEL": "",
            "CHAT_DEMO_MIN_TPS": "30",
            "CHAT_DEMO_MAX_TPS": "40",
            "CHAT_GENERATE_TITLES": "true",
            # As scripts/run serves it: the login page names the demo account.
            "DJANGO_DEBUG": "true",
        }
    ).start()
    written = []
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            for size, viewport in SIZES.items():
                for scheme in SCHEMES:
                    context = await browser.new_context(
                        viewport=viewport, color_scheme=scheme, locale="en-US"
                    )
                    page = await context.new_page()
                    async for stop in tour(
                        page, server.url, username=DEMO_USERNAME, password=DEMO_PASSWORD
                    ):
                        path = out / f"{stop.name}-{size}-{scheme}.png"
                        await page.screenshot(path=str(path), animations="disabled", caret="hide")
                        written.append(path)
                    await context.close()
                    await sync_to_async(forget_tour_conversations)()
            await browser.close()
    finally:
        server.stop()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="chatsite-screenshots-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'db.sqlite3'}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    try:
        seed()
        args.out.mkdir(parents=True, exist_ok=True)
        for path in asyncio.run(take(args.out)):
            print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
