"""Rebuild the weekly income projection from the whole event log, online: built beside the live rows, then swapped in."""
from django.core.management.base import BaseCommand, CommandError

from analytics import waiting
from analytics.projection import ProjectionFailed
from analytics.rebuild import DEFAULT_READERS, EventStoreBusy, RebuildRunning, RebuildStats, SwapBlocked, rebuild_weekly_income
from realtime.broadcast import publish_resync


class Command(BaseCommand):
    help = "Rebuild the weekly income projection from the whole event log while approvals go on, and swap it in."

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
        except (ProjectionFailed, EventStoreBusy, RebuildRunning, SwapBlocked) as exc:
            # The live rows were not touched: they stay until the log can be projected.
            raise CommandError(str(exc)) from exc
        # After commit. Every open dashboard holds values from the old rows: have them start over;
        # read-your-writes waiters learn that the projection moved.
        publish_resync()
        waiting.announce_position(position)
        timing = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in stats.seconds.items())
        self.stdout.write(self.style.SUCCESS(
            f"weekly_income rebuilt through position {position}: {stats.approvals} approvals read in bulk up to "
            f"position {stats.cut}, {stats.caught_up} events caught up after it, {stats.buckets} rows ({timing})"
        ))
