"""Online rebuild of the weekly income projection: built beside the live tables while approvals and the projector go on, then swapped in.

What it reads: the approvals (placed by occurred_at) and the reversals (placed by recorded_at,
the week they happened), in one pass.

The bulk of the log is read as binary integer columns by parallel readers, summed in
numpy and written to shadow tables with binary COPY. The cut: the event store is asked
for a moment when no append is in flight (core.eventstore.final_position: the append
lock taken exclusively for one statement, then released; appends wait a few
milliseconds at most), when every position up to the highest one is final. Only then is
a snapshot taken and exported: it sees every event up to the cut. Each reader imports
that same snapshot and reads only positions up to the cut, split by block ranges
(ACCESS SHARE, held to the end, keeps VACUUM FULL and CLUSTER from moving rows
meanwhile), so together they read each of those events exactly once.

Meanwhile the projector keeps the live tables current. The shadow is then carried from
the cut towards the head by the projector's own batch code (analytics.projection.
apply_events pointed at the shadow), and finally one transaction that holds the
projector's checkpoint lock applies the last few batches, renames the shadow tables
(and their indexes and sequences) over the live ones and moves the checkpoint: readers
see the old tables or the new ones, never an empty or half-built one, and no projector
run interleaves. Why renames rather than a generation column: docs/runbook.md.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import psycopg
import psycopg.copy
from django.conf import settings
from django.db import DatabaseError, OperationalError, connection, transaction
from psycopg import sql

from analytics import rebuild_frames as rf
from analytics.models import ProjectionCheckpoint, WeeklyIncome, WeeklyIncomeHistory
from analytics.projection import (
    BATCH_SIZE, CHECKPOINT, LIVE, ProjectionFailed, Tables, apply_events, current_config,
)
from core.money import CURRENCY_EXPONENTS, MoneyError, to_minor_units
from core import eventstore
from core.models import StoredEvent
from transactions import events as txn_events

logger = logging.getLogger(__name__)

# 32 MB of heap per query: small enough that two readers finish together, large
# enough that a query's fixed cost (planning, a round trip) is noise.
CHUNK_BLOCKS = 4096
# One more reader than cores, as PostgreSQL's parallel query runs a leader beside its workers:
# while one reader's chunk is on the wire or its next query is being planned, the others
# keep every core busy. (10M events, 2 cores: 3 readers read in 19.6 s where 2 took 28-33 s.)
DEFAULT_READERS = max(2, min(4, (os.cpu_count() or 1) + 1))
HISTORY_COPY_ROWS = 1_000_000
_MAX_HIGH_SUM = 2**62
_PG_EPOCH = date(2000, 1, 1)
_LOCK_NOT_AVAILABLE = "55P03"

# One expression per column, each sent in PostgreSQL's binary format and concatenated
# with string_agg: a chunk arrives as five byte strings, with no per-row work in Python.
# Anything these expressions cannot turn into an exact integer comes out as a sentinel
# (an instant of 'infinity', a currency of '???', an amount of -1) that the caller checks.
# An approval is placed by its occurred_at, a reversal by its recorded_at (the week it happened).
_TYPES = [txn_events.APPROVED, txn_events.REVERSED]
_IS_REVERSAL = f"type = '{txn_events.REVERSED}'"
_OCCURRED = "(data->>'occurred_at')"
_CURRENCY = "(data->>'currency')"
_AMOUNT = "(data->>'amount')::numeric"
_COLUMNS = f"""
    string_agg(int8send(position), ''),
    string_agg(timestamptz_send(CASE WHEN {_IS_REVERSAL} THEN recorded_at
                                     WHEN substr({_OCCURRED}, 5, 1) = '-' THEN {_OCCURRED}::timestamptz
                                     ELSE 'infinity' END), ''),
    string_agg(CASE WHEN octet_length({_CURRENCY}) = 3 THEN textsend({_CURRENCY}) ELSE '\\x3f3f3f'::bytea END, ''),
    string_agg(int8send(CASE WHEN scale({_AMOUNT}) <= {rf.AMOUNT_SCALE_DIGITS} AND abs({_AMOUNT}) < 900000000000000
                             THEN ({_AMOUNT} * 10000)::int8 ELSE {rf.FLAGGED} END), ''),
    string_agg(CASE WHEN {_IS_REVERSAL} THEN '\\x01'::bytea ELSE '\\x00'::bytea END, ''),
    count(*)"""
_CHUNK_QUERY = f"""SELECT {_COLUMNS} FROM core_event
    WHERE ctid >= format('(%%s,0)', %(first)s::bigint)::tid AND ctid < format('(%%s,0)', %(end)s::bigint)::tid
      AND type = ANY(%(types)s) AND position <= %(through)s"""
_PROBE_QUERY = f"SELECT {_COLUMNS} FROM core_event WHERE position BETWEEN %(low)s AND %(high)s AND type = ANY(%(types)s)"


@dataclass
class Chunk:
    """One block range's approvals and reversals, checked and converted: everything but the amounts that need core.money."""

    position: np.ndarray  # int64
    reversal: np.ndarray  # bool
    week: np.ndarray  # int32 days since 2000-01-01
    currency: np.ndarray  # int16 index into Decoder.codes
    high: np.ndarray  # minor units = high * 10^8 + low
    low: np.ndarray
    flagged: np.ndarray  # row indices whose amount the query could not scale exactly
    problems: list[tuple[int, BaseException]]


@dataclass
class RebuildStats:
    """Where the time went, for the benchmark and the command's output."""

    through: int = 0
    cut: int = 0  # the bulk phase read up to here; the catch-up read the rest
    caught_up: int = 0
    approvals: int = 0  # events read in bulk: approvals and reversals (the name the benchmark reads)
    buckets: int = 0
    readers: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


class _SnapshotRead(Exception):
    def __init__(self, first_block: int, end_block: int, cause: BaseException):
        self.first_block, self.end_block, self.cause = first_block, end_block, cause
        super().__init__(str(cause))


class Decoder:
    """Turns a chunk's four byte strings into checked integer columns (runs in the reader threads, beside the database's work)."""

    def __init__(self, *, time_zone: str, week_start: str):
        self.time_zone, self.week_start = time_zone, week_start
        self.codes = sorted(CURRENCY_EXPONENTS)
        self.lookup = np.full(1 << 24, -1, dtype="int16")
        self.lookup[[(ord(c[0]) << 16) | (ord(c[1]) << 8) | ord(c[2]) for c in self.codes]] = np.arange(len(self.codes))
        self.exponents = np.array([CURRENCY_EXPONENTS[c] for c in self.codes], dtype="int64")

    def __call__(self, row) -> Chunk:
        positions, instants, currencies, amounts, kinds, count = row
        position = np.frombuffer(positions or b"", ">i8").astype("int64")
        reversal = np.frombuffer(kinds or b"", "u1").astype(bool)
        instant = np.frombuffer(instants or b"", ">i8").astype("int64")
        letters = np.frombuffer(currencies or b"", "u1").reshape(-1, 3).astype("uint32")
        amount = np.frombuffer(amounts or b"", ">i8").astype("int64")
        if not len(position) == len(instant) == len(letters) == len(amount) == len(reversal) == count:
            raise RuntimeError(f"a chunk's columns disagree: {count} rows, "
                               f"{len(position)}/{len(instant)}/{len(letters)}/{len(amount)}/{len(reversal)} values")
        problems: list[tuple[int, BaseException]] = []

        def first(mask: np.ndarray, make) -> None:
            hits = np.flatnonzero(mask)
            if len(hits):
                row = hits[np.argmin(position[hits])]
                problems.append((int(position[row]), make(row)))

        bad_instant = rf.out_of_range(instant)
        first(bad_instant, lambda row: rf.OutOfRange("occurred_at is not an instant between 1678 and 2261 that can be placed in a week"))
        week = rf.local_week_starts(np.where(bad_instant, 0, instant), time_zone=self.time_zone, week_start=self.week_start)
        packed = (letters[:, 0] << 16) | (letters[:, 1] << 8) | letters[:, 2]
        currency = self.lookup[packed]
        known = currency >= 0
        first(~known, lambda row: MoneyError(f"{_code(packed[row])!r} is not an ISO 4217 currency code"))
        exponent = self.exponents[np.maximum(currency, 0)]
        flagged = amount == rf.FLAGGED
        minor, rounds = rf.to_minor_units(amount, exponent)
        first(known & ~flagged & (amount < 0), lambda row: rf.OutOfRange("amounts must not be negative"))
        first(known & ~flagged & rounds, lambda row: MoneyError(
            f"the amount has more than {exponent[row]} decimal places for {self.codes[currency[row]]}"))
        high, low = np.divmod(np.maximum(minor, 0), rf.SPLIT)
        return Chunk(position, reversal, week, currency, high, low, np.flatnonzero(flagged & known), problems)


def _reader_params() -> dict:
    params = connection.get_connection_params()
    for key in ("context", "cursor_factory", "prepare_threshold"):
        params.pop(key, None)
    return params


def _read_parallel(*, decode: Decoder, snapshot: str, through: int, blocks: int, readers: int, chunk_blocks: int) -> list[Chunk]:
    """Each reader imports the snapshot and takes block ranges from a shared queue until none are left.

    Readers only fetch, so their backends never wait on Python: this thread decodes
    each chunk as it arrives.
    """
    ranges: queue.Queue = queue.Queue()
    for index, first in enumerate(range(0, blocks, chunk_blocks)):
        ranges.put((index, first, min(first + chunk_blocks, blocks)))
    fetched: queue.Queue = queue.Queue()
    stop = threading.Event()
    params = _reader_params()

    def work():
        try:
            try:
                conn = psycopg.connect(**params)
            except psycopg.OperationalError as exc:
                # No connection to spare (max_connections): the others, or this thread's
                # caller, read the ranges this reader would have taken.
                logger.warning("weekly income rebuild: a reader could not connect (%s); reading with fewer", exc)
                return
            with conn:
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
                # Naive timestamps are UTC, as for pandas; a JIT compile per chunk costs more than it saves.
                conn.execute("SET LOCAL TimeZone = 'UTC'; SET LOCAL jit = off")
                with conn.cursor(binary=True) as cursor:
                    while not stop.is_set():
                        try:
                            index, first, end = ranges.get_nowait()
                        except queue.Empty:
                            return
                        try:
                            cursor.execute(_CHUNK_QUERY, {"first": first, "end": end, "types": _TYPES, "through": through})
                        except psycopg.DataError as exc:
                            raise _SnapshotRead(first, end, exc) from exc
                        fetched.put((index, cursor.fetchone()))
        except BaseException as exc:  # handed to the caller, which raises it
            stop.set()
            fetched.put((None, exc))
        finally:
            fetched.put((None, None))  # this reader is done

    threads = [threading.Thread(target=work, name=f"rebuild-reader-{n}", daemon=True) for n in range(readers)]
    for thread in threads:
        thread.start()
    results: dict[int, Chunk] = {}
    failure, running = None, readers
    try:
        while running:
            index, item = fetched.get()
            if index is not None:
                if failure is None:
                    results[index] = decode(item)
            elif item is None:
                running -= 1
            elif failure is None:
                failure = item
    except BaseException:
        stop.set()
        raise
    finally:
        for thread in threads:
            thread.join()
    if failure is not None:
        raise failure
    if not ranges.empty():  # no reader could connect: read the rest here, below the same checkpoint
        left = []
        while not ranges.empty():
            left.append(ranges.get_nowait())
        for (index, first, end), chunk in zip(left, _read_ranges(decode=decode, through=through, ranges=[(f, e) for _, f, e in left])):
            results[index] = chunk
    return [results[index] for index in sorted(results)]


def _read_here(*, decode: Decoder, through: int, blocks: int, chunk_blocks: int) -> list[Chunk]:
    """The same chunks on this connection: inside a caller's transaction that has written, no other session could see those rows."""
    return _read_ranges(decode=decode, through=through, ranges=[(first, min(first + chunk_blocks, blocks)) for first in range(0, blocks, chunk_blocks)])


def _read_ranges(*, decode: Decoder, through: int, ranges: list[tuple[int, int]]) -> list[Chunk]:
    chunks = []
    with connection.cursor() as cursor:
        for first, end in ranges:
            try:
                with transaction.atomic():
                    cursor.execute(_CHUNK_QUERY, {"first": first, "end": end, "types": _TYPES, "through": through})
                    row = cursor.fetchone()
            except DatabaseError as exc:
                raise _SnapshotRead(first, end, exc) from exc
            chunks.append(decode(row))
    return chunks


def _locate(failure: _SnapshotRead, *, through: int) -> int:
    """The first position in the failing block range whose columns PostgreSQL cannot compute (bisection, each probe in a savepoint)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT position FROM core_event WHERE ctid >= format('(%%s,0)', %s::bigint)::tid AND ctid < format('(%%s,0)', %s::bigint)::tid "
            "AND type = ANY(%s) AND position <= %s ORDER BY position",
            [failure.first_block, failure.end_block, _TYPES, through],
        )
        positions = [p for (p,) in cursor.fetchall()]

        def fails(low: int, high: int) -> bool:
            try:
                with transaction.atomic():
                    cursor.execute(_PROBE_QUERY, {"low": low, "high": high, "types": _TYPES})
                return False
            except DatabaseError:
                return True

        low, high = 0, len(positions)
        while high - low > 1:
            middle = (low + high) // 2
            if fails(positions[low], positions[middle - 1]):
                high = middle
            else:
                low = middle
    return positions[low] if positions else 0


@dataclass
class _Columns:
    position: np.ndarray
    reversal: np.ndarray
    week: np.ndarray
    currency: np.ndarray  # index into codes
    high: np.ndarray
    low: np.ndarray
    codes: list[str]


def _poison(position: int, cause: BaseException, before: int) -> ProjectionFailed:
    return ProjectionFailed(after=before, first=position, through=position, cause=cause)


def _columns(chunks: list[Chunk], codes: list[str], *, before: int) -> _Columns:
    """Concatenate the chunks, convert the flagged amounts with core.money, and refuse any poison (the lowest position is named)."""

    def joined(name: str, dtype: str) -> np.ndarray:
        return np.concatenate([getattr(c, name) for c in chunks]) if chunks else np.zeros(0, dtype)

    position, week, currency = joined("position", "int64"), joined("week", "int32"), joined("currency", "int16")
    reversal = joined("reversal", "bool")
    high, low = joined("high", "int64"), joined("low", "int64")
    problems = [problem for chunk in chunks for problem in chunk.problems]
    offsets = np.cumsum([0] + [len(c.position) for c in chunks])
    exceptional = np.concatenate([c.flagged + offset for c, offset in zip(chunks, offsets)]) if chunks else np.zeros(0, "int64")
    if len(exceptional):
        by_position = {int(position[row]): row for row in exceptional}
        for stored, data in StoredEvent.objects.filter(position__in=list(by_position)).values_list("position", "data").iterator():
            row = by_position[stored]
            try:
                value = to_minor_units(data["amount"], data["currency"])
                if not 0 <= value < 10**19:
                    raise rf.OutOfRange("amounts must be from 0 to 10^19 - 1 minor units")
            except Exception as exc:  # noqa: BLE001 - whatever the projector would fail on, named
                problems.append((stored, exc))
                continue
            high[row], low[row] = divmod(value, rf.SPLIT)
    if problems:
        stored, cause = min(problems, key=lambda p: p[0])
        raise _poison(stored, cause, before)
    if len(high) and int(high.max()) * len(high) >= _MAX_HIGH_SUM:
        raise OverflowError("high parts could wrap int64")
    return _Columns(position, reversal, week, currency, high, low, codes)


def _code(packed) -> str:
    packed = int(packed)
    return bytes([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255]).decode("latin-1")


def _totals(columns: _Columns) -> rf.RunningTotals:
    bucket = columns.week.astype("int64") * max(1, len(columns.codes)) + columns.currency
    return rf.running_totals(columns.position, bucket, columns.high, columns.low, columns.reversal)


# ---------------------------------------------------------------------------------------------
# The shadow tables: built beside the live ones, renamed over them in the swap.


def _shadow_name(table: str) -> str:
    return f"{table}_rebuild"


SHADOW = Tables(income=_shadow_name(LIVE.income), history=_shadow_name(LIVE.history))
# One rebuild at a time (a session advisory lock): a second one would drop the first one's shadow.
_REBUILD_LOCK_SQL = "hashtext('analytics.rebuild_weekly_income')::bigint"


class RebuildRunning(RuntimeError):
    """Another rebuild_projections holds the rebuild lock."""


def _drop_shadow(cursor) -> None:
    cursor.execute(f'DROP TABLE IF EXISTS "{SHADOW.history}", "{SHADOW.income}"')


def _create_shadow() -> None:
    """Empty copies of the live tables' columns, defaults, identity and CHECKs, without indexes (they are built after the load)."""
    with transaction.atomic(), connection.cursor() as cursor:
        _drop_shadow(cursor)  # a crashed earlier rebuild's leftovers
        for live, shadow in ((LIVE.income, SHADOW.income), (LIVE.history, SHADOW.history)):
            cursor.execute(
                f'CREATE TABLE "{shadow}" (LIKE "{live}" INCLUDING DEFAULTS INCLUDING IDENTITY '
                "INCLUDING CONSTRAINTS INCLUDING STORAGE)"
            )


def _live_indexes(cursor, live: str) -> list[tuple[str, str | None, str]]:
    """(name, constraint definition or None, index definition) of every index of a live table."""
    cursor.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_constraintdef(c.oid), pg_get_indexdef(i.indexrelid) "
        "FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid "
        "WHERE i.indrelid = %s::regclass ORDER BY 1",
        [live],
    )
    return cursor.fetchall()


def _shadow_index_name(name: str) -> str:
    return f"{name[:50]}_rebuild"


def _build_shadow_indexes() -> None:
    """The live tables' indexes and unique constraints, built on the loaded shadow under temporary names (one sort each),
    then ANALYZE: the swapped-in tables are planned well from their first query."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
        for live, shadow in ((LIVE.income, SHADOW.income), (LIVE.history, SHADOW.history)):
            for name, constraint, index in _live_indexes(cursor, live):
                temporary = connection.ops.quote_name(_shadow_index_name(name))
                if constraint is not None:
                    cursor.execute(f'ALTER TABLE "{shadow}" ADD CONSTRAINT {temporary} {constraint}')
                else:
                    unique = "UNIQUE " if index.startswith("CREATE UNIQUE") else ""
                    cursor.execute(f'CREATE {unique}INDEX {temporary} ON "{shadow}" USING {index.split(" USING ", 1)[1]}')
            cursor.execute(f'ANALYZE "{shadow}"')


def _load_shadow(columns: _Columns, totals: rf.RunningTotals, lap) -> int:
    """History rows by binary COPY and the rows by one INSERT, into the (empty, index-free) shadow tables."""
    ncodes = max(1, len(columns.codes))
    currency_bytes = np.array([c.encode("ascii") for c in columns.codes] or [b"???"], dtype="S3")
    cur_index = columns.currency[totals.order]
    with connection.cursor() as cursor:
        raw = getattr(cursor, "cursor", cursor)
        statement = f'COPY "{SHADOW.history}" ({", ".join(rf.HISTORY_COLUMNS)}) FROM STDIN (FORMAT binary)'
        # A background thread sends each slice while the next one is built.
        with raw.copy(statement, writer=psycopg.copy.QueuedLibpqWriter(raw)) as copy:
            copy.write(rf.PGCOPY_HEADER)
            for start in range(0, len(totals.order), HISTORY_COPY_ROWS):
                part = slice(start, start + HISTORY_COPY_ROWS)
                rows = rf.history_copy_rows(
                    (totals.bucket[part] // ncodes).astype("int32"),
                    currency_bytes[cur_index[part]],
                    totals.position[part],
                    totals,
                    part,
                )
                copy.write(rows.tobytes())
            copy.write(rf.PGCOPY_TRAILER)
        lap("copy")
    buckets = {}
    for i in totals.last:
        gross, reversed_ = rf.joined(totals.gross_high[i], totals.gross_low[i]), rf.joined(totals.reversed_high[i], totals.reversed_low[i])
        key = (_PG_EPOCH + timedelta(days=int(totals.bucket[i] // ncodes)), columns.codes[int(cur_index[i])])
        buckets[key] = (int(totals.position[i]), gross - reversed_, int(totals.count[i]), gross, reversed_, int(totals.reversed_count[i]))
    if buckets:  # a plain INSERT: the unique constraint the projector's upsert names comes with the indexes, later
        with connection.cursor() as cursor:
            cursor.execute(
                f'INSERT INTO "{SHADOW.income}" (week_start, currency, last_position, total_minor, count, gross_minor, '
                "reversed_minor, reversed_count) VALUES " + ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(buckets)),
                [v for key, values in buckets.items() for v in (*key, *values)],
            )
    return len(buckets)


class EventStoreBusy(RuntimeError):
    """Appends kept the event table busy: the rebuild could not find a final position to stop at."""


def _final_through(*, attempts: int = 3) -> int:
    """The highest position, taken at a moment when no append is in flight (core.eventstore.final_position)."""
    try:
        return eventstore.settled_position(attempts=attempts)
    except eventstore.StillAppending as busy:
        raise EventStoreBusy(f"appends kept core_event busy for {busy.attempts} waits of {busy.wait_ms} ms; try the rebuild again") from None


def _bulk(*, readers: int, chunk_blocks: int, stats: RebuildStats, lap) -> int:
    """The shadow filled from the whole log up to a gap-free cut (the store's final position), in one transaction; returns the cut.

    The projector is not held: it keeps the live tables current meanwhile. 0 when the
    amounts are too large for the int64 path: the catch-up then replays the whole log.
    """
    # Inside a caller's transaction (a test case, say) the readers could not see what it
    # wrote, and a savepoint cannot export a snapshot: read on this connection instead.
    parallel = readers > 1 and not connection.in_atomic_block
    decode = Decoder(time_zone=settings.ANALYTICS_TIME_ZONE, week_start=settings.ANALYTICS_WEEK_START)
    before = ProjectionCheckpoint.objects.filter(name=CHECKPOINT).values_list("position", flat=True).first() or 0
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("LOCK TABLE core_event IN ACCESS SHARE MODE")
        through = _final_through()
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {'pg_export_snapshot()' if parallel else 'NULL'}, "
                "(pg_relation_size('core_event') / current_setting('block_size')::int)::bigint"
            )
            snapshot, blocks = cursor.fetchone()
        lap("lock")
        try:
            if parallel:
                stats.readers = readers
                chunks = _read_parallel(
                    decode=decode, snapshot=snapshot, through=through, blocks=blocks, readers=readers, chunk_blocks=chunk_blocks
                )
            else:
                stats.readers = 1
                chunks = _read_here(decode=decode, through=through, blocks=blocks, chunk_blocks=chunk_blocks)
        except _SnapshotRead as failure:
            raise _poison(_locate(failure, through=through), failure.cause, before) from failure.cause
        lap("read")
        try:
            columns = _columns(chunks, decode.codes, before=before)
        except OverflowError:
            logger.warning("weekly income rebuild: amounts too large for the int64 path, replaying in Python instead")
            return 0
        del chunks
        lap("check")
        totals = _totals(columns)
        lap("totals")
        stats.buckets = _load_shadow(columns, totals, lap)
        stats.approvals = len(columns.position)
        lap("rows")
    lap("commit")
    return through


def _catch_up(after: int, *, batch_size: int, before: int, stats: RebuildStats) -> int:
    """The projector's own batches, written to the shadow, until a read comes back short; returns the position reached."""
    position = after
    while True:
        with transaction.atomic():
            batch = eventstore.read_all(after=position, limit=batch_size)
            if batch:
                try:
                    apply_events(batch, tables=SHADOW)
                except Exception as exc:
                    raise ProjectionFailed(after=before, first=batch[0].position, through=batch[-1].position, cause=exc) from exc
                position = batch[-1].position
                stats.caught_up += len(batch)
        if len(batch) < batch_size:
            return position


class SwapBlocked(RuntimeError):
    """Long-running readers of the live tables kept the swap from taking its lock."""


def _swap(after: int, *, batch_size: int, lock_timeout_ms: int, before: int, stats: RebuildStats) -> int | None:
    """The last catch-up and the swap, in one transaction under the projector's lock; the new checkpoint, or None if the
    tables' lock was not granted within `lock_timeout_ms` (nothing changed: the caller catches up again and retries).

    Renames take ACCESS EXCLUSIVE on both tables, so queries queue behind the swap for its
    few milliseconds and then read the new tables: never an empty or half table. The lock
    wait is bounded because queries arriving meanwhile queue behind the waiting swap too.
    """
    try:
        with transaction.atomic():
            checkpoint, _ = ProjectionCheckpoint.objects.select_for_update().get_or_create(name=CHECKPOINT)
            position = _catch_up(after, batch_size=batch_size, before=before, stats=stats)
            # Never swap in a table behind the live one: catch up to its checkpoint. Unless the checkpoint is ahead
            # of every committed event (a log restored from an older backup): the log is the truth, and waiting
            # for events that will never come would hold the lock every projection waits on, forever.
            while position < checkpoint.position and eventstore.last_position() > position:
                position = _catch_up(position, batch_size=batch_size, before=before, stats=stats)
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'")
                cursor.execute(f'LOCK TABLE "{LIVE.income}", "{LIVE.history}" IN ACCESS EXCLUSIVE MODE')
                cursor.execute("SET LOCAL lock_timeout = 0")
                renames = []
                for live, shadow in ((LIVE.income, SHADOW.income), (LIVE.history, SHADOW.history)):
                    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id'), pg_get_serial_sequence(%s, 'id')", [live, shadow])
                    live_sequence, shadow_sequence = cursor.fetchone()
                    renames += [(_shadow_index_name(name), name) for name, _, _ in _live_indexes(cursor, live)]
                    renames.append((shadow, live))
                    if live_sequence and shadow_sequence:
                        renames.append((shadow_sequence.split(".")[-1], live_sequence.split(".")[-1]))
                cursor.execute(f'DROP TABLE "{LIVE.history}", "{LIVE.income}"')
                quote = connection.ops.quote_name
                for old, new in renames:
                    # ALTER TABLE renames a table, an index (and the constraint it backs) or a sequence alike.
                    cursor.execute(f"ALTER TABLE {quote(old)} RENAME TO {quote(new)}")
            checkpoint.position = position
            checkpoint.config = current_config()
            checkpoint.save()
        return position
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
            return None
        raise


def rebuild_weekly_income(
    *, readers: int | None = None, chunk_blocks: int = CHUNK_BLOCKS, stats: RebuildStats | None = None,
    batch_size: int = BATCH_SIZE, swap_attempts: int = 10, lock_timeout_ms: int = 500,
) -> int:
    """Recompute rows and history beside the live ones while the projector goes on, then swap them in; the new checkpoint.

    1. the shadow is filled from the log up to a gap-free cut (parallel binary readers, numpy sums, binary COPY);
    2. the projector's own batches carry it from the cut towards the head, outside any lock;
    3. one transaction holding the projector's checkpoint lock applies the last batches, renames the shadow over
       the live tables and moves the checkpoint. The caller publishes a resync after it returns (after commit).
    """
    stats = stats if stats is not None else RebuildStats()
    if connection.vendor != "postgresql":
        return replay_in_batches()
    readers = DEFAULT_READERS if readers is None else max(1, readers)
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stats.seconds[name] = stats.seconds.get(name, 0.0) + now - clock
        clock = now

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_try_advisory_lock({_REBUILD_LOCK_SQL})")
        if not cursor.fetchone()[0]:
            raise RebuildRunning("another rebuild_projections is running; wait for it to finish")
    try:
        before = ProjectionCheckpoint.objects.filter(name=CHECKPOINT).values_list("position", flat=True).first() or 0
        _create_shadow()
        cut = stats.cut = _bulk(readers=readers, chunk_blocks=chunk_blocks, stats=stats, lap=lap)
        _build_shadow_indexes()
        lap("indexes")
        position = _catch_up(cut, batch_size=batch_size, before=before, stats=stats)
        lap("catch_up")
        for _ in range(swap_attempts):
            swapped = _swap(position, batch_size=batch_size, lock_timeout_ms=lock_timeout_ms, before=before, stats=stats)
            if swapped is not None:
                break
            logger.warning("weekly income rebuild: readers held the tables for %d ms; catching up and trying the swap again",
                           lock_timeout_ms)
            position = _catch_up(position, batch_size=batch_size, before=before, stats=stats)
        else:
            raise SwapBlocked(f"readers held the weekly income tables through {swap_attempts} waits of {lock_timeout_ms} ms; "
                              "the live tables are unchanged, try the rebuild again")
        lap("swap")
        stats.through = swapped
        return swapped
    except BaseException:
        # The live tables were never touched: only the shadow goes.
        if not connection.needs_rollback:
            with connection.cursor() as cursor:
                _drop_shadow(cursor)
        raise
    finally:
        if not connection.needs_rollback:
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT pg_advisory_unlock({_REBUILD_LOCK_SQL})")


def replay_in_batches(*, batch_size: int = 50_000) -> int:
    """The projector's own code over the whole log, batch after batch, in one transaction: for SQLite (no shadow tables there)."""
    with transaction.atomic():
        checkpoint, _ = ProjectionCheckpoint.objects.select_for_update().get_or_create(name=CHECKPOINT)
        before = checkpoint.position
        WeeklyIncomeHistory.objects.all().delete()
        WeeklyIncome.objects.all().delete()
        checkpoint.config = current_config()
        position = 0
        while batch := eventstore.read_all(after=position, limit=batch_size):
            try:
                apply_events(batch)
            except Exception as exc:
                raise ProjectionFailed(after=before, first=batch[0].position, through=batch[-1].position, cause=exc) from exc
            position = batch[-1].position
        checkpoint.position = position
        checkpoint.save()
    return position
