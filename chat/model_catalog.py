"""Which models a conversation may use: CHAT_MODELS if set, else the upstream's `/models`
(cached). The default model is always offered."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

import httpx
import redis.exceptions
from django.conf import settings
from django.core.cache import cache
from django.views.decorators.debug import sensitive_variables

from . import outages
from .streaming.demo import DemoTransport
from .streaming.upstream import base_url

if TYPE_CHECKING:
    from .models import Conversation

logger = logging.getLogger(__name__)

CACHE_KEY = "chat:available-models"
CACHE_SECONDS = 600
FAILURE_CACHE_SECONDS = 30
CACHE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def available_models() -> list[str]:
    if settings.CHAT_MODELS:
        return _with_default(settings.CHAT_MODELS)
    models = _cached()
    if models is None:
        try:
            models = _fetch_models()
            _cache(models, CACHE_SECONDS)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            logger.warning("could not list the upstream's models: %s", type(exc).__name__)
            models = []
            _cache(models, FAILURE_CACHE_SECONDS)
    return _with_default(models)


def models_for(conversation: Conversation) -> list[str]:
    """The models a conversation may switch to: those offered, and its own when it is no longer
    among them (its replies still go to it, so the picker must show it chosen)."""
    models = available_models()
    return models if conversation.model in models else [conversation.model, *models]


# The cache is Redis when several processes share it: while Redis is away the page still
# shows, with the list asked of the upstream.


def _cached() -> list[str] | None:
    try:
        return cast(list[str] | None, cache.get(CACHE_KEY))
    except CACHE_ERRORS as error:
        outages.redis.went_away(error)
        return None


def _cache(models: list[str], seconds: int) -> None:
    try:
        cache.set(CACHE_KEY, models, seconds)
    except CACHE_ERRORS as error:
        outages.redis.went_away(error)


def _with_default(models: list[str]) -> list[str]:
    return models if settings.CHAT_MODEL in models else [settings.CHAT_MODEL, *models]


@sensitive_variables("headers")
def _fetch_models() -> list[str]:
    transport = DemoTransport() if settings.CHAT_DEMO_MODE else httpx.HTTPTransport(retries=0)
    headers = (
        {"Authorization": f"Bearer {settings.OPENAI_API_KEY}"} if settings.OPENAI_API_KEY else {}
    )
    with httpx.Client(
        base_url=base_url() + "/", transport=transport, timeout=5.0, headers=headers
    ) as client:
        response = client.get("models")
        response.raise_for_status()
        data = response.json()["data"]
    return sorted(
        {str(entry["id"]) for entry in data if isinstance(entry, dict) and entry.get("id")}
    )
