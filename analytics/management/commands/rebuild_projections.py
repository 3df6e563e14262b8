"""Replay the whole event log into fresh projections."""
from django.core.management.base import BaseCommand

from analytics.projection import rebuild_weekly_income
from realtime.broadcast import publish_resync


class Command(BaseCommand):
    help = "Replay the whole event log into a fresh weekly income projection."

    def handle(self, *args, **options):
        position = rebuild_weekly_income()
        # Every open dashboard holds values from the old rows: have them start over.
        publish_resync()
        self.stdout.write(self.style.SUCCESS(f"weekly_income rebuilt through position {position}"))
