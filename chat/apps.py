from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from . import receivers  # noqa: F401  (connects the signal receivers)
        from .outages import database_connected
        from .selectors import sqlite_functions

        connection_created.connect(database_connected, dispatch_uid="chat.database_connected")
        connection_created.connect(sqlite_functions, dispatch_uid="chat.sqlite_functions")
