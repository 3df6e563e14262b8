"""Replay the whole event log into fresh projections."""
from django.core.management.base import BaseCommand, CommandError

from analytics.projection import ProjectionFailed
from analytics.rebuild import DEFAULT_READERS, EventStoreBusy, RebuildStats, rebuild_weekly_income
from realtime.broadcast import publish_resync


class Command(BaseCommand):
    help = "Replay the whole event log into a fresh weekly income projection."

    def add_arguments(self, parser):
        parser.add_argument(
            "--readers", type=int, default=DEFAULT_READERS,
            help=f"database connections reading the log side by side (default {DEFAULT_READERS}: one more than this machine's cores, at most 4)",
        )

    def handle(self, *args, **options):
        if options["readers"] < 1:
            raise CommandError("--readers must be at least 1")
        stats = RebuildStats()
        try:
            position = rebuild_weekly_income(readers=options["readers"], stats=stats)
        except (ProjectionFailed, EventStoreBusy) as exc:
            # Nothing was written: the old rows stay until the log can be projected.
            raise CommandError(str(exc)) from exc
        # Every open dashboard holds values from the old rows: have them start over.
        publish_resync()
        timing = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in stats.seconds.items())
        self.stdout.write(self.style.SUCCESS(
            f"weekly_income rebuilt through position {position}: {stats.approvals} approvals, {stats.buckets} rows ({timing})"
        ))
