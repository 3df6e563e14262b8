"""The event log as JSON lines: exported up to a gap-free cut, imported strictly, both streamed and resumable.

One event per line, keys in this order:
`{"position": 7, "stream_id": "…", "version": 1, "type": "…", "data": {…}, "metadata": {…}, "recorded_at": "…"}`.
`data` and `metadata` are PostgreSQL's own jsonb text, embedded as is, and an import hands
each line to PostgreSQL to take them apart again: numbers keep every digit both ways.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, connection, transaction

from core import event_payloads, eventstore
from core.instants import parse_instant

FIELDS = ("position", "stream_id", "version", "type", "data", "metadata", "recorded_at")
EXPORT_BATCH = 5000
IMPORT_BATCH = 5000
_INT64_MAX = 2**63 - 1
_INT32_MAX = 2**31 - 1
_TYPE_MAX_LENGTH = 100


class ExchangeError(RuntimeError):
    """An export or import that cannot go on; the message says what to do."""


class ImportLineError(ExchangeError):
    """A line of an import refused: its number and the field at fault."""

    def __init__(self, line: int, field: str, detail: str):
        self.line, self.field, self.detail = line, field, detail
        super().__init__(f"line {line}: {field}: {detail}")


@dataclass
class ExportResult:
    events: int = 0
    first: int | None = None
    last: int | None = None
    through: int = 0  # the gap-free cut the export stopped at


@dataclass
class ImportResult:
    lines: int = 0
    imported: int = 0
    skipped: int = 0  # already stored, identical
    last: int | None = None


# ---------------------------------------------------------------------------------------------
# Export


def _final_cut(*, attempts: int = 5) -> int:
    """A position below which every event is final (committed or never going to be): core.eventstore's own rule."""
    try:
        return eventstore.settled_position(attempts=attempts)
    except eventstore.StillAppending as busy:
        raise ExchangeError(f"{busy}; run the export again") from None


def export_lines(*, after: int = 0, batch_size: int = EXPORT_BATCH, result: ExportResult | None = None) -> Iterator[str]:
    """Lines (each ending in a newline) of the events after `after`, up to a gap-free cut taken when the export begins.

    A server-side cursor hands them over `batch_size` at a time: memory stays flat whatever the log's size.
    """
    result = result if result is not None else ExportResult()
    through = result.through = _final_cut()
    with transaction.atomic():
        connection.ensure_connection()
        with connection.connection.cursor(name="export_events") as cursor:
            cursor.itersize = batch_size
            cursor.execute(
                "SELECT position, stream_id, version, type, data::text, metadata::text, recorded_at "
                "FROM core_event WHERE position > %s AND position <= %s ORDER BY position",
                [after, through],
            )
            for position, stream_id, version, kind, data, metadata, recorded_at in cursor:
                if result.first is None:
                    result.first = position
                result.last, result.events = position, result.events + 1
                yield (
                    f'{{"position":{position},"stream_id":"{stream_id}","version":{version},"type":{json.dumps(kind)},'
                    f'"data":{data},"metadata":{metadata},"recorded_at":"{recorded_at.isoformat()}"}}\n'
                )


def _after_last_newline(file, end: int) -> int:
    """The offset just past the last newline before `end` (0 if none), read backwards a block at a time."""
    while end > 0:
        start = max(0, end - 65536)
        file.seek(start)
        cut = file.read(end - start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


def last_exported_position(path: str) -> int:
    """For `--resume`: drop a partly written last line from an export file; the position of its last whole line (0 if none)."""
    with open(path, "r+b") as file:
        size = file.seek(0, 2)
        end = _after_last_newline(file, size)
        if end < size:
            file.truncate(end)  # the line an interrupted export did not finish
        if end == 0:
            return 0
        start = _after_last_newline(file, end - 1)
        file.seek(start)
        last = file.read(end - start)
    try:
        return int(json.loads(last)["position"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ExchangeError(f"the last line of {path} is not an exported event ({exc}); cannot resume from it") from exc


# ---------------------------------------------------------------------------------------------
# Import


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def check_line(text: str, number: int, previous: int) -> int:
    """Validate one line strictly; its position. Raises ImportLineError naming the line and the field."""
    if "\\u0000" in text:
        raise ImportLineError(number, "line", "contains \\u0000, which the event store cannot hold")
    try:
        event = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ImportLineError(number, "line", f"not valid JSON ({exc})") from exc
    if not isinstance(event, dict):
        raise ImportLineError(number, "line", "must be a JSON object with the keys " + ", ".join(FIELDS))
    for name in FIELDS:
        if name not in event:
            raise ImportLineError(number, name, "missing")
    for name in event:
        if name not in FIELDS:
            raise ImportLineError(number, name, "unknown field")
    position, version = event["position"], event["version"]
    if type(position) is not int or not 1 <= position <= _INT64_MAX:
        raise ImportLineError(number, "position", f"must be an integer from 1 to {_INT64_MAX}, not {position!r}")
    if position <= previous:
        raise ImportLineError(number, "position", f"{position} does not follow {previous}: lines must be in increasing position order")
    try:
        if not isinstance(event["stream_id"], str):
            raise ValueError
        uuid.UUID(event["stream_id"])
    except ValueError:
        raise ImportLineError(number, "stream_id", f"must be a UUID, not {event['stream_id']!r}") from None
    if type(version) is not int or not 1 <= version <= _INT32_MAX:
        raise ImportLineError(number, "version", f"must be an integer from 1 to {_INT32_MAX}, not {version!r}")
    if not isinstance(event["type"], str) or not 1 <= len(event["type"]) <= _TYPE_MAX_LENGTH:
        raise ImportLineError(number, "type", f"must be a text of 1 to {_TYPE_MAX_LENGTH} characters")
    for name in ("data", "metadata"):
        if not isinstance(event[name], dict):
            raise ImportLineError(number, name, "must be a JSON object")
    try:
        if not isinstance(event["recorded_at"], str):
            raise ValueError(f"must be an ISO 8601 date and time, not {event['recorded_at']!r}")
        parse_instant(event["recorded_at"])
    except ValueError as exc:
        raise ImportLineError(number, "recorded_at", str(exc)) from None
    try:
        event_payloads.check(event["type"], event["stream_id"], event["data"])
    except event_payloads.PayloadError as exc:
        raise ImportLineError(number, exc.field if exc.field == "type" else f"data.{exc.field}", exc.detail) from None
    return position


def _numbered(lines: Iterable[str]) -> Iterator[tuple[int, str, int]]:
    """(line number, text, position) for every non-blank line, each checked, positions increasing."""
    previous = 0
    for number, text in enumerate(lines, start=1):
        text = text.rstrip("\r\n")
        if not text.strip():
            continue
        previous = check_line(text, number, previous)
        yield number, text, previous


def check_lines(lines: Iterable[str]) -> int:
    """A validation pass over a whole file before anything is written; the number of events in it."""
    return sum(1 for _ in _numbered(lines))


# Which field of an already stored event differs from the line's (all true: identical, skipped).
_COMPARE = """
WITH incoming AS (SELECT n, t::jsonb AS j FROM unnest(%s::int[], %s::text[]) AS u(n, t))
SELECT i.n, e.position,
       e.stream_id = (i.j->>'stream_id')::uuid, e.version = (i.j->>'version')::int, e.type = i.j->>'type',
       e.data = i.j->'data', e.metadata = i.j->'metadata', e.recorded_at = (i.j->>'recorded_at')::timestamptz
FROM incoming i JOIN core_event e ON e.position = (i.j->>'position')::bigint
ORDER BY i.n
"""
_CLASHES = """
WITH incoming AS (SELECT n, t::jsonb AS j FROM unnest(%s::int[], %s::text[]) AS u(n, t))
SELECT i.n, e.position FROM incoming i
JOIN core_event e ON e.stream_id = (i.j->>'stream_id')::uuid AND e.version = (i.j->>'version')::int
ORDER BY i.n LIMIT 1
"""
_INSERT = """
INSERT INTO core_event (position, stream_id, version, type, data, metadata, recorded_at)
SELECT (j->>'position')::bigint, (j->>'stream_id')::uuid, (j->>'version')::int, j->>'type', j->'data', j->'metadata',
       (j->>'recorded_at')::timestamptz
FROM (SELECT t::jsonb AS j FROM unnest(%s::text[]) AS u(t)) AS incoming
ORDER BY 1
"""


def _import_batch(batch: list[tuple[int, str, int]], result: ImportResult) -> None:
    """One transaction: skip what is stored identically, refuse what differs, append the rest past the log's end."""
    with transaction.atomic(), connection.cursor() as cursor:
        # Appends wait while this batch goes in (their INSERTs conflict with this mode), and the
        # ones in flight finish first: nobody draws a position between the check and the insert.
        cursor.execute("LOCK TABLE core_event IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute("SELECT coalesce(max(position), 0) FROM core_event")
        (head,) = cursor.fetchone()
        # Only lines at or below the log's end can be stored already (the usual restore: none are).
        maybe_stored = [(n, t) for n, t, p in batch if p <= head]
        stored = set()
        if maybe_stored:
            cursor.execute(_COMPARE, [[n for n, _ in maybe_stored], [t for _, t in maybe_stored]])
            for number, position, *same in cursor.fetchall():
                for name, equal in zip(FIELDS[1:], same):
                    if not equal:
                        raise ImportLineError(number, name, f"position {position} is already stored with a different {name}; "
                                                            "an event log is never rewritten")
                stored.add(number)
        result.skipped += len(stored)
        for number, _ in maybe_stored:
            if number not in stored:
                position = next(p for n, _, p in batch if n == number)
                # Readers have gone past that hole for good: an event appearing there would never be projected.
                raise ImportLineError(number, "position", f"{position} is not stored and lies below the log's last position {head}: "
                                                          "an import appends after the end of the log, it cannot fill a hole")
        fresh = [(n, t, p) for n, t, p in batch if p > head]
        if not fresh:
            return
        try:
            with transaction.atomic():
                cursor.execute(_INSERT, [[t for _, t, _ in fresh]])
        except IntegrityError:
            # The (stream_id, version) index refused a line: name it.
            cursor.execute(_CLASHES, [[n for n, _, _ in fresh], [t for _, t, _ in fresh]])
            clash = cursor.fetchone()
            if clash:
                raise ImportLineError(clash[0], "version", f"this stream already has that version, at position {clash[1]}") from None
            _raise_duplicate_within(fresh)
            raise
        # Appends after this one draw positions past the imported ones.
        _advance_sequence(cursor, fresh[-1][2])
        result.imported += len(fresh)


def _raise_duplicate_within(lines: list[tuple[int, str, int]]) -> None:
    """Two lines of one batch with the same stream and version: the second one is named."""
    seen: dict[tuple, int] = {}
    for number, text, _ in lines:
        event = json.loads(text)
        key = (str(uuid.UUID(event["stream_id"])), event["version"])
        if key in seen:
            raise ImportLineError(number, "version", f"line {seen[key]} has the same stream_id and version")
        seen[key] = number


def _advance_sequence(cursor, position: int) -> None:
    """The position sequence past `position`, never backwards (rolled-back appends may have drawn beyond it)."""
    cursor.execute("SELECT pg_get_serial_sequence('core_event', 'position')")
    (sequence,) = cursor.fetchone()
    cursor.execute(f"SELECT last_value, is_called FROM {sequence}")
    last_value, is_called = cursor.fetchone()
    if position > last_value or (position == last_value and not is_called):
        cursor.execute("SELECT setval(%s, %s)", [sequence, position])


def import_lines(lines: Iterable[str], *, batch_size: int = IMPORT_BATCH, result: ImportResult | None = None) -> ImportResult:
    """Import exported lines in batches of `batch_size`, each in its own transaction: an interrupted import keeps
    the batches it committed, and running it again over the same lines skips them (identical) and goes on."""
    if connection.vendor != "postgresql":
        raise ExchangeError("import_events needs PostgreSQL")
    result = result if result is not None else ImportResult()
    batch: list[tuple[int, str, int]] = []
    for number, text, position in _numbered(lines):
        batch.append((number, text, position))
        result.lines = number
        if len(batch) >= batch_size:
            _import_batch(batch, result)
            result.last, batch = batch[-1][2], []
    if batch:
        _import_batch(batch, result)
        result.last = batch[-1][2]
    return result
