"""App config for realtime."""
from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"

    def ready(self):
        # Open sockets close when their user's rights change (realtime/revocation.py).
        from realtime import revocation

        revocation.connect()
