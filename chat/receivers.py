"""Signal receivers: a logout or a deactivation closes the user's open WebSockets, another
change to the user has them check their sessions; a login's session is read by the session
user backend (chat.backends).

Connected in `ChatConfig.ready`. Who receives the event is decided here (the user's sockets,
or one session's); `chat.events` delivers it, after the change is committed.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.http import HttpRequest

from . import backends, events

logger = logging.getLogger(__name__)


@receiver(user_logged_out, dispatch_uid="chat.close_sockets_on_logout")
def close_sockets_on_logout(
    sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any
) -> None:
    """Only the sockets opened with this session close: the user's other devices stay.

    The session is ended here, before its sockets hear of it (Django's logout sends this
    signal first, then ends it): a tab told so opens its socket again at once, which must not
    be let in with the session about to go. Django's own flush after this finds it empty."""
    session = getattr(request, "session", None)
    session_key = getattr(session, "session_key", None)
    if session is None or user is None or not session_key:
        return
    session.flush()
    transaction.on_commit(
        functools.partial(_send, events.session_closed_sync, user.pk, session_key)
    )


@receiver(user_logged_in, dispatch_uid="chat.hand_the_session_to_the_session_user_backend")
def hand_the_session_to_the_session_user_backend(
    sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any
) -> None:
    """A login Django's ModelBackend made is read back, on every request, by the session user
    backend (the same user, read by a compiled query), where that backend is listed."""
    session = getattr(request, "session", None)
    if (
        session is not None
        and session.get(BACKEND_SESSION_KEY) == backends.MODEL_BACKEND
        and backends.SESSION_USER_BACKEND in settings.AUTHENTICATION_BACKENDS
    ):
        session[BACKEND_SESSION_KEY] = backends.SESSION_USER_BACKEND


# A save of a user that names only other fields (last_login, at every login) leaves their
# sessions as they were.
SESSION_FIELDS = frozenset({"is_active", "password"})


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="chat.check_sockets_on_save")
def check_sockets_on_save(
    sender: Any, instance: Any, created: bool, update_fields: Any = None, **kwargs: Any
) -> None:
    """A deactivation closes the user's sockets; any other change that may end sessions (a
    new password, set here or in the admin, ends the others) has each socket check its own
    session at once, rather than at its next message or its next periodic check."""
    if created or (update_fields is not None and not SESSION_FIELDS & set(update_fields)):
        return
    send = events.user_changed_sync if instance.is_active else events.user_closed_sync
    transaction.on_commit(functools.partial(_send, send, instance.pk))


def _send(send: Any, *args: Any) -> None:
    # The logout or the change has happened; a channel layer that is down must not turn it
    # into an error page. A socket left open fails its next session check.
    try:
        send(*args)
    except Exception:
        logger.exception("could not tell the sockets of user %s", args[0])
