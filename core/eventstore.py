"""Append-only event store: optimistic concurrency per stream, gap-safe reads by global position.

Why reads need care. Positions come from a sequence when the INSERT runs, but
transactions commit in any order: while position 10 is still in flight, 11 can
commit, and a reader that took 11 and resumed `after=11` would skip 10 forever.
Until issue 10 every append took `LOCK TABLE core_event IN EXCLUSIVE MODE` until
COMMIT, so positions became visible in order; it also admitted one committing
appender at a time (approvals topped out near one per lock hold). Appenders no
longer serialize; readers make sure instead that they never step over a
position that may still commit.

The rule (read_all). A reader reads positions in order and returns only the run
that has no *hole*: a position missing below a visible one. A hole is either in
flight (its transaction has not ended: the common case under concurrency, gone
in milliseconds) or final (its transaction rolled back, lost a version race, or
the sequence skipped values after a crash: rare, and permanent). The reader
never passes a hole until it has proved it final:

1. Every append holds the append lock (an advisory lock keyed by core_event's
   oid) in SHARED mode from before it draws a position until its transaction
   ends: append() takes it in the same round trip, before its INSERT. Shared
   holders never wait for each other. Positions come only from append() at run
   time (seeding scripts that insert directly run before any reader), and the
   sequence (CACHE 1, no CYCLE) never hands out a value twice or out of order.
2. So once a reader holds the append lock EXCLUSIVELY, every append that drew a
   position before that moment has ended, and every position at or below the
   highest one now visible is final: committed (and visible to any later
   statement) or never going to exist. The reader takes the lock inside a
   savepoint and rolls the savepoint back in the same round trip, which releases
   it: it is held for one statement, never for the rest of the reader's
   transaction. A hole below the highest position seen under the lock is final;
   the reader reads the rest again (a new statement, a new snapshot) and passes
   it. The proven position is remembered per process (positions at or below it
   are final forever), so old holes cost nothing the next time; a reader only
   trusts a value it read *before* its query took its snapshot. Why not a table
   lock (SHARE waits for every INSERT's ROW EXCLUSIVE just as well): every mode
   that conflicts with ROW EXCLUSIVE also conflicts with the SHARE UPDATE
   EXCLUSIVE that VACUUM and ANALYZE hold, so autovacuum on core_event would
   keep readers from passing a final hole for as long as it runs.
3. Cost control. The lock is first only tried (pg_try_advisory_xact_lock): when
   no other append is in flight (idle, or a rolled-back append and nothing else)
   the proof is immediate and blocks nobody. Under load some append is always in
   flight and the try fails; then a young hole (the event just above it was
   recorded less than EVENT_STORE_HOLE_GRACE_MS ago) is almost surely in
   flight, so the reader
   simply stops before it: that transaction's commit wakes the projector again,
   and a feed client pages again. Only a hole older than the grace is proved by
   waiting, at most EVENT_STORE_HOLE_WAIT_MS. While it waits, new appends queue
   behind it (PostgreSQL grants locks in order), so the wait is short and, after
   a failed wait, not tried again in this process within the grace. A wait that
   runs out only means "not proved yet": the reader returns what is proved.
   Safety never depends on a clock; the clock only decides when to spend a wait.

This is the gap-detection family (Axon's GapAwareTrackingToken ages a gap by
the timestamp of the event after it; Marten's high-water agent, Eventuous and
protean stop at the first gap), with the wall-clock "skip a stale gap" step
replaced by a proof. We did not order readers by (xid, position) with
pg_snapshot_xmin: that needs a two-part cursor, and every caller here (the
projector's checkpoint, the REST feed's `after`, read-your-writes'
`min_position`, the snapshot's `pending.as_of`) resumes from one integer. And
filtering `xid < pg_snapshot_xmin(...)` while resuming by position is not safe:
a transaction can hold an older xid and a newer position than one still in
flight.

What else each reader gets:
* read_all(after=P): gap-safe as above; the projector and GET /api/events/.
* last_position(): the highest *committed* position. "Does the log reach P?"
  (`min_position` validation, lag). Not a resume point: a lower position may
  still commit.
* contiguous_through(floor): for a REPEATABLE READ snapshot (the dashboard
  snapshot's `pending.as_of`): the end of the unbroken run above `floor`, where
  `floor` is a position known gap-safe before the snapshot began (the projection
  checkpoint read in it). A frozen snapshot cannot see a late commit, so it
  passes no hole; read_all in such a transaction likewise stops at any hole.

Writers. append() takes ROW EXCLUSIVE on core_event explicitly (what its INSERT
takes anyway) and the append lock shared, with lock_timeout
EVENT_STORE_LOCK_TIMEOUT_MS, so a session holding a conflicting lock (an
operator's LOCK TABLE, a TRUNCATE) still turns into a retryable 503
`event_store_busy`; appenders never wait for each other there. Because every
append holds ROW EXCLUSIVE until it ends, a SHARE table lock is also a valid
(if vacuum-sensitive) way to wait for all appends in flight (analytics.rebuild
does, once per rebuild); final_position() is the vacuum-proof one. Inserting into core_event at run time other than
through append() would break point 1 above. Optimistic concurrency: the INSERT
inserts only if the stream is at the expected version
(lock, check and insert are one round trip: the ORM's version query and
bulk_create cost 1.3 ms of CPU per append, this 0.8); two appenders that both
pass the check insert the same (stream_id, version), the unique index makes the
second wait for the first and fail, and that is a ConcurrencyConflict. Inside a
transaction, commands also lock their read-model row first, so decisions on one
transaction queue up and the loser sees the new version (409), never the index.

One round trip per command (append_alone). A command with no transaction around
it (the usual request) reads its row without a lock and then sends the append
and its own read-model write (an Along: a data-modifying CTE next to the INSERT)
as one simple query, which PostgreSQL runs as one implicit transaction: the SET
LOCAL, the locks above, the version check, the INSERT and the caller's UPDATE
commit together when the query ends, or roll back together. No BEGIN or COMMIT
round trip; the append lock is still taken before the position is drawn and held
until that commit. The version check (and, for a racer in flight, the unique
index) is what makes a concurrent decision lose; the loser reads its row again
to say why (409).

SQLite admits one writer at a time, from BEGIN IMMEDIATE to COMMIT, and numbers
rows inside that lock: positions become visible in order and any visible hole
is final, so none of the above is needed there.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from django.conf import settings
from django.db import DatabaseError, IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from core.db import execute_prepared
from core.errors import Conflict, DomainError
from core.models import StoredEvent
from core.signals import committed_announcement

_LOCK_NOT_AVAILABLE = "55P03"
_DEADLOCK_DETECTED = "40P01"
_READ_ONLY_TRANSACTION = "25006"


class ConcurrencyConflict(Conflict):
    """The stream moved on since the caller read it; nothing was written."""

    def __init__(self, stream_id, expected_version: int, actual_version: int | None):
        self.stream_id = stream_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(f"stream {stream_id} is at version {actual_version}, not the expected {expected_version}")


class EventStoreBusy(DomainError):
    """The event table stayed locked (by an operator, a TRUNCATE) past EVENT_STORE_LOCK_TIMEOUT_MS; nothing was written."""

    status_code = 503
    code = "event_store_busy"
    title = "Event store busy"
    retry_after = 1


@dataclass(frozen=True)
class NewEvent:
    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class RecordedEvent:
    position: int
    stream_id: uuid.UUID
    version: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime

    @classmethod
    def from_row(cls, row: StoredEvent) -> "RecordedEvent":
        return cls(row.position, row.stream_id, row.version, row.type, row.data, row.metadata, row.recorded_at)


# The "appending" lock: every append holds it shared (appenders never wait for each other)
# from before it draws a position until its transaction ends; a reader proving a hole final
# takes it exclusively for an instant. An advisory lock rather than a table lock because
# VACUUM and ANALYZE (autovacuum) hold SHARE UPDATE EXCLUSIVE on core_event, which every
# table lock mode that conflicts with an INSERT's ROW EXCLUSIVE also conflicts with.
_APPEND_LOCK_KEY = "'core_event'::regclass::oid::bigint"


def _move_to_result(cursor, index: int) -> None:
    """Make the `index`-th statement's result (0-based) of a multi-statement execute the current one."""
    for _ in range(index):
        cursor.nextset()


def _is_lock_timeout(exc: OperationalError) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) == _LOCK_NOT_AVAILABLE


@dataclass(frozen=True)
class Along:
    """A caller's statement that commits or rolls back with an append, sent in the same round trip.

    An INSERT, UPDATE or DELETE (no RETURNING needed); it runs as a data-modifying CTE next to the
    append's INSERT and may read `appended`: the rows just inserted, none when the
    stream was not at the expected version (so it should do nothing then: `WHERE EXISTS (SELECT 1
    FROM appended)`). A command updates its read model this way, in the append's round trip.
    `appended` has the columns position, version and recorded_at.
    """

    sql: str
    params: tuple | list = ()


def _insert_checked(rows: list[StoredEvent], stream_id, expected_version: int, along: Along | None = None) -> bool:
    """On PostgreSQL: join the appenders, check the version, insert (and run `along`), in one round trip.

    False (nothing inserted) when the stream is not at `expected_version`. Fills in each
    row's position.
    """
    # ROW EXCLUSIVE does not conflict with itself: appenders never wait for each other
    # here. It waits only for a session holding SHARE or stronger (an operator's LOCK
    # TABLE, a TRUNCATE, a reader proving a hole final for a few ms); that wait is bounded
    # and becomes a retryable 503. The timeout covers only the LOCK statement.
    timeout_ms = int(settings.EVENT_STORE_LOCK_TIMEOUT_MS)
    fields = [StoredEvent._meta.get_field(name) for name in ("data", "metadata")]
    values, params = [], []
    for row in rows:
        values.append("(%s::uuid, %s::integer, %s, %s::jsonb, %s::jsonb, %s::timestamptz)")
        params += [row.stream_id, row.version, row.type, *(f.get_db_prep_save(getattr(row, f.name), connection) for f in fields), row.recorded_at]
    params += [stream_id, expected_version]
    insert = (
        "INSERT INTO core_event (stream_id, version, type, data, metadata, recorded_at) "
        "SELECT * FROM (VALUES " + ", ".join(values) + ") AS new (stream_id, version, type, data, metadata, recorded_at) "
        "WHERE (SELECT coalesce(max(version), 0) FROM core_event WHERE stream_id = %s) = %s "
        "ORDER BY version RETURNING position, version, recorded_at"
    )
    if along is not None:
        insert = f"WITH appended AS ({insert}), along AS ({along.sql}) SELECT position, version FROM appended"
        params += list(along.params)
    prelude = (
        f"SET LOCAL lock_timeout = '{timeout_ms}ms'; "
        "LOCK TABLE core_event IN ROW EXCLUSIVE MODE; "
        f"SELECT pg_advisory_xact_lock_shared({_APPEND_LOCK_KEY}); "
        "SET LOCAL lock_timeout TO DEFAULT; "
    )
    try:
        inserted = _run_insert(prelude, insert, params, len(rows))
    except OperationalError as exc:
        if _is_lock_timeout(exc):
            raise EventStoreBusy(f"The event store stayed locked for {timeout_ms} ms; nothing was written, retry.") from exc
        if getattr(exc.__cause__, "sqlstate", None) == _DEADLOCK_DETECTED:
            # Two appends to this stream at the same version (with their read-model updates) each
            # waited for the other; PostgreSQL rolled this one back whole, and the other goes on to
            # commit. That is a lost race on the version, as when the check above sees the other's
            # commit: a conflict (409 for a command), never a 500.
            raise ConcurrencyConflict(stream_id, expected_version, None) from exc
        raise
    for row in rows:
        row.position = inserted.get(row.version)
    return bool(inserted)


# The INSERT (with its `along`) is a prepared statement (core.db.execute_prepared), EXECUTEd in
# the same simple query as the locks: PostgreSQL planned it on every append (about 0.3 ms of an
# approval's 2 ms of backend CPU). The statements, their order and the one implicit transaction are
# as before, so the append rules above hold: a connection's first append of a shape sends the
# PREPARE after the locks, with lock_timeout back at its default, so it draws no position and waits
# for the tables exactly as the INSERT did.
_MAX_PREPARED_EVENTS = 8  # larger appends (bulk seeding) are planned each time: few, and each shape new


def _run_insert(prelude: str, insert: str, params: list, count: int) -> dict[int, int]:
    """The prelude (4 statements: locks) and the INSERT in one simple query; {version: position} of the rows inserted."""
    with connection.cursor() as cursor:
        if count > _MAX_PREPARED_EVENTS:
            cursor.execute(prelude + insert, params)
            _move_to_result(cursor, 4)  # the INSERT's
        else:
            execute_prepared(cursor, insert, params, before=prelude, before_count=4)
        return {version: position for position, version, *_ in cursor.fetchall()}


def stream_version(stream_id) -> int:
    row = StoredEvent.objects.filter(stream_id=stream_id).order_by("-version").values_list("version", flat=True).first()
    return row or 0


def append(
    *, stream_id, expected_version: int, events: Iterable[NewEvent], metadata: dict[str, Any], along: Along | None = None
) -> list[RecordedEvent]:
    """Append events to a stream at `expected_version`, inside the caller's transaction.

    Raises ConcurrencyConflict (and the caller's transaction rolls back) when the
    stream is not at `expected_version`. Subscribers hear of the events only
    after the surrounding transaction commits. `along` (PostgreSQL only) runs in the
    same round trip as the INSERT.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("append() must run inside transaction.atomic()")
    return _append(stream_id, expected_version, events, metadata, along)


def can_append_alone() -> bool:
    """True when append_alone() may run here: PostgreSQL, autocommit, no transaction open."""
    return connection.vendor == "postgresql" and not connection.in_atomic_block and connection.get_autocommit()


def append_alone(
    *, stream_id, expected_version: int, events: Iterable[NewEvent], metadata: dict[str, Any], along: Along | None = None
) -> list[RecordedEvent]:
    """Append (and run `along`) as a transaction of its own, committed when this returns: one round trip.

    PostgreSQL runs the statements of one simple query as one implicit transaction, so the
    append's locks, version check and INSERT, and the caller's `along`, commit together or not
    at all, with no BEGIN or COMMIT round trip. The append rules (module docstring) hold as in
    append(): the append lock is held from before the position is drawn until that commit.
    Subscribers hear of the events before this returns. Only where can_append_alone().
    """
    if not can_append_alone():
        raise RuntimeError("append_alone() needs PostgreSQL in autocommit, outside any transaction")
    return _append(stream_id, expected_version, events, metadata, along)


def _append(stream_id, expected_version: int, events: Iterable[NewEvent], metadata: dict[str, Any], along: Along | None):
    events = list(events)
    if not events:
        return []
    now = timezone.now()
    rows = [
        StoredEvent(
            stream_id=stream_id,
            version=expected_version + offset,
            type=event.type,
            data=event.data,
            metadata=metadata,
            recorded_at=now,
        )
        for offset, event in enumerate(events, start=1)
    ]
    try:
        if connection.vendor == "postgresql":
            if not _insert_checked(rows, stream_id, expected_version, along):
                raise ConcurrencyConflict(stream_id, expected_version, stream_version(stream_id))
        elif along is not None:
            raise NotImplementedError("append(along=...) is for PostgreSQL; on SQLite write in the same transaction")
        else:
            actual = stream_version(stream_id)
            if actual != expected_version:
                raise ConcurrencyConflict(stream_id, expected_version, actual)
            StoredEvent.objects.bulk_create(rows)
    except IntegrityError:
        # Another appender took this version between our check and our INSERT (the
        # unique index made us wait for it to commit). The transaction is aborted now,
        # so the actual version cannot be read. (An `along` that breaks a constraint of
        # its own lands here too, and its rows roll back with the append's.)
        raise ConcurrencyConflict(stream_id, expected_version, None) from None
    recorded = [RecordedEvent.from_row(row) for row in rows]
    last_position = recorded[-1].position
    # events_committed, or one send for a whole batch inside signals.coalesced_commits()
    transaction.on_commit(committed_announcement(sender=StoredEvent, last_position=last_position, events=recorded), robust=True)
    return recorded


# --- gap-safe reading (the argument is in the module docstring) -----------------------

_proof_lock = threading.Lock()
# Per database: every position at or below this is final (proved under SHARE).
_proven_final: dict[tuple, int] = {}
# Per database: no waiting proof before this monotonic time (one just ran out).
_no_wait_until: dict[tuple, float] = {}


def _database_key() -> tuple:
    params = connection.settings_dict
    return (connection.alias, params.get("HOST"), params.get("PORT"), params.get("NAME"))


def _proven_through() -> int:
    return _proven_final.get(_database_key(), 0)


def _remember_proven(position: int) -> None:
    key = _database_key()
    with _proof_lock:
        if position > _proven_final.get(key, 0):
            _proven_final[key] = position


def forget_proofs() -> None:
    """For tests that recreate the database: positions start again from 1."""
    with _proof_lock:
        _proven_final.clear()
        _no_wait_until.clear()


def _unbroken(positions: list[int], after: int, proven: int) -> int:
    """How many of `positions` (ascending, all > after) a reader may take: up to the first hole not known final."""
    expected = after + 1
    for index, position in enumerate(positions):
        if position != expected and position - 1 > proven:
            return index
        expected = position + 1
    return len(positions)


_PROOF_SQL = (
    "SAVEPOINT lp_hole_proof; {timeout}"
    "SELECT {take}(" + _APPEND_LOCK_KEY + "); "
    # A statement of its own: its snapshot is taken after the lock was granted.
    "SELECT (SELECT coalesce(max(position), 0) FROM core_event), "
    "EXISTS (SELECT 1 FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation' "
    "AND relation = 'core_event'::regclass AND mode = 'RowExclusiveLock'); "
    "ROLLBACK TO SAVEPOINT lp_hole_proof; RELEASE SAVEPOINT lp_hole_proof"
)


def _prove(*, wait_ms: int | None) -> int | None:
    """The highest position at or below which every hole is final, or None if that was not proved in time.

    Takes the append lock exclusively in a savepoint (at once or not at all, or waiting at
    most `wait_ms`) and rolls the savepoint back in the same round trip, which releases it.
    """
    sql = _PROOF_SQL.format(
        timeout="" if wait_ms is None else f"SET LOCAL lock_timeout = '{int(wait_ms)}ms'; ",
        take="pg_try_advisory_xact_lock" if wait_ms is None else "pg_advisory_xact_lock",
    )
    # A savepoint needs a transaction block; a caller without one gets a short one of its own.
    with (nullcontext() if connection.in_atomic_block else transaction.atomic()), connection.cursor() as cursor:
        try:
            cursor.execute(sql)
        except DatabaseError as exc:
            cursor.execute("ROLLBACK TO SAVEPOINT lp_hole_proof; RELEASE SAVEPOINT lp_hole_proof")
            # Not granted in time, or a hot standby (no locks there): nothing is proved,
            # and the caller's transaction goes on as before.
            if getattr(exc.__cause__, "sqlstate", None) in (_LOCK_NOT_AVAILABLE, _READ_ONLY_TRANSACTION):
                return None
            raise
        _move_to_result(cursor, 1 if wait_ms is None else 2)
        (granted,) = cursor.fetchone()
        cursor.nextset()
        highest, appended_here = cursor.fetchone()
    if wait_ms is None and not granted:
        return None
    if not appended_here:
        # This transaction's own uncommitted appends are visible to it alone: a value
        # that counts them must not be shared with the rest of the process.
        _remember_proven(highest)
    return highest


def final_position(*, wait_ms: int) -> int | None:
    """Wait at most `wait_ms` until no append that drew a position before now is in flight.

    Returns the highest committed position then (every position at or below it is
    final: committed or never going to be), or None if appends stayed in flight. For a
    reader that needs one gap-free cut of the whole log (a rebuild); appends queue
    behind the wait, so keep it short.
    """
    return _prove(wait_ms=wait_ms)


class StillAppending(Exception):
    """final_position() found appends in flight on every try (settled_position)."""

    def __init__(self, attempts: int, wait_ms: int):
        super().__init__(f"appends kept the event log busy for {attempts} waits of {wait_ms} ms")
        self.attempts, self.wait_ms = attempts, wait_ms


def settled_position(*, attempts: int) -> int:
    """final_position(), tried `attempts` times, each waiting half of EVENT_STORE_LOCK_TIMEOUT_MS (appends
    that arrive meanwhile queue behind the wait, which stays well inside their own lock timeout).
    For the commands that need one gap-free cut of the whole log (rebuild, export, replay)."""
    wait_ms = max(1, int(settings.EVENT_STORE_LOCK_TIMEOUT_MS) // 2)
    for _ in range(attempts):
        through = final_position(wait_ms=wait_ms)
        if through is not None:
            return through
    raise StillAppending(attempts, wait_ms)


def _hole_is_young(event: RecordedEvent) -> bool:
    grace = timedelta(milliseconds=int(settings.EVENT_STORE_HOLE_GRACE_MS))
    return timezone.now() - event.recorded_at < grace


def _prove_hole_below(event: RecordedEvent) -> int | None:
    """Try to prove final the hole just below `event`: NOWAIT first, then a short wait if it is old."""
    proven = _prove(wait_ms=None)
    if proven is not None or _hole_is_young(event):
        return proven
    key = _database_key()
    if time.monotonic() < _no_wait_until.get(key, 0.0):
        return None
    proven = _prove(wait_ms=int(settings.EVENT_STORE_HOLE_WAIT_MS))
    if proven is None:
        with _proof_lock:
            _no_wait_until[key] = time.monotonic() + int(settings.EVENT_STORE_HOLE_GRACE_MS) / 1000
    return proven


def _snapshot_is_frozen() -> bool:
    """REPEATABLE READ or stricter: every statement sees the transaction's first snapshot."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('transaction_isolation') <> 'read committed'")
        return cursor.fetchone()[0]


# The projector reads the log with this on every batch: prepared and decoded by hand on PostgreSQL, where
# the ORM spent about 0.35 ms of CPU building and decoding it against 0.06 ms for the statement itself.
_READ_SQL = (
    "SELECT position, stream_id, version, type, data, metadata, recorded_at FROM core_event "
    "WHERE position > %s ORDER BY position LIMIT %s"
)


def _read_rows(after: int, limit: int) -> list[RecordedEvent]:
    if connection.vendor != "postgresql":
        return [RecordedEvent.from_row(row) for row in StoredEvent.objects.filter(position__gt=after).order_by("position")[:limit]]
    with connection.cursor() as cursor:
        execute_prepared(cursor, _READ_SQL, [after, limit])
        rows = cursor.fetchall()
    # jsonb arrives as text (Django's psycopg setup, for JSONField to decode): decoded as JSONField would.
    return [
        RecordedEvent(position, stream_id, version, type_, json.loads(data), {} if metadata is None else json.loads(metadata), recorded_at)
        for position, stream_id, version, type_, data, metadata, recorded_at in rows
    ]


def read_all(*, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
    """Events with position > `after`, in position order, never past a position that may still commit.

    Safe to resume from the last one returned. An empty or short answer does not mean
    the log ends there: a transaction still in flight may hold the next position.
    """
    if connection.vendor != "postgresql":
        return _read_rows(after, limit)
    # Taken before the query: a proof that finished after the query's snapshot was taken
    # could cover a late commit this query cannot see.
    proven = _proven_through()
    rows = _read_rows(after, limit)
    positions = [row.position for row in rows]
    if _unbroken(positions, after, 0) == len(rows):
        return rows  # no hole: the common case, no extra cost
    if _snapshot_is_frozen():
        # A frozen snapshot cannot see a late commit, and may predate any proof: stop at the hole.
        taken = _unbroken(positions, after, 0)
    else:
        taken = _unbroken(positions, after, proven)
        if taken < len(rows) and (newly_proven := _prove_hole_below(rows[taken])) is not None:
            # Keep the safe prefix; read the rest again in a new statement, whose snapshot
            # sees whatever filled the hole.
            safe, resume = rows[:taken], rows[taken - 1].position if taken else after
            rows = safe + _read_rows(resume, limit - taken)
            taken = taken + _unbroken([row.position for row in rows[taken:]], resume, newly_proven)
    return rows[:taken]


CONTIGUOUS_SCAN = 10_000


def contiguous_through(floor: int) -> int:
    """The end of the unbroken run of positions above `floor` that this transaction sees.

    For a REPEATABLE READ snapshot (analytics.snapshot): pass as `floor` a position
    known gap-safe before the snapshot began, such as the projection checkpoint read in
    the same snapshot. Every event at or below the answer that will ever commit is then
    visible in this snapshot. No hole above `floor` is passed (a frozen snapshot cannot
    tell a rolled-back position from a late commit), and at most CONTIGUOUS_SCAN
    positions are looked at: the answer may be low, never too high.
    """
    positions = list(
        StoredEvent.objects.filter(position__gt=floor).order_by("position").values_list("position", flat=True)[:CONTIGUOUS_SCAN]
    )
    taken = _unbroken(positions, floor, 0) if connection.vendor == "postgresql" else len(positions)
    return positions[taken - 1] if taken else floor


def read_stream(stream_id) -> list[RecordedEvent]:
    rows = StoredEvent.objects.filter(stream_id=stream_id).order_by("version")
    return [RecordedEvent.from_row(row) for row in rows]


def last_position() -> int:
    """The highest committed position: the log reaches at least this far. Not a resume point (see read_all)."""
    return StoredEvent.objects.order_by("-position").values_list("position", flat=True).first() or 0
