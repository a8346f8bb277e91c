"""`SESSION_ENGINE` with the database alone (with Redis: several processes)."""

from django.contrib.sessions.backends import db

from . import CompiledSessionRead


class SessionStore(CompiledSessionRead, db.SessionStore):
    pass
