"""The test suite's settings: chatsite's own, with a secret key that exists only for tests.

chatsite refuses to start without DJANGO_SECRET_KEY when DEBUG is off, and the suite runs with
DEBUG off like production; the server processes the tests start inherit this key.
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-not-secret-" + "k" * 40)

from chatsite.settings import *  # noqa: F403

# Every test that logs in hashes a password; the default hasher is slow on purpose.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
