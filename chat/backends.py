"""The authentication backend that reads a logged-in session's user on every request and socket:
Django's `ModelBackend`, with that read compiled once (chat.compiled) rather than built anew,
which cost some 0.2 ms a request.

It logs no one in. Django's `ModelBackend`, listed before it, checks passwords (a failed login
is checked once, not once per backend); a login it makes is handed to this backend
(`chat.receivers.hand_the_session_to_the_session_user_backend`), so the session names this one.
Sessions made before, which name Django's, stay logged in through Django's.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User
from django.http import HttpRequest

from .compiled import CompiledQuery

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
SESSION_USER_BACKEND = "chat.backends.SessionUserBackend"

_USER = CompiledQuery[User](
    lambda pk: get_user_model()._default_manager.filter(pk=pk).order_by()[:1], pk=int
)


class SessionUserBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        return None

    def get_user(self, user_id: Any) -> User | None:
        """`ModelBackend.get_user`: the user, if they exist and may log in."""
        found = _USER.instances(pk=user_id)
        if not found:
            return None
        user = found[0]
        return user if self.user_can_authenticate(user) else None
