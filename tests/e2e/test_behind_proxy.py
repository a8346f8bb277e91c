"""Behind the shipped nginx with TLS: daphne sees plain HTTP with nginx's headers
(`X-Forwarded-Proto: https`, the site's `https://` Origin). Log in, open the socket and stream
a reply through a real server set up as the README's production environment says."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
import websockets

from chat.models import Message
from tests.fake_upstream import FakeRequest, reply_events
from tests.live import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

SITE = "chat.example.com"


async def test_login_socket_and_a_streamed_reply_through_the_https_proxy(
    start_server, fake_upstream, user
):
    server = start_server(DJANGO_HTTPS="true", DJANGO_ALLOWED_HOSTS=f"{SITE},127.0.0.1")

    async def plan(request: FakeRequest):
        return await request.stream(reply_events(["Through ", "the proxy."]))

    fake_upstream.plan = plan
    proxy = {"Host": SITE, "X-Forwarded-Proto": "https", "Origin": f"https://{SITE}"}
    cookies: dict[str, str] = {}

    def cookie_header() -> dict[str, str]:
        # The cookies are Secure: a client would only send them over HTTPS, which nginx ends.
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        page = await http.get("/accounts/login/", headers=proxy)
        assert page.status_code == 200
        cookies["csrftoken"] = page.cookies["csrftoken"]
        login = await http.post(
            "/accounts/login/",
            data={
                "username": user.username,
                "password": "alice-password",
                "csrfmiddlewaretoken": cookies["csrftoken"],
            },
            headers={**proxy, **cookie_header(), "Referer": f"https://{SITE}/accounts/login/"},
        )
        assert login.status_code == 302, login.text[:500]
        cookies["sessionid"] = login.cookies["sessionid"]
        csrf = {"X-CSRFToken": cookies["csrftoken"], **cookie_header(), **proxy}
        created = await http.post("/c/", headers=csrf)
        assert created.status_code == 302, created.text[:300]
        conversation_id = created.headers["location"].strip("/").split("/")[-1]

        async with websockets.connect(
            f"ws://{SITE}/ws/c/{conversation_id}/",  # the Host header nginx passes on
            host="127.0.0.1",
            port=server.port,
            origin=f"https://{SITE}",
            additional_headers={"X-Forwarded-Proto": "https", **cookie_header()},
        ) as ws:
            sent = await http.post(
                f"/c/{conversation_id}/messages/",
                data={"content": "hello"},
                headers={**csrf, "HX-Request": "true"},
            )
            assert sent.status_code == 200, sent.text[:300]
            reply_id = int(re.findall(r'<article id="m(\d+)"', sent.text)[-1])
            frames = []

            async def finished():
                reply = await Message.objects.aget(pk=reply_id)
                return reply.status == "complete"

            await wait_for(finished)
            while not any("Through" in f for f in frames):
                frames.append(await asyncio.wait_for(ws.recv(), 10))
    reply = await Message.objects.aget(pk=reply_id)
    assert reply.content == "Through the proxy."
