"""The cache on Redis keeps its connections for the life of the server process.

Django makes a cache object per async context and every ASGI request is a context of its own:
with the stock `RedisCache` each request built a connection pool of its own and opened a new
connection to Redis for its first cache read (chatsite/redis_cache.py)."""

from __future__ import annotations

import pytest
import redis

from chat.models import Message
from tests.live import ChatClient, reply_id_from, wait_for

pytestmark = [
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
]

PAGES = 20


async def test_pages_read_the_cache_over_the_connections_they_already_have(
    redis_server, start_server, alice_session
):
    server = start_server(REDIS_URL=redis_server.url)
    client = ChatClient(server, alice_session)
    conversation_id = await client.create_conversation()
    reply_id = reply_id_from(await client.send(conversation_id, "Say hello"))

    async def finished() -> bool:
        reply = await Message.objects.aget(pk=reply_id)
        return reply.status == Message.Status.COMPLETE

    await wait_for(finished)
    page = f"/c/{conversation_id}/"
    # The first views draw the finished messages and store them in the cache.
    for _ in range(2):
        assert (await client.http.get(page)).status_code == 200

    stats = redis.Redis.from_url(redis_server.url)

    def connections_so_far() -> int:
        return int(stats.info("stats")["total_connections_received"])

    before = connections_so_far()
    hits_before = int(stats.info("stats")["keyspace_hits"])
    for _ in range(PAGES):
        response = await client.http.get(page)
        assert response.status_code == 200
        assert "Say hello" in response.text
    await client.aclose()

    # Every page read its articles from Redis (the cache is in use) ...
    assert int(stats.info("stats")["keyspace_hits"]) - hits_before >= PAGES
    # ... over connections the process already had (the stock backend: one per page; the
    # one this test's `info` opened counts once).
    assert connections_so_far() - before <= 2
