"""Read an export_events file into the event log: each line checked strictly, stored events skipped, resumable."""
import sys

from django.core.management.base import BaseCommand, CommandError

from core.exchange import ExchangeError, ImportResult, check_lines, import_lines


class Command(BaseCommand):
    help = "Import JSON lines written by export_events (positions kept); run rebuild_projections and rebuild_transactions afterwards."

    def add_arguments(self, parser):
        parser.add_argument("input", help="the export file, or - for standard input")

    def handle(self, *args, **options):
        path = options["input"]
        result = ImportResult()
        try:
            if path == "-":
                # Read once: a bad line stops the import there, the batches before it stay imported.
                import_lines(sys.stdin, result=result)
            else:
                with open(path, encoding="utf-8") as file:
                    check_lines(file)  # a whole pass first: a bad file changes nothing
                    file.seek(0)
                    import_lines(file, result=result)
        except FileNotFoundError as exc:
            raise CommandError(f"{path}: no such file") from exc
        except UnicodeDecodeError as exc:
            raise CommandError(f"{path}: not UTF-8 text ({exc})") from exc
        except ExchangeError as exc:
            raise CommandError(
                f"{exc}. Imported before it: {result.imported} events ({result.skipped} already there); "
                "fix the line and run the same command again: what is already imported is skipped."
            ) from exc
        self.stdout.write(self.style.SUCCESS(
            f"imported {result.imported} events, skipped {result.skipped} already stored"
            + (f", through position {result.last}" if result.last else "")
            + ". Now run `manage.py rebuild_projections` and `manage.py rebuild_transactions` so the projections and the transaction list match the log."
        ))
