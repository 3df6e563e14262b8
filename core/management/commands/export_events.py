"""Write the event log as JSON lines (one event per line), streamed, up to a gap-free cut; resumable."""
from django.core.management.base import BaseCommand, CommandError

from core.exchange import ExchangeError, ExportResult, export_lines, last_exported_position


class Command(BaseCommand):
    help = "Export the event log as JSON lines: position, stream_id, version, type, data, metadata, recorded_at."

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", help="file to write (default: standard output)")
        parser.add_argument("--after", type=int, default=0, help="export only events after this position (to resume or to add to an archive)")
        parser.add_argument(
            "--resume", action="store_true",
            help="append to --output after its last whole line (an unfinished last line is dropped first)",
        )

    def handle(self, *args, **options):
        after, output = options["after"], options["output"]
        if after < 0:
            raise CommandError("--after must be 0 or more")
        if options["resume"]:
            if not output:
                raise CommandError("--resume needs --output: the file to continue")
            if after:
                raise CommandError("--resume reads the position to continue from in the file; leave out --after")
            try:
                after = last_exported_position(output)
            except FileNotFoundError:
                after = 0
            except ExchangeError as exc:
                raise CommandError(str(exc)) from exc
        result = ExportResult()
        try:
            if output:
                with open(output, "a" if options["resume"] else "w", encoding="utf-8") as file:
                    file.writelines(export_lines(after=after, result=result))
            else:
                for line in export_lines(after=after, result=result):
                    self.stdout.write(line, ending="")
                self.stdout.flush()
        except ExchangeError as exc:
            raise CommandError(str(exc)) from exc
        span = f"positions {result.first}..{result.last}" if result.events else "nothing new"
        # On stderr: stdout may be the export itself.
        self.stderr.write(
            f"exported {result.events} events after position {after} ({span}); every event up to {result.through} "
            f"was final when the export began. Continue later with --after {result.last or after} (or --resume)."
        )
