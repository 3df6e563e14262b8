"""Recompute projections from the log and compare; exit 1 with a diff on any mismatch."""
from django.core.management.base import BaseCommand, CommandError

from analytics.verification import verify_weekly_income


class Command(BaseCommand):
    help = "Recompute weekly income from the event log and compare it with the stored rows."

    def handle(self, *args, **options):
        problems = verify_weekly_income()
        if problems:
            for line in problems:
                self.stderr.write(line)
            raise CommandError(f"weekly_income: {len(problems)} mismatch(es)")
        self.stdout.write(self.style.SUCCESS("weekly_income matches the event log"))
