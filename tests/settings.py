"""The test suite's settings: chatsite's own, with a secret key that exists only for tests.

chatsite refuses to start without DJANGO_SECRET_KEY when DEBUG is off, and the suite runs with
DEBUG off like production; the server processes the tests start inherit this key.
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-not-secret-" + "k" * 40)

from chatsite.settings import *  # noqa: F403

# Every test that logs in hashes a password; the default hasher is slow on purpose.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# No per-user limits unless a test sets them (tests/test_limits.py, or the environment of a
# server process it starts): many tests start many replies and conversations for one user.
CHAT_LIMIT_CONCURRENT_REPLIES = int(os.environ.get("CHAT_LIMIT_CONCURRENT_REPLIES", "0"))
CHAT_LIMIT_MESSAGES_PER_MINUTE = int(os.environ.get("CHAT_LIMIT_MESSAGES_PER_MINUTE", "0"))
CHAT_LIMIT_TOKENS_PER_DAY = int(os.environ.get("CHAT_LIMIT_TOKENS_PER_DAY", "0"))
CHAT_LIMIT_CONVERSATIONS_PER_MINUTE = int(
    os.environ.get("CHAT_LIMIT_CONVERSATIONS_PER_MINUTE", "0")
)

# A tool that takes this long, for tests of what a slow tool does to its reply (the built-in
# tools answer at once). Only server processes a test starts with it set have it.
if os.environ.get("CHAT_TEST_SLOW_TOOL_SECONDS"):
    from tests.slow_tool import register_slow_tool

    register_slow_tool(float(os.environ["CHAT_TEST_SLOW_TOOL_SECONDS"]))
