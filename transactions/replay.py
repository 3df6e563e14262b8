"""Rebuild (or check) the Transaction read model from the event log: every stream replayed, batch by batch.

The commands in transactions.services write each row next to the event they append; this module
derives the same row from the events alone, so a log restored from an export gets its transaction
list back and a damaged table can be repaired. What each event sets:

* TransactionSubmitted (version 1): id, amount, currency, occurred_at, reference, description from
  the data; status pending; created_at = the event's recorded_at; submitted_by = metadata actor ("" when
  the event names none: an unknown submitter, whom the four-eyes rule cannot compare with anyone).
* TransactionApprovalRecorded (on a pending transaction): status awaiting_second_approval,
  first_approved_by = metadata actor; decided_* stay empty (not a decision yet).
* TransactionApproved / TransactionRejected (on a pending or awaiting_second_approval transaction) and
  TransactionReversed (on an approved one): status; decided_at = recorded_at, decided_by = metadata
  actor, decision_reason = data reason. Events that repeat the money (approval, first approval,
  reversal) must repeat the submitted amount and currency.
* every event: version = its version, last_position = its position.

The four-eyes rules (own submission, a second approver) are the commands' to enforce; the log is
replayed as it is.

How it reads. A cut is taken first (core.eventstore.final_position: no append in flight below it),
then the log is read in position order through eventstore.read_all, `batch_size` events at a time,
never past a hole that is not final. Memory stays flat: a batch holds only its own streams; a
stream's earlier events (a decision whose submission is in an earlier batch) are read again from
the log by stream, never from the table being rebuilt. A stream's row is written once, in the batch
holding its last event at or below the cut, one transaction per batch.

Online. Commands may keep running. A command moves a row only forward (its version and
last_position grow, and it writes what its own event says), so the upsert here writes a row only
when the stored one is not ahead of the replayed one (`version <=` the replayed version, or
`last_position` at or below the cut) and differs from it: a row a command decided after the cut is
left as it is, and a row that already equals the log is not written at all (a second run writes
nothing). Rows with no event at or below the cut and a last_position at or below it are not in the
log: they are deleted (a row a command creates after the cut has a later last_position).

Refusal. An event that cannot be applied (an unknown type, a decision on a stream never submitted
or no longer pending, a version out of order, data missing or not money) stops the replay with
ReplayRefused naming its position; the batches before it are already written (each row as the log
says), nothing from its batch on.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, fields as dataclass_fields
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction

from core import eventstore
from core.models import StoredEvent
from core.money import MoneyError, normalize_currency, parse_amount
from transactions import events
from transactions.models import Transaction, TransactionStatus

BATCH = 5000
MAX_PROBLEMS = 1000  # --check keeps (and prints) at most this many differences; it counts them all


class ReplayRefused(RuntimeError):
    """An event the read model cannot take: its position and why."""

    def __init__(self, position: int, detail: str):
        self.position, self.detail = position, detail
        super().__init__(f"position {position}: {detail}")


class ReplayError(RuntimeError):
    """The replay cannot start or go on (no cut, not PostgreSQL); the message says what to do."""


@dataclass
class Row:
    """A read-model row as the log says it is; the fields are the table's columns, in its order."""

    id: uuid.UUID
    amount: Decimal
    currency: str
    occurred_at: datetime
    reference: str
    description: str
    status: str
    version: int
    created_at: datetime
    decided_at: datetime | None
    decided_by: str
    decision_reason: str
    last_position: int
    submitted_by: str
    first_approved_by: str


COLUMNS = tuple(f.name for f in dataclass_fields(Row))
_TYPES = ("uuid", "numeric", "text", "timestamptz", "text", "text", "text", "integer", "timestamptz", "timestamptz", "text",
          "text", "bigint", "text", "text")
ACTOR_MAX = 150  # the read model's column


@dataclass
class ReplayResult:
    cut: int = 0  # the log was replayed through this position
    events: int = 0
    transactions: int = 0  # streams whose final state was reached (written or compared)
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    problems: list[str] = field(default_factory=list)  # --check: the first MAX_PROBLEMS differences
    problem_count: int = 0

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)


# ---------------------------------------------------------------------------------------------
# Folding events into rows


def _text(event: eventstore.RecordedEvent, name: str) -> str:
    value = event.data.get(name)
    if not isinstance(value, str):
        raise ReplayRefused(event.position, f"{event.type} of stream {event.stream_id}: data.{name} missing or not text")
    return value


def _submitted(event: eventstore.RecordedEvent) -> Row:
    try:
        currency = normalize_currency(_text(event, "currency"))
        amount = parse_amount(_text(event, "amount"), currency)
        occurred_at = datetime.fromisoformat(_text(event, "occurred_at"))
    except (MoneyError, ValueError) as exc:
        raise ReplayRefused(event.position, f"{event.type} of stream {event.stream_id}: {exc}") from None
    if occurred_at.tzinfo is None:
        raise ReplayRefused(event.position, f"{event.type} of stream {event.stream_id}: occurred_at has no UTC offset")
    return Row(
        id=event.stream_id, amount=amount, currency=currency, occurred_at=occurred_at,
        reference=_text(event, "reference"), description=_text(event, "description"),
        status=TransactionStatus.PENDING.value, version=event.version, created_at=event.recorded_at,
        decided_at=None, decided_by="", decision_reason="", last_position=event.position,
        submitted_by=_actor(event), first_approved_by="",
    )


def _actor(event: eventstore.RecordedEvent) -> str:
    """The metadata actor, or "" when the event names none (an imported log may not)."""
    actor = event.metadata.get("actor") if isinstance(event.metadata, dict) else None
    return actor[:ACTOR_MAX] if isinstance(actor, str) else ""


_KINDS = (events.SUBMITTED, events.APPROVAL_RECORDED, events.APPROVED, events.REJECTED, events.REVERSED)
_UNDECIDED = (TransactionStatus.PENDING.value, TransactionStatus.AWAITING_SECOND_APPROVAL.value)
# The statuses each later event may follow, and the one it leaves.
_FOLLOWS = {
    events.APPROVAL_RECORDED: ((TransactionStatus.PENDING.value,), TransactionStatus.AWAITING_SECOND_APPROVAL.value),
    events.APPROVED: (_UNDECIDED, TransactionStatus.APPROVED.value),
    events.REJECTED: (_UNDECIDED, TransactionStatus.REJECTED.value),
    events.REVERSED: ((TransactionStatus.APPROVED.value,), TransactionStatus.REVERSED.value),
}
_REPEATS_MONEY = (events.APPROVAL_RECORDED, events.APPROVED, events.REVERSED)


def apply(row: Row | None, event: eventstore.RecordedEvent) -> Row:
    """The row after `event` (`row` is the stream's state before it, None if none); ReplayRefused if it cannot follow."""
    kind, stream = event.type, event.stream_id
    if kind not in _KINDS:
        raise ReplayRefused(event.position, f"event type {kind!r} (stream {stream}) has no rule for the transaction list")
    expected = 1 if row is None else row.version + 1
    if event.version != expected:
        raise ReplayRefused(event.position, f"{kind} of stream {stream} is version {event.version}, the stream is at "
                                            f"{expected - 1}: versions must follow each other")
    if kind == events.SUBMITTED:
        return _submitted(event)
    if row is None:
        raise ReplayRefused(event.position, f"{kind} of stream {stream}, which was never submitted")
    allowed, status = _FOLLOWS[kind]
    if row.status not in allowed:
        raise ReplayRefused(event.position, f"{kind} of stream {stream}, which is {'' if row.status in _UNDECIDED else 'already '}{row.status}")
    if kind in _REPEATS_MONEY:
        # The event repeats the money (the projector reads it); a different one would make the list lie.
        for name, have in (("amount", row.amount), ("currency", row.currency)):
            try:
                said = Decimal(_text(event, name)) if name == "amount" else _text(event, name)
            except ArithmeticError:
                said = event.data.get(name)
            if said != have:
                raise ReplayRefused(event.position, f"{kind} of stream {stream}: {name} {event.data.get(name)!r} differs "
                                                    f"from the submitted {have}")
    values = {name: getattr(row, name) for name in COLUMNS}
    values.update(status=status, version=event.version, last_position=event.position)
    if kind == events.APPROVAL_RECORDED:
        _text(event, "reason")  # required like a decision's, though the row does not show it
        values.update(first_approved_by=_actor(event))
    else:
        values.update(decided_at=event.recorded_at, decided_by=_actor(event), decision_reason=_text(event, "reason"))
    return Row(**values)


# ---------------------------------------------------------------------------------------------
# Reading the log


def _cut(*, attempts: int = 5) -> int:
    """A position at or below which no append is in flight (every hole there is final)."""
    try:
        return eventstore.settled_position(attempts=attempts)
    except eventstore.StillAppending as busy:
        raise ReplayError(f"{busy}; run it again") from None


def _batches(cut: int, batch_size: int) -> Iterator[tuple[int, list[eventstore.RecordedEvent]]]:
    """(position before the batch, its events) in position order up to `cut`, gap-safe (eventstore.read_all)."""
    after = 0
    while after < cut:
        batch = [event for event in eventstore.read_all(after=after, limit=batch_size) if event.position <= cut]
        if not batch:
            return  # nothing more at or below the cut (every hole below it is proved final)
        yield after, batch
        after = batch[-1].position


def _earlier_states(streams: list[uuid.UUID], before: int) -> dict[uuid.UUID, Row]:
    """The state of each stream after its events at or below `before` (re-read from the log, by stream)."""
    states: dict[uuid.UUID, Row] = {}
    earlier = StoredEvent.objects.filter(stream_id__in=streams, position__lte=before).order_by("stream_id", "version")
    for stored in earlier.iterator(chunk_size=2000):
        event = eventstore.RecordedEvent.from_row(stored)
        states[event.stream_id] = apply(states.get(event.stream_id), event)
    return states


def _last_versions(streams: list[uuid.UUID], cut: int) -> dict[uuid.UUID, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT stream_id, max(version) FROM core_event WHERE stream_id = ANY(%s::uuid[]) AND position <= %s GROUP BY 1",
            [streams, cut],
        )
        return dict(cursor.fetchall())


def _final_rows(after: int, batch: list[eventstore.RecordedEvent], cut: int) -> list[Row]:
    """The batch's events folded; the rows of the streams whose last event at or below `cut` is in it."""
    states: dict[uuid.UUID, Row] = {}
    started = {event.stream_id for event in batch if event.version == 1}
    continued = list({event.stream_id for event in batch} - started)
    if continued:
        states.update(_earlier_states(continued, after))
    for event in batch:
        states[event.stream_id] = apply(states.get(event.stream_id), event)
    last = _last_versions(list(states), cut)
    return [row for stream, row in states.items() if last.get(stream) == row.version]


# ---------------------------------------------------------------------------------------------
# Writing and comparing


def _quoted() -> tuple[str, list[str]]:
    quote = connection.ops.quote_name
    return quote(Transaction._meta.db_table), [quote(Transaction._meta.get_field(name).column) for name in COLUMNS]


def _columns(rows: list[Row]) -> list[list]:
    return [[getattr(row, name) for row in rows] for name in COLUMNS]


def _upsert(rows: list[Row], cut: int, result: ReplayResult) -> None:
    table, cols = _quoted()
    arrays = ", ".join(f"%s::{kind}[]" for kind in _TYPES)
    stored = ", ".join(f"t.{col}" for col in cols)
    replayed = ", ".join(f"EXCLUDED.{col}" for col in cols)
    sql = (
        f"INSERT INTO {table} AS t ({', '.join(cols)}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT ({cols[0]}) DO UPDATE SET {', '.join(f'{col} = EXCLUDED.{col}' for col in cols[1:])} "
        # Never back over a command's later write; never rewrite a row that already says the same.
        f"WHERE (t.{cols[COLUMNS.index('version')]} <= EXCLUDED.{cols[COLUMNS.index('version')]} "
        f"OR t.{cols[COLUMNS.index('last_position')]} <= %s) AND ({stored}) IS DISTINCT FROM ({replayed}) "
        "RETURNING (xmax = 0)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*_columns(rows), cut])
        written = [inserted for (inserted,) in cursor.fetchall()]
    result.inserted += sum(written)
    result.updated += len(written) - sum(written)


def _show(value) -> str:
    return "none" if value is None else repr(str(value)) if not isinstance(value, (int, Decimal)) else str(value)


def _compare(rows: list[Row], cut: int, result: ReplayResult) -> None:
    table, cols = _quoted()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE {cols[0]} = ANY(%s::uuid[])", [[row.id for row in rows]])
        stored = {values[0]: Row(*values) for values in cursor.fetchall()}
    for row in rows:
        have = stored.get(row.id)
        if have is None:
            result.problem(f"transaction {row.id}: missing; the log has it {row.status} at version {row.version}")
            continue
        if have.version > row.version and have.last_position > cut:
            continue  # decided by a command after the cut: newer than this replay
        for name in COLUMNS[1:]:
            if getattr(have, name) != getattr(row, name):
                result.problem(f"transaction {row.id}: {name}: stored {_show(getattr(have, name))}, "
                               f"log says {_show(getattr(row, name))}")


def _not_in_log_sql(cut: int, verb: str) -> tuple[str, list]:
    table, cols = _quoted()
    pk, last_position = cols[0], cols[COLUMNS.index("last_position")]
    where = (f"t.{last_position} <= %s AND NOT EXISTS (SELECT 1 FROM core_event e WHERE e.stream_id = t.{pk} "
             "AND e.position <= %s)")
    return f"{verb} {table} AS t WHERE {where}", [cut, cut]


def replay(*, check: bool = False, batch_size: int = BATCH, result: ReplayResult | None = None) -> ReplayResult:
    """Rebuild the transaction list from the log (or, with `check`, only compare and list the differences)."""
    if connection.vendor != "postgresql":
        raise ReplayError("rebuild_transactions needs PostgreSQL")
    if batch_size < 1:
        raise ReplayError("the batch size must be at least 1")
    result = result if result is not None else ReplayResult()
    result.cut = _cut()
    for after, batch in _batches(result.cut, batch_size):
        result.events += len(batch)
        rows = _final_rows(after, batch, result.cut)
        result.transactions += len(rows)
        if not rows:
            continue
        if check:
            _compare(rows, result.cut, result)
        else:
            with transaction.atomic():
                _upsert(rows, result.cut, result)
    _, cols = _quoted()
    if check:
        sql, params = _not_in_log_sql(result.cut, f"SELECT t.{cols[0]} FROM")
        with connection.cursor() as cursor:
            cursor.execute(sql + f" ORDER BY t.{cols[0]}", params)
            for (stream,) in cursor:
                result.problem(f"transaction {stream}: stored, but the log has no event of it")
    else:
        sql, params = _not_in_log_sql(result.cut, "DELETE FROM")
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
            result.deleted = cursor.rowcount
    return result
