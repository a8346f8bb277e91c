"""Django's database session stores, with the read every request makes compiled once
(chat.compiled): Django's builds its query anew each time, some 0.4 ms a request on
PostgreSQL against 0.1 (`chat.sessions.db`, and `chat.sessions.cached_db` when its cache
misses). What they store, and how, is Django's."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.sessions.models import Session
from django.utils import timezone

from ..compiled import CompiledQuery

_SESSION = CompiledQuery[Session](
    lambda key, now: Session.objects.filter(session_key=key, expire_date__gt=now).order_by()[:1],
    key=str,
    now=datetime,
)


class CompiledSessionRead:
    """`_get_session_from_db` and its async twin for a store of Django's `Session` model: the
    session not expired, or None with the key forgotten, as Django's."""

    session_key: str | None
    _session_key: str | None
    get_model_class: Any  # the store's (a classmethod)

    def _get_session_from_db(self) -> Any:
        if self.get_model_class() is not Session:  # a store of another model: Django's read
            return super()._get_session_from_db()  # type: ignore[misc]
        found = _SESSION.instances(key=self.session_key, now=timezone.now())
        if found:
            return found[0]
        self._session_key = None
        return None

    async def _aget_session_from_db(self) -> Any:
        if self.get_model_class() is not Session:
            return await super()._aget_session_from_db()  # type: ignore[misc]
        found = await _SESSION.ainstances(key=self.session_key, now=timezone.now())
        if found:
            return found[0]
        self._session_key = None
        return None
