"""A real chatsite server process for end-to-end tests, and a client that talks to it the way
a browser does: session cookie, CSRF token, htmx form posts and the WebSocket."""

from __future__ import annotations

import asyncio
import html
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from django.conf import settings
from django.db import connection
from django.test import Client

from chat.progressive import with_list_change

ROOT = Path(__file__).resolve().parent.parent
TEST_API_KEY = "sk-test-NEVER-SHOW-THIS-KEY-1234567890"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    """The URL of the test database this process uses, for the server process to share."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


class ServerProcess:
    """`daphne chatsite.asgi:application` (or `manage.py runworker chat-stream`) as a child."""

    def __init__(
        self, env: dict[str, str], *, worker: bool = False, port: int | None = None
    ) -> None:
        self.port = port or free_port()  # `port`: where an earlier server stood (a restart)
        self.worker = worker
        self.log = tempfile.NamedTemporaryFile(
            prefix="chatsite-server-", suffix=".log", delete=False
        )
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CHAT_", "OPENAI_"))},
            "DATABASE_URL": database_url(),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECRET_KEY": settings.SECRET_KEY,
            "PYTHONUNBUFFERED": "1",
            "CHAT_LOG_LEVEL": "INFO",
            "CHAT_SERVE_STATIC": "true",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        if self.worker:
            command = [sys.executable, "manage.py", "runworker", "chat-stream"]
        else:
            command = [
                sys.executable,
                "-m",
                "chatsite.serve",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "chatsite.asgi:application",
            ]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        try:
            if self.worker:
                self._wait_for_log("listening on")
            else:
                self._wait_ready()
        except BaseException:
            self.stop()  # a server that did not come up must not outlive the test
            raise
        return self

    def _wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_text()}")
            if text in self.log_text():
                return
            time.sleep(0.05)
        raise RuntimeError(f"worker did not start:\n{self.log_text()}")

    @property
    def worker_id(self) -> str:
        match = re.search(r"worker (\S+) listening on", self.log_text())
        assert match, self.log_text()
        return match.group(1)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_text()}")
            try:
                # Any answer will do (behind a TLS proxy, plain HTTP is redirected).
                if httpx.get(self.url + "/accounts/login/", timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log_text()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")


def session_cookie_for(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


async def asession_cookie_for(user: Any) -> str:
    """`session_cookie_for` from an async test: in a thread of its own, whose database
    connection is closed after (left open, it keeps PostgreSQL from dropping the test
    database at the end of a run)."""

    def login() -> str:
        try:
            return session_cookie_for(user)
        finally:
            connection.close()

    return await asyncio.to_thread(login)


OOB_OPEN = re.compile(
    r'<(\w+) (?:id="([a-z])(\d+)"([^>]*?) ?hx-swap-oob="([^"]+)"'
    # A change to the list last among a reply's blocks (`chat.fragments.text_step`), a
    # pending span in a tail's text drawn formatted, rows added to a table in the tail, or
    # text added to a cell of its row being written
    r'|hx-swap-oob="(beforeend|outerHTML|beforebegin|innerHTML):#([a-z])(\d+)'
    r'((?: > :last-child)*)(?: > tr > :nth-child\((\d+)\)((?: > :last-child)*))?")[^>]*>'
)
# An element's tag, opening or closing, and the elements that have no closing tag
ANY_TAG = re.compile(r"<(/?)(\w+)[^>]*>")
VOID = {"br", "img", "hr", "input", "wbr"}
ELEMENT_OPEN = re.compile(r'<(\w+) id="([a-z])(\d+)"[^>]*>')
TAG = re.compile(r"<[^>]+>")


def _element_end(html_text: str, tag: str, start: int) -> tuple[int, int]:
    """Where the element whose opening tag ends at `start` has its closing tag."""
    depth = 1
    for match in re.finditer(rf"<(/?){tag}\b[^>]*>", html_text[start:]):
        depth += -1 if match.group(1) else 1
        if depth == 0:
            return start + match.start(), start + match.end()
    raise AssertionError(f"unclosed <{tag}> in {html_text[start - 80 : start + 80]!r}")


def _last_child(html_text: str, start: int, end: int) -> tuple[int, int]:
    """The inner HTML (start, end) of the last element child of the element whose inner
    HTML is `html_text[start:end]` (`:last-child`)."""
    last, level = None, 0
    for match in ANY_TAG.finditer(html_text, start, end):
        closing, name = match.group(1), match.group(2)
        if name in VOID:
            continue
        if not closing:
            if level == 0:
                last = match
            level += 1
        else:
            level -= 1
    assert last is not None, html_text[start:end]
    return last.end(), _element_end(html_text, last.group(2), last.end())[0]


def text_of(html_text: str) -> str:
    """The text a browser shows for some HTML (tags dropped, entities decoded)."""
    return html.unescape(TAG.sub("", html_text))


def shown(markdown_text: str) -> str:
    """The text a finished reply shows: its markdown rendered."""
    from chat.markdown import render_markdown

    return text_of(render_markdown(markdown_text))


@dataclass
class PageModel:
    """What a tab shows, built by applying socket frames the way htmx applies them: each
    out-of-band fragment appends to, replaces or deletes the element with its id."""

    elements: dict[str, str] = field(default_factory=dict)  # "c12" -> inner HTML
    finished: dict[int, str] = field(default_factory=dict)  # message id -> the finishing frame
    frames: list[str] = field(default_factory=list)

    def apply(self, frame: str) -> None:
        self.frames.append(frame)
        position = 0
        while match := OOB_OPEN.search(frame, position):
            tag, kind, number, _, swap, list_swap, list_kind, list_number, chain, column, down = (
                match.groups()
            )
            inner_end, position = _element_end(frame, tag, match.end())
            inner = frame[match.end() : inner_end]
            if list_swap == "beforeend" and list_kind in "wv":  # where its words are written
                key = f"{list_kind}{list_number}"
                self._append_pending(key, chain.count(":last-child"), inner)
                continue
            if swap == "innerHTML" and kind in "wv":  # a pending span drawn again
                key = f"{kind}{number}"
                self._replace_pending(key, f'<span id="{key}">{inner}</span>')
                continue
            if swap == "innerHTML" and kind in "xy":  # an item's text drawn anew
                self._set_text(f"{kind}{number}", inner)
                continue
            if swap == "innerHTML" and kind in "zq":  # a nested list's item drawn anew
                tail, opening, end = self._row(f"{kind}{number}")
                html_text = self.elements[tail]
                close = html_text.rindex("</li>", 0, end)
                self.elements[tail] = html_text[: opening.end()] + inner + html_text[close:]
                continue
            if column is not None:  # text added to a cell of a table's row being written
                key = f"{list_kind}{list_number}"
                depth = down.count(":last-child")
                self._set_cell(key, int(column), inner, list_swap == "beforeend", depth)
                continue
            if list_swap == "beforebegin" and list_kind in "wv":  # text before a pending span
                self._before_pending(f"{list_kind}{list_number}", inner)
                continue
            if swap == "delete" and kind in "wv":  # a pending span that goes
                self._replace_pending(f"{kind}{number}", "")
                continue
            if list_swap == "beforebegin":  # rows added to a table before its row being written
                # (or items to a list nested in an item, before its item being written)
                tail, opening, _ = self._row(f"{list_kind}{list_number}")
                before = self.elements[tail][: opening.start()]
                self.elements[tail] = before + inner + self.elements[tail][opening.start() :]
                continue
            if list_swap and list_kind in "wv":  # a pending span, drawn formatted in its place
                self._replace_pending(f"{list_kind}{list_number}", f"<{tag}>{inner}</{tag}>")
                continue
            if list_swap:
                key = f"{list_kind}{list_number}"
                redrawn = list_swap == "outerHTML"
                drawn = frame[match.start() : position] if redrawn else inner
                drawn = re.sub(r' hx-swap-oob="[^"]*"', "", drawn, count=1)
                self.elements[key] = with_list_change(self.elements[key], drawn, redrawn)
                continue
            key = f"{kind}{number}"
            if swap == "beforeend":
                self._append(key, inner)
            elif swap == "innerHTML":
                self.elements[key] = inner
            elif swap == "delete":
                self.elements.pop(key, None)
            else:  # outerHTML: the element and the elements with ids inside it
                self.elements[key] = inner
                self._index(inner)
                if kind in "me" and not self._streaming(int(number)):
                    self._end_streaming(int(number))
                    self.finished[int(number)] = self.elements.get(f"c{number}", "") + frame

    def _replace_pending(self, key: str, drawn: str) -> None:
        tail = ("t" if key[0] == "w" else "u") + key[1:]
        html_text = self.elements[tail]
        opening = re.search(rf'<span id="{key}">', html_text)
        assert opening is not None, (key, html_text)
        _, end = _element_end(html_text, "span", opening.end())
        self.elements[tail] = html_text[: opening.start()] + drawn + html_text[end:]

    def _before_pending(self, key: str, inner: str) -> None:
        """`inner` put before the pending span `key` (htmx's `beforebegin`)."""
        tail = ("t" if key[0] == "w" else "u") + key[1:]
        html_text = self.elements[tail]
        opening = re.search(rf'<span id="{key}">', html_text)
        assert opening is not None, (key, html_text)
        self.elements[tail] = html_text[: opening.start()] + inner + html_text[opening.start() :]

    def _append_pending(self, key: str, depth: int, inner: str) -> None:
        """`inner` added to the pending span `key`'s last element child `depth` levels down
        (the span itself at 0), at its end, as htmx's `beforeend` to such a selector adds."""
        tail = ("t" if key[0] == "w" else "u") + key[1:]
        html_text = self.elements[tail]
        opening = re.search(rf'<span id="{key}">', html_text)
        assert opening is not None, (key, html_text)
        start, (end, _) = opening.end(), _element_end(html_text, "span", opening.end())
        for _ in range(depth):
            start, end = _last_child(html_text, start, end)
        self.elements[tail] = html_text[:end] + inner + html_text[end:]

    def _row(self, key: str) -> tuple[str, re.Match[str], int]:
        """The tail holding a table's row being written `key` (or its head being written, or
        the item being written of a list nested in an item), its body's (or head's, or
        item's) opening, its end."""
        tail = ("t" if key[0] == "z" else "u") + key[1:]
        html_text = self.elements[tail]
        opening = re.search(rf'<(tbody|thead|li) id="{key}"[^>]*>', html_text)
        assert opening is not None, (key, html_text)
        return tail, opening, _element_end(html_text, opening.group(1), opening.end())[1]

    def _set_cell(self, key: str, column: int, inner: str, appended: bool, depth: int = 0) -> None:
        """A cell of a table's row being written: `inner` added to its text (or to its last
        element child `depth` levels down), or its text."""
        tail, opening, end = self._row(key)
        html_text = self.elements[tail]
        cells = list(re.finditer(r"<(t[dh])\b[^>]*>", html_text[opening.end() : end]))
        start = opening.end() + cells[column - 1].end()
        close, _ = _element_end(html_text, cells[column - 1].group(1), start)
        for _ in range(depth):
            start, close = _last_child(html_text, start, close)
        kept = html_text[start:close] if appended else ""
        self.elements[tail] = html_text[:start] + kept + inner + html_text[close:]

    def _set_text(self, key: str, inner: str) -> None:
        """The text of a list's item being written `key`, inside the tail's HTML."""
        tail = ("t" if key[0] == "x" else "u") + key[1:]
        html_text = self.elements[tail]
        opening = re.search(rf'<span id="{key}"(?: class="[^"]*")?>', html_text)
        assert opening is not None, (key, html_text)
        close, _ = _element_end(html_text, "span", opening.end())
        self.elements[tail] = html_text[: opening.end()] + inner + html_text[close:]

    def _append(self, key: str, inner: str) -> None:
        # A code block or a list's item still streaming, or the pending span in a tail's
        # text, lives inside the tail's HTML (even where a whole message drawn has put a copy
        # of it among the elements).
        tail = ("t" if key[0] in "xw" else "u") + key[1:]
        html_text = self.elements.get(tail, "") if key[0] in "xywv" else ""
        opening = re.search(rf'<(code|span) id="{key}"(?: class="[^"]*")?>', html_text)
        if opening is None:
            assert key[0] not in "xywv" or key in self.elements, (key, html_text)
            self.elements[key] = self.elements.get(key, "") + inner
            return
        close, _ = _element_end(html_text, opening.group(1), opening.end())
        self.elements[tail] = html_text[:close] + inner + html_text[close:]

    def _index(self, html_text: str) -> None:
        position = 0
        while match := ELEMENT_OPEN.search(html_text, position):
            inner_end, _ = _element_end(html_text, match.group(1), match.end())
            self.elements[f"{match.group(2)}{match.group(3)}"] = html_text[match.end() : inner_end]
            position = match.end()

    def _streaming(self, message_id: int) -> bool:
        """Drawn whole as it streams (a continuation's start): its end asks for a snapshot."""
        return "ws-send" in self.elements.get(f"e{message_id}", "")

    def _end_streaming(self, message_id: int) -> None:
        if f"e{message_id}" in self.elements and "ws-send" not in self.elements[f"e{message_id}"]:
            self.elements.pop(f"t{message_id}", None)
            self.elements.pop(f"u{message_id}", None)

    def content(self, message_id: int) -> str:
        """The reply's text as the tab shows it: its rendered blocks, then its open tail."""
        return text_of(
            self.elements.get(f"c{message_id}", "") + self.elements.get(f"t{message_id}", "")
        )

    def reasoning(self, message_id: int) -> str:
        return text_of(
            self.elements.get(f"r{message_id}", "") + self.elements.get(f"u{message_id}", "")
        )

    def text(self, key: str) -> str:
        return text_of(self.elements.get(key, ""))


class ChatClient:
    """A logged-in user talking to the server over HTTP and WebSockets."""

    def __init__(self, server: ServerProcess, session: str) -> None:
        self.server = server
        self.session = session
        self.http = httpx.AsyncClient(
            base_url=server.url, cookies={settings.SESSION_COOKIE_NAME: self.session}, timeout=30
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def csrf(self) -> str:
        if "csrftoken" not in self.http.cookies:
            await self.http.get("/")
        return self.http.cookies["csrftoken"]

    async def create_conversation(self) -> uuid.UUID:
        response = await self.http.post("/c/", headers={"X-CSRFToken": await self.csrf()})
        assert response.status_code == 302, response.text
        return uuid.UUID(response.headers["location"].strip("/").split("/")[-1])

    async def send(
        self, conversation_id: uuid.UUID, content: str, idempotency_key: uuid.UUID | None = None
    ) -> httpx.Response:
        data = {"content": content}
        if idempotency_key:
            data["idempotency_key"] = str(idempotency_key)
        return await self.http.post(
            f"/c/{conversation_id}/messages/",
            data=data,
            headers={"X-CSRFToken": await self.csrf(), "HX-Request": "true"},
        )

    async def stop(self, conversation_id: uuid.UUID, message_id: int) -> httpx.Response:
        return await self.http.post(
            f"/c/{conversation_id}/messages/{message_id}/stop/",
            headers={"X-CSRFToken": await self.csrf(), "HX-Request": "true"},
        )

    async def continue_reply(self, conversation_id: uuid.UUID, message_id: int) -> httpx.Response:
        """Press Continue on a reply cut short, as a tab's htmx does."""
        return await self.http.post(
            f"/c/{conversation_id}/messages/{message_id}/continue/",
            headers={"X-CSRFToken": await self.csrf(), "HX-Request": "true"},
        )

    def socket(self, conversation_id: uuid.UUID) -> Any:
        return websockets.connect(
            f"ws://127.0.0.1:{self.server.port}/ws/c/{conversation_id}/",
            additional_headers={
                "Cookie": f"{settings.SESSION_COOKIE_NAME}={self.session}",
                "Origin": self.server.url,
            },
            max_size=None,
        )


async def read_until_finished(
    ws: Any, page: PageModel, message_id: int, timeout: float = 30.0
) -> PageModel:
    async with asyncio.timeout(timeout):
        while message_id not in page.finished:
            page.apply(await ws.recv())
    return page


def reply_id_from(response: httpx.Response) -> int:
    ids = [int(i) for i in re.findall(r'<article id="m(\d+)"', response.text)]
    assert len(ids) == 2, response.text
    return ids[1]


async def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
