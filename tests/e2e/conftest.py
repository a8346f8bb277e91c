import pytest
from asgiref.sync import sync_to_async
from django.db import connections


@pytest.fixture(autouse=True)
async def close_thread_connections():
    """The async ORM runs on asgiref's executor thread; close its connections after each test
    so the test database can be dropped (PostgreSQL refuses while sessions remain)."""
    yield
    await sync_to_async(connections.close_all)()
