from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.fake_upstream import FakeUpstream
from tests.live import TEST_API_KEY, ServerProcess


@pytest.fixture(scope="session")
def fake_upstream_server() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture
def fake_upstream(fake_upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    fake_upstream_server.reset()
    yield fake_upstream_server
    fake_upstream_server.reset()


@pytest.fixture
def start_server(transactional_db: None, fake_upstream: FakeUpstream) -> Iterator[object]:
    """Start real server processes against the fake upstream: `start_server(**env)`."""
    started: list[ServerProcess] = []

    def start(*, worker: bool = False, **env: str) -> ServerProcess:
        base = {
            "OPENAI_BASE_URL": fake_upstream.base_url,
            "OPENAI_API_KEY": TEST_API_KEY,
            "CHAT_MODEL": "fake-model",
            "CHAT_RETRY_BASE_DELAY": "0.05",
        }
        server = ServerProcess({**base, **env}, worker=worker).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
    if os.environ.get("CHATSITE_SHOW_SERVER_LOGS"):
        for server in started:
            print(server.log_text())


@pytest.fixture
def user(django_user_model: type) -> object:
    return django_user_model.objects.create_user("alice", password="alice-password")


@pytest.fixture
def other_user(django_user_model: type) -> object:
    return django_user_model.objects.create_user("mallory", password="mallory-password")


@pytest.fixture
def alice_session(user: object) -> str:
    """A logged-in session for `user`, made before the test's event loop runs."""
    from tests.live import session_cookie_for

    return session_cookie_for(user)
