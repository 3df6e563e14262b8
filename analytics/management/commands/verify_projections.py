"""Recompute projections from the log and compare; exit 1 with a diff on any mismatch."""
from django.core.management.base import BaseCommand, CommandError

from analytics import registry


class Command(BaseCommand):
    help = "Recompute projections from the event log and compare them with the stored rows."

    def add_arguments(self, parser):
        parser.add_argument("--projection", metavar="NAME", default=None, help="verify only this projection (default: every registered one)")

    def handle(self, *args, **options):
        try:
            chosen = registry.selected(options["projection"])
        except registry.UnknownProjection as exc:
            raise CommandError(str(exc)) from exc
        failed = []
        for projection in chosen:
            problems = projection.verify()
            if problems:
                for line in problems:
                    self.stderr.write(f"{projection.name}: {line}")
                failed.append(f"{projection.name}: {len(problems)} mismatch(es)")
            else:
                self.stdout.write(self.style.SUCCESS(f"{projection.name} matches the event log"))
        if failed:
            raise CommandError("; ".join(failed))
