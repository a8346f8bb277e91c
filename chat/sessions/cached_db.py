"""`SESSION_ENGINE` with the process's memory in front of the database (one process)."""

from django.contrib.sessions.backends import cached_db

from . import CompiledSessionRead


class SessionStore(CompiledSessionRead, cached_db.SessionStore):
    pass
