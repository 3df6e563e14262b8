"""App config for analytics: subscribes the projector's wake-up to committed events."""
from django.apps import AppConfig


def wake_projector(sender, last_position: int, **kwargs) -> None:
    # The task module is imported on the first commit, not at start-up: it pulls in pandas
    # (a second or two) that management commands and most test processes never need.
    from analytics.tasks import wake_projector as receiver

    receiver(sender, last_position=last_position, **kwargs)


class AnalyticsConfig(AppConfig):
    name = "analytics"

    def ready(self):
        from core.signals import events_committed

        events_committed.connect(wake_projector, dispatch_uid="analytics.wake_projector")
