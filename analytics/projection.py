"""The projector (every registered projection, one batch, one transaction) and the weekly income projection's batch code.

analytics.registry lists the projections; project_next_batch reads one batch of the log from the
lowest checkpoint, hands each projection the events past its own checkpoint, and moves every
checkpoint with the rows they cover.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import timezone as dt_timezone

import pandas as pd
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from analytics import registry
from analytics import review_queue_frames as rqf
from analytics.frames import weekly_running_totals
from analytics.models import ProjectionCheckpoint, WeeklyIncome, WeeklyIncomeHistory
from core import eventstore
from core.money import format_minor_units, to_minor_units
from transactions import events as txn_events
from transactions.messages import transaction_messages

logger = logging.getLogger(__name__)

CHECKPOINT = "weekly_income"
BATCH_SIZE = 5000
INT64_MAX = 2**63 - 1


class ProjectionConfigChanged(RuntimeError):
    """ANALYTICS_TIME_ZONE or ANALYTICS_WEEK_START changed since the rows were computed."""


class ProjectionFailed(RuntimeError):
    """A batch could not be projected; nothing of it was written and every checkpoint stayed put."""

    def __init__(self, *, after: int, first: int, through: int, cause: BaseException, projection: str = CHECKPOINT, size: int = 1):
        self.after, self.first, self.through, self.cause, self.projection = after, first, through, cause, projection
        self.size = size  # events in the batch that failed
        super().__init__(
            f"{projection.replace('_', ' ')}: events {first}..{through} could not be projected "
            f"({cause.__class__.__name__}: {cause}); the checkpoint stays at {after}"
        )


@dataclass
class ProjectedBatch:
    # The batch covers positions (after, through]: consecutive batches chain without gaps,
    # which lets a consumer notice one it never received.
    after: int
    through: int
    event_count: int
    messages: list[dict] = field(default_factory=list)
    # The read returned fewer events than it asked for: nothing more was readable then.
    short: bool = False
    # The events themselves, already in memory: the batch's log line (request ids), span links and
    # commit -> publish metric read them here instead of reading the log again.
    events: list[eventstore.RecordedEvent] = field(default_factory=list, repr=False)


def current_config() -> str:
    return f"{settings.ANALYTICS_TIME_ZONE}/{settings.ANALYTICS_WEEK_START}"


def income_records(events: list[eventstore.RecordedEvent]) -> pd.DataFrame:
    """The approvals (placed by occurred_at) and reversals (placed by when they were recorded) of a batch, as frames' records."""
    rows = []
    for e in events:
        if e.type == txn_events.APPROVED:
            rows.append((e.position, e.data["occurred_at"], e.data["currency"], to_minor_units(e.data["amount"], e.data["currency"]), False))
        elif e.type == txn_events.REVERSED:
            # The week it happened, not the approval's: closed weeks never change.
            rows.append((e.position, e.recorded_at.isoformat(), e.data["currency"], to_minor_units(e.data["amount"], e.data["currency"]), True))
    frame = pd.DataFrame(rows, columns=["position", "occurred_at", "currency", "amount_minor", "reversal"])
    if rows and max(row[3] for row in rows) > INT64_MAX:
        # Amounts accepted before the per-transaction limit can exceed int64: keep Python ints.
        frame["amount_minor"] = pd.Series([row[3] for row in rows], dtype="object")
    return frame


# What bench/time_travel.py (and anyone replaying the log into frames) calls it.
approved_records = income_records


def weekly_income_message(row: WeeklyIncome, seq: int) -> dict:
    currency = row.currency
    return {
        "type": "weekly_income.updated",
        "seq": seq,
        "week_start": row.week_start.isoformat(),
        "currency": currency,
        "total": format_minor_units(int(row.total_minor), currency),
        "count": row.count,
        "gross": format_minor_units(int(row.gross_minor), currency),
        "reversed": format_minor_units(int(row.reversed_minor), currency),
        "reversed_count": row.reversed_count,
        "net": format_minor_units(int(row.total_minor), currency),
    }


# Checkpoint rows this process has made sure exist: the check costs a statement, so it runs once,
# and again only if a row turns out to be missing (a restored or flushed database).
_ensured: set[str] = set()


class _RowsMissing(Exception):
    """A checkpoint row was missing when the locks were taken: roll back (releasing them) and start over."""


def _ensure_rows(projections: tuple[registry.Projection, ...]) -> None:
    """Create missing checkpoint rows at 0, before any row is locked, in name order.

    Creating one after locking others would take a lock out of name order: a concurrent run that
    locked the new row first (it saw the row committed) and waits for ours would wait in a circle.
    An insert that meets another run's uncommitted insert of the same row waits for it; neither
    holds a checkpoint lock yet, and both insert in the same order, so that wait ends.
    """
    if {p.name for p in projections} <= _ensured:
        return
    ProjectionCheckpoint.objects.bulk_create(
        [ProjectionCheckpoint(name=p.name, config=p.config()) for p in sorted(projections, key=lambda p: p.name)],
        ignore_conflicts=True,
    )
    _ensured.update(p.name for p in projections)


def _locked_checkpoints() -> list[tuple[registry.Projection, ProjectionCheckpoint]]:
    """Every registered projection with its checkpoint row, locked (rows created at 0 the first time)."""
    projections = registry.projections()
    names = [p.name for p in projections]
    _ensure_rows(projections)
    # The row locks admit one projector at a time, so two workers never apply the same events
    # twice nor commit totals out of order. Taken in name order by one statement: a rebuild's swap
    # locks one of them, and nobody waits in a circle.
    rows = {row.name: row for row in _lock_rows(names)}
    if len(rows) < len(names):
        # Not committed yet (another run's insert) or deleted since this process checked.
        _ensured.clear()
        raise _RowsMissing
    for projection in projections:
        stored = rows[projection.name].config
        if stored != projection.config():
            raise ProjectionConfigChanged(
                f"{projection.name} was computed for {stored!r} but settings say {projection.config()!r}: "
                f"run `manage.py rebuild_projections --projection {projection.name}`"
            )
    return [(projection, rows[projection.name]) for projection in projections]


def _lock_rows(names: list[str]) -> list[ProjectionCheckpoint]:
    """SELECT ... FOR UPDATE of these checkpoint rows, in name order; plain SQL on PostgreSQL (the ORM
    spent longer building the query than PostgreSQL took to run it, on every batch)."""
    if connection.vendor != "postgresql":
        return list(ProjectionCheckpoint.objects.select_for_update().filter(name__in=names).order_by("name"))
    table = connection.ops.quote_name(ProjectionCheckpoint._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT name, position, config FROM {table} WHERE name = ANY(%s) ORDER BY name FOR UPDATE", [names])
        return [ProjectionCheckpoint(name=name, position=position, config=config) for name, position, config in cursor.fetchall()]


def _running_totals(batch: list[eventstore.RecordedEvent]) -> list[tuple]:
    """Per approval or reversal, in position order: (week_start, currency, position, *SUMS) of its bucket
    within the batch up to and including it (analytics.frames.weekly_running_totals' rows)."""
    small = _small_running_totals(batch)
    if small is not None:
        return small
    frame = weekly_running_totals(
        income_records(batch), time_zone=settings.ANALYTICS_TIME_ZONE, week_start=settings.ANALYTICS_WEEK_START
    )
    return [
        (row[0], row[1], int(row[2]), *(int(v) for v in row[3:]))
        for row in frame[["week_start", "currency", "position", *SUMS]].itertuples(index=False, name=None)
    ]


# Largest amount frames' exact arithmetic accepts (it refuses the rest, and so does the pandas path below).
_MAX_AMOUNT = 10**19 - 1


def _small_running_totals(batch: list[eventstore.RecordedEvent]) -> list[tuple] | None:
    """frames.weekly_running_totals in plain Python for a few events, or None (use frames).

    Most batches hold one approval, and building and grouping frames costs a few milliseconds
    whatever their size: the idle approve -> dashboard path's largest CPU cost. The same cut
    (rqf.decision_weeks, analytics.frames' local calendar days) and exact Python ints; anything
    unusual (many events, an amount frames refuses, an instant fromisoformat cannot read) goes
    to frames. tests/analytics/test_projection.py compares both on random batches.
    """
    records = []
    for e in batch:
        if e.type == txn_events.APPROVED:
            instant, reversal = e.data["occurred_at"], False
        elif e.type == txn_events.REVERSED:
            instant, reversal = e.recorded_at, True
        else:
            continue
        if len(records) >= rqf.SMALL_BATCH:
            return None
        if isinstance(instant, str):
            try:
                instant = datetime.fromisoformat(instant)
            except ValueError:
                return None
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=dt_timezone.utc)  # frames reads a naive instant as UTC
        amount = to_minor_units(e.data["amount"], e.data["currency"])
        if not 0 <= amount <= _MAX_AMOUNT:
            return None
        records.append((e.position, instant, str(e.data["currency"]), amount, reversal))
    records.sort(key=lambda r: r[0])
    weeks = rqf.decision_weeks([r[1] for r in records], time_zone=settings.ANALYTICS_TIME_ZONE, week_start=settings.ANALYTICS_WEEK_START)
    sums: dict[tuple, list[int]] = {}
    rows = []
    for (position, _, currency, amount, reversal), week in zip(records, weeks):
        gross, count, reversed_, reversed_count = sums.setdefault((week, currency), [0, 0, 0, 0])
        if reversal:
            reversed_, reversed_count = reversed_ + amount, reversed_count + 1
        else:
            gross, count = gross + amount, count + 1
        sums[(week, currency)] = [gross, count, reversed_, reversed_count]
        rows.append((week, currency, position, gross - reversed_, count, gross, reversed_, reversed_count))
    return rows


@dataclass(frozen=True)
class Tables:
    """Where a batch is written: the live tables, or an online rebuild's shadow copies of them (analytics.rebuild)."""

    income: str
    history: str


LIVE = Tables(income=WeeklyIncome._meta.db_table, history=WeeklyIncomeHistory._meta.db_table)
HISTORY_INSERT_ROWS = 5000
# The sums a bucket (and each history row) holds, in this order everywhere below; total is the net.
SUMS = ("total_minor", "count", "gross_minor", "reversed_minor", "reversed_count")


def apply_events(batch: list[eventstore.RecordedEvent], *, tables: Tables = LIVE) -> list[WeeklyIncome]:
    """A batch's approvals and reversals added to `tables`' rows and history (the caller holds the transaction); the changed rows."""
    return _apply(_running_totals(batch), tables)


def _apply(running: list[tuple], tables: Tables = LIVE) -> list[WeeklyIncome]:
    """Add a batch's per-event running sums to the stored rows and record their history.

    Returns the changed rows. Sums are Python ints end to end: they cannot wrap.
    One statement for a live batch on PostgreSQL, however many buckets: the rows are upserted with
    their increments (the new sums come back) and the history rows inserted by the same statement;
    two (the upsert, then the history) for a rebuild-sized batch or on SQLite.
    """
    if not running:
        return []
    # Per bucket: the batch's own sums and its last position (rows are in position order).
    batch_sums: dict[tuple, tuple[int, tuple[int, ...]]] = {}
    entries = []
    for row in running:
        ws, cur, position, sums = row[0], row[1], row[2], tuple(row[3:])
        entries.append((ws, cur, position, sums))
        batch_sums[(ws, cur)] = (position, sums)
    if connection.vendor == "postgresql" and len(entries) <= HISTORY_INSERT_ROWS:
        # A live batch: one round trip for both (the history rows computed by the statement).
        stored = _add_to_rows(batch_sums, tables.income, history=(entries, tables.history))
    else:
        stored = _add_to_rows(batch_sums, tables.income)
        history = []
        for ws, cur, position, sums in entries:
            after_batch, _ = stored[(ws, cur)]
            _, batch_total = batch_sums[(ws, cur)]
            # What the row held before this batch, plus the batch's running sums up to this event.
            history.append((ws, cur, position, *(a - b + s for a, b, s in zip(after_batch, batch_total, sums))))
        _insert_history(history, tables.history)
    return [
        WeeklyIncome(week_start=ws, currency=cur, last_position=last_position, **dict(zip(SUMS, sums)))
        for (ws, cur), (sums, last_position) in sorted(stored.items())
    ]


def _insert_history(history: list[tuple], table: str) -> None:
    """Multi-row INSERTs of (week_start, currency, position, *SUMS) into `table` (live or shadow: the ORM's
    bulk_create knows only the model's own table)."""
    quoted = connection.ops.quote_name(table)
    columns = ", ".join(("week_start", "currency", "position", *SUMS))
    placeholders = "(" + ", ".join(["%s"] * (3 + len(SUMS))) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(history), HISTORY_INSERT_ROWS):
            part = history[start:start + HISTORY_INSERT_ROWS]
            cursor.execute(
                f"INSERT INTO {quoted} ({columns}) VALUES " + ", ".join([placeholders] * len(part)),
                [value for row in part for value in row],
            )


def _add_to_rows(
    batch_sums: dict[tuple, tuple[int, tuple[int, ...]]], table: str = LIVE.income, *, history: tuple[list, str] | None = None,
) -> dict[tuple, tuple[tuple[int, ...], int]]:
    """Upsert each bucket's increments in one statement; its stored (SUMS, last_position) after it.

    With `history` ((week_start, currency, position, SUMS running within the batch) per event, and
    its table; PostgreSQL only), the same statement inserts the history rows too: each is what its
    row holds after the upsert, less the batch's sums, plus the running sums up to that event.
    """
    table = connection.ops.quote_name(table)
    row = "(" + ", ".join(["%s"] * (3 + len(SUMS))) + ")"
    values, params = [], []
    for (ws, cur), (position, sums) in batch_sums.items():
        values.append(row)
        params += [ws, cur, position, *sums]
    added = ",\n            ".join(f"{name} = t.{name} + excluded.{name}" for name in SUMS)
    upsert = f"""
        INSERT INTO {table} AS t (week_start, currency, last_position, {", ".join(SUMS)})
        VALUES {", ".join(values)}
        ON CONFLICT (week_start, currency) DO UPDATE SET
            {added},
            last_position = CASE WHEN excluded.last_position > t.last_position THEN excluded.last_position ELSE t.last_position END
        RETURNING week_start, currency, last_position, {", ".join(SUMS)}
    """
    if history is None:
        sql = upsert
    else:
        entries, history_table = history
        columns = ", ".join(("week_start", "currency", "position", *SUMS))
        batch_columns = ", ".join(("week_start", "currency", "last_position", *SUMS))
        running = ", ".join(f"up.{name} - b.{name} + e.{name}" for name in SUMS)
        # The batch's sums are sent twice (upsert and subtraction) rather than read back from the
        # upsert's input: excluded.* is not visible outside ON CONFLICT.
        sql = f"""
            WITH up AS ({upsert}),
            b ({batch_columns}) AS (VALUES {", ".join(values)}),
            e ({columns}) AS (VALUES {", ".join([row] * len(entries))}),
            h AS (
                INSERT INTO {connection.ops.quote_name(history_table)} ({columns})
                SELECT e.week_start, e.currency, e.position, {running}
                FROM e JOIN b USING (week_start, currency) JOIN up USING (week_start, currency)
            )
            SELECT * FROM up
        """
        params = [*params, *params, *(value for ws, cur, position, sums in entries for value in (ws, cur, position, *sums))]
    move = registry.take_checkpoint_move() if connection.vendor == "postgresql" else None
    if move is not None:
        # The projector's checkpoint UPDATE first, in the same execute: one round trip for both.
        sql, params = f"{move[0]};\n{sql}", [*move[1], *params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if move is not None:
            cursor.nextset()
        returned = cursor.fetchall()
    return {
        # SQLite hands dates back as text.
        (ws if isinstance(ws, date) else date.fromisoformat(ws), cur): (tuple(int(v) for v in sums), int(last))
        for ws, cur, last, *sums in returned
    }


def _move_checkpoints(checkpoints: list[ProjectionCheckpoint], through: int) -> tuple[str, list] | None:
    """Move the checkpoints to `through`; on PostgreSQL the UPDATE is returned (sql, params) to be sent,
    not sent: the projector hands it to the first projection that writes (registry.take_checkpoint_move),
    so it costs no round trip of its own.

    The UPDATE also lets this transaction's COMMIT return before its WAL reaches disk
    (PostgreSQL). The projections are derived from the log, whose events were committed durably
    by the commands. A crash can lose at most the last few projector commits, and each loses its
    rows, history and checkpoints together (commits stay atomic and ordered): the batch is
    projected again, to the same totals, from the same events. The flush it saves is most
    of a small batch's commit (about 2 ms at p50 here, more under load). The setting is
    read at COMMIT, so it may be made by any statement of the transaction, and it is
    LOCAL: the connection's next transaction is durable again.
    """
    if not checkpoints:
        return None
    now = timezone.now()
    for checkpoint in checkpoints:
        checkpoint.position, checkpoint.updated_at = through, now
    names = [checkpoint.name for checkpoint in checkpoints]
    if connection.vendor != "postgresql":
        ProjectionCheckpoint.objects.filter(name__in=names).update(position=through, updated_at=now)
        return None
    table = connection.ops.quote_name(ProjectionCheckpoint._meta.db_table)
    return (
        f"UPDATE {table} SET position = %s, updated_at = %s WHERE name = ANY(%s) "
        "RETURNING set_config('synchronous_commit', 'off', true)",
        [through, now, names],
    )


def project_next_batch(*, batch_size: int = BATCH_SIZE) -> ProjectedBatch | None:
    """Project the next batch of events into every registered projection; None when all are caught up.

    One read from the lowest checkpoint; each projection gets only the events past its own (a
    projection just rebuilt may be ahead of the others). The batch published covers (after,
    through] from that lowest checkpoint, so batches chain; its transaction messages start past the
    first projection's checkpoint, where dashboards stand (a client drops older ones by seq anyway).
    """
    attempts = 3
    while True:
        try:
            return _project_next_batch(batch_size)
        except _RowsMissing:
            # Rolled back, so the locks it took are released; the rows are created before locking again.
            attempts -= 1
            if not attempts:
                raise RuntimeError("projection checkpoint rows kept disappearing") from None
        except ProjectionFailed as failed:
            if failed.size <= 1:
                raise
            # One event the projector cannot place (a poison event) fails its whole batch. Halve the batch
            # until it either goes through (the good events before the poison are projected and published:
            # the caller asks again for the rest) or is that one event, whose own position the error then
            # names. Each try rolled back whole, so nothing is applied twice.
            batch_size = failed.size // 2


def _project_next_batch(batch_size: int) -> ProjectedBatch | None:
    with transaction.atomic():
        checkpoints = _locked_checkpoints()
        after = min(checkpoint.position for _, checkpoint in checkpoints)
        batch = eventstore.read_all(after=after, limit=batch_size)
        if not batch:
            return None
        through = batch[-1].position
        shown_after = checkpoints[0][1].position  # before it moves, below
        work = [
            (projection, checkpoint, checkpoint.position,
             [e for e in batch if e.position > checkpoint.position and e.type in projection.handles])
            for projection, checkpoint in checkpoints if checkpoint.position < through
        ]
        # Every checkpoint behind `through` moves to it: the UPDATE goes out with the first projection's
        # write (registry.take_checkpoint_move), or below if none took it. Same transaction either way.
        token = registry.checkpoint_move.set(_move_checkpoints([checkpoint for _, checkpoint, _, _ in work], through))
        try:
            projected = []
            for projection, _, was, mine in work:
                if not mine:
                    continue
                try:
                    projected.extend(projection.apply(mine, through=through))
                except Exception as exc:
                    # Raised inside the atomic block: every projection's rows and checkpoint roll back.
                    raise ProjectionFailed(
                        projection=projection.name, after=was, first=mine[0].position, through=through, cause=exc,
                        size=len(batch),
                    ) from exc
            move = registry.take_checkpoint_move()
        finally:
            registry.checkpoint_move.reset(token)
        if move is not None:
            with connection.cursor() as cursor:
                cursor.execute(*move)
        # Dashboards stand at the first projection's checkpoint (the snapshot's seq): events at or
        # below it were published when it applied them. While another projection catches up from
        # behind, its batches would otherwise re-send (and read rows for) messages every client drops.
        messages = transaction_messages([e for e in batch if e.position > shown_after]) + projected
    return ProjectedBatch(
        after=after, through=through, event_count=len(batch), messages=messages, short=len(batch) < batch_size, events=batch
    )


def rebuild_weekly_income(**options) -> int:
    """Recompute rows and history from the whole log beside the live ones and swap them in; returns the new checkpoint (analytics.rebuild)."""
    from analytics.rebuild import rebuild_weekly_income as rebuild

    return rebuild(**options)


class WeeklyIncomeProjection(registry.Projection):
    """Weekly income per (week_start, currency): the first registered projection."""

    name = CHECKPOINT
    handles = frozenset({txn_events.APPROVED, txn_events.REVERSED})

    def config(self) -> str:
        return current_config()

    def apply(self, events: list[eventstore.RecordedEvent], *, through: int) -> list[dict]:
        return [weekly_income_message(row, through) for row in apply_events(events)]

    def rebuild(self, *, readers: int) -> registry.Rebuilt:
        from analytics.rebuild import RebuildStats, rebuild_weekly_income as rebuild

        stats = RebuildStats()
        position = rebuild(readers=readers, stats=stats)
        timing = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in stats.seconds.items())
        return registry.Rebuilt(position, (
            f"{stats.approvals} events read in bulk up to position {stats.cut}, "
            f"{stats.caught_up} events caught up after it, {stats.buckets} rows ({timing})"
        ))

    def verify(self) -> list[str]:
        from analytics.verification import verify_weekly_income

        return verify_weekly_income()
