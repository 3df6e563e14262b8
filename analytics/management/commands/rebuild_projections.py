"""Replay the whole event log into fresh projections."""
from django.core.management.base import BaseCommand, CommandError

from analytics.projection import ProjectionFailed, rebuild_weekly_income
from realtime.broadcast import publish_resync


class Command(BaseCommand):
    help = "Replay the whole event log into a fresh weekly income projection."

    def handle(self, *args, **options):
        try:
            position = rebuild_weekly_income()
        except ProjectionFailed as exc:
            # Nothing was written: the old rows stay until the log can be projected.
            raise CommandError(str(exc)) from exc
        # Every open dashboard holds values from the old rows: have them start over.
        publish_resync()
        self.stdout.write(self.style.SUCCESS(f"weekly_income rebuilt through position {position}"))
