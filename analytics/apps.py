"""App config for analytics: subscribes the projector's wake-up to committed events."""
from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"

    def ready(self):
        from analytics import wakeup
        from core.signals import events_committed

        events_committed.connect(wakeup.on_events_committed, dispatch_uid="analytics.wake_projector")
