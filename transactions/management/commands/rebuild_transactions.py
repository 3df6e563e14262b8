"""Rebuild the transaction list (the read model) from the event log, online; --check compares without writing."""
from django.core.management.base import BaseCommand, CommandError

from transactions.replay import BATCH, ReplayError, ReplayRefused, ReplayResult, replay


class Command(BaseCommand):
    help = ("Replay every transaction's events into the transaction list (after import_events, or to repair it); "
            "--check only compares and exits 1 with the differences.")

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="compare the stored rows with the log; write nothing")
        parser.add_argument("--batch-size", type=int, default=BATCH, help=f"events read per batch (default {BATCH})")

    def handle(self, *args, **options):
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        result = ReplayResult()
        try:
            replay(check=options["check"], batch_size=options["batch_size"], result=result)
        except ReplayRefused as exc:
            raise CommandError(
                f"{exc}. Rows from earlier events are rebuilt; nothing from this event on was written."
            ) from exc
        except ReplayError as exc:
            raise CommandError(str(exc)) from exc
        summary = f"{result.events} events through position {result.cut}, {result.transactions} transactions"
        if options["check"]:
            if result.problem_count:
                for line in result.problems:
                    self.stderr.write(line)
                more = result.problem_count - len(result.problems)
                if more:
                    self.stderr.write(f"... and {more} more")
                raise CommandError(f"transactions: {result.problem_count} difference(s) from the event log ({summary})")
            self.stdout.write(self.style.SUCCESS(f"transactions match the event log ({summary})"))
            return
        self.stdout.write(self.style.SUCCESS(
            f"transactions rebuilt from {summary}: {result.inserted} inserted, {result.updated} updated, "
            f"{result.deleted} deleted (not in the log)"
        ))
