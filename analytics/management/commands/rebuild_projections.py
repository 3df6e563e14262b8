"""Rebuild projections from the whole event log, online: each built beside its live rows, then swapped in."""
from django.core.management.base import BaseCommand, CommandError

from analytics import registry, waiting
from analytics.projection import ProjectionFailed
from analytics.rebuild import DEFAULT_READERS, EventStoreBusy, RebuildRunning, SwapBlocked
from realtime.broadcast import publish_resync


class Command(BaseCommand):
    help = "Rebuild projections from the whole event log while approvals go on, and swap them in (the others stay live)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--projection", metavar="NAME", default=None,
            help="rebuild only this projection (default: every registered one, one after the other)",
        )
        parser.add_argument(
            "--readers", type=int, default=DEFAULT_READERS,
            help=f"database connections reading the log side by side (default {DEFAULT_READERS}: one more than this machine's cores, at most 4)",
        )

    def handle(self, *args, **options):
        if options["readers"] < 1:
            raise CommandError("--readers must be at least 1")
        try:
            chosen = registry.selected(options["projection"])
        except registry.UnknownProjection as exc:
            raise CommandError(str(exc)) from exc
        for projection in chosen:
            try:
                rebuilt = projection.rebuild(readers=options["readers"])
            except (ProjectionFailed, EventStoreBusy, RebuildRunning, SwapBlocked) as exc:
                # The live rows were not touched: they stay until the log can be projected.
                raise CommandError(f"{projection.name}: {exc}") from exc
            # After commit. Every open dashboard holds values from the old rows: have them start over;
            # read-your-writes waiters learn that the projection moved.
            publish_resync()
            waiting.announce_position(rebuilt.position)
            self.stdout.write(self.style.SUCCESS(f"{projection.name} rebuilt through position {rebuilt.position}: {rebuilt.summary}"))
