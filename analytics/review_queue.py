"""The review-queue projection: decisions per week, time to decision, decisions per admin, and what is pending now.

Rows: ReviewQueuePending (what waits, since when), ReviewQueueTotal (how many wait), ReviewQueueDecision
(one per approval, rejection or reversal: its week, actor and seconds since submission), ReviewQueueWeek
(counts, the two percentiles and their marks per week) and ReviewQueueAdminWeek (decisions per actor per
week). A batch adds to the counts and moves each percentile's mark a few entries along the week's
decision index (percentiles do not add up, but a rank moves by at most the batch's size): its work
does not grow with the week's decisions or the pending backlog.
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from analytics import review_queue_frames as rqf
from analytics.models import (
    ProjectionCheckpoint, ReviewQueueAdminWeek, ReviewQueueDecision, ReviewQueuePending, ReviewQueueTotal, ReviewQueueWeek,
)
from analytics.rebuild import EventStoreBusy
from analytics.registry import Projection, Rebuilt, take_checkpoint_move
from analytics.review_queue_selectors import NAME, queue_now, stored_from_rows, stored_statement, week_objects
from analytics.selectors import current_week_start
from core import eventstore
from core.db import consistent_read
from core.models import StoredEvent
from transactions import events as txn_events

MESSAGE_TYPE = "review_queue.updated"
KINDS = {
    txn_events.SUBMITTED: rqf.SUBMITTED,
    txn_events.APPROVAL_RECORDED: rqf.APPROVAL_RECORDED,
    txn_events.APPROVED: rqf.APPROVED,
    txn_events.REJECTED: rqf.REJECTED,
    txn_events.REVERSED: rqf.REVERSED,
}
INSERT_ROWS = 5000
REBUILD_READ_ROWS = 50_000


def actor_of(metadata) -> str:
    """The metadata's actor, "" when it names none (an imported log may carry null): as the transaction list says."""
    actor = metadata.get("actor") if isinstance(metadata, dict) else None
    return actor if isinstance(actor, str) else ""


def _records(events) -> list[tuple]:
    """(position, kind, transaction_id, actor, recorded_at) of the events the queue cares about."""
    return [
        (e.position, KINDS[e.type], str(e.stream_id), actor_of(e.metadata), e.recorded_at)
        for e in events
        if e.type in KINDS
    ]


def _week_cut() -> dict:
    return {"time_zone": settings.ANALYTICS_TIME_ZONE, "week_start": settings.ANALYTICS_WEEK_START}


def _fold(records: list[tuple], known: dict[str, datetime]) -> rqf.ReviewBatch:
    return rqf.review_batch(records, known=known, **_week_cut())


# ---- the batch function ----------------------------------------------------------------------

def apply_review_events(events) -> tuple[list[date], bool]:
    """Add a batch's events to the rows (the caller holds the transaction); the weeks changed and whether pending changed."""
    statements, weeks, pending_changed = _batch_writes(events)
    _execute_all(statements)
    return weeks, pending_changed


def _batch_writes(events) -> tuple[list[tuple[str, list]], list[date], bool]:
    """The batch's writes as (sql, params) statements, not yet run; the weeks they change and whether pending changes.

    Two round trips on PostgreSQL, however many events: the pending rows of the transactions the
    batch decides are deleted here, their submission times come back (the fold needs them) with the
    percentile marks of the weeks it may add timed decisions to; every other write goes in the one
    multi-statement execute of _execute_all, with the read of the batch's messages after them
    (ReviewQueue.apply). Nothing here is proportional to what the rows already hold.
    """
    records = _records(events)
    if not records:
        return [], [], False
    submitted_here = {r[2] for r in records if r[1] == rqf.SUBMITTED}
    asked = {r[2] for r in records if r[1] in rqf.TIMED_KINDS} - submitted_here
    # The weeks a timed decision of this batch can fall in: those of its approvals and rejections.
    decided = [r[4] for r in records if r[1] in rqf.TIMED_KINDS]
    maybe_timed = sorted(set(rqf.decision_weeks(decided, **_week_cut()))) if decided else []
    # A decided transaction that was pending is resolved by this batch (rqf.review_batch resolves
    # exactly the asked ones it knows), so deleting them all up front is what the fold asks for.
    known, marks = _take_pending_read_marks(asked, maybe_timed)
    # Plain tuples, no frame: a batch usually holds one decision, and a frame costs about a millisecond.
    values, submitted, resolved = rqf.review_decisions(records, known=known, **_week_cut())
    statements = []
    if submitted:
        statements += _insert_statements(
            ReviewQueuePending, ("transaction_id", "submitted_at", "position"),
            [(tid, at, pos) for tid, (at, pos) in submitted.items()],
        )
    # Submitted and still pending at the end of the batch, less the pending rows it deleted.
    change = len(submitted) - len(known)
    if change:
        statements.append(_pending_total_statement(change))
    weeks: list[date] = []
    if values:
        statements += _insert_statements(ReviewQueueDecision, DECISION_FIELDS, values)
        counts = _week_counts(values)
        statements.append(_week_counts_statement(counts))
        statements.append(_admin_counts_statement(counts))
        added: dict[date, list[tuple[int, int]]] = defaultdict(list)
        for position, _, week, _, _, seconds in values:
            if seconds is not None:
                added[week].append((seconds, position))
        statements += [_marks_statement(week, marks.get(week), keys) for week, keys in sorted(added.items())]
        weeks = sorted(counts)
    return statements, weeks, bool(submitted or resolved)


def _take_pending_read_marks(transaction_ids: set[str], weeks: list[date]) -> tuple[dict[str, datetime], dict[date, rqf.WeekMarks]]:
    """Delete these transactions' pending rows, and read these weeks' percentile marks (one round trip):
    the pending rows' submission times by transaction id, and the marks by week (weeks without a row left out)."""
    if not transaction_ids and not weeks:
        return {}, {}
    week_table = connection.ops.quote_name(ReviewQueueWeek._meta.db_table)
    marks_sql = (
        f"SELECT week_start, timed, p50_seconds, p50_position, p90_seconds, p90_position FROM {week_table} "
        f"WHERE week_start IN ({', '.join(['%s'] * len(weeks))})"
    )
    known: dict[str, datetime] = {}
    if connection.vendor != "postgresql":
        if transaction_ids:
            taken = ReviewQueuePending.objects.filter(transaction_id__in=transaction_ids)
            known = {str(tid): at for tid, at in taken.values_list("transaction_id", "submitted_at")}
            taken.delete()
        rows = []
        if weeks:
            with connection.cursor() as cursor:
                cursor.execute(marks_sql, weeks)
                rows = cursor.fetchall()
        return known, _marks_by_week(rows)
    table = connection.ops.quote_name(ReviewQueuePending._meta.db_table)
    statements, params = [], []
    if transaction_ids:
        statements.append(f"DELETE FROM {table} WHERE transaction_id = ANY(%s::uuid[]) RETURNING transaction_id, submitted_at")
        params.append(sorted(transaction_ids))
    if weeks:
        statements.append(marks_sql)
        params += weeks
    rows = []
    with connection.cursor() as cursor:
        cursor.execute(";\n".join(statements), params)
        if transaction_ids:
            known = {str(tid): at for tid, at in cursor.fetchall()}
            if weeks:
                cursor.nextset()
        if weeks:
            rows = cursor.fetchall()
    return known, _marks_by_week(rows)


def _marks_by_week(rows) -> dict[date, rqf.WeekMarks]:
    def mark(seconds, position):
        return None if seconds is None or position is None else (int(seconds), int(position))

    return {
        # SQLite hands dates back as text.
        (date.fromisoformat(week) if isinstance(week, str) else week): rqf.WeekMarks(
            timed=int(timed), marks={50: mark(s50, p50), 90: mark(s90, p90)},
        )
        for week, timed, s50, p50, s90, p90 in rows
    }


def _execute_all(statements: list[tuple[str, list]]) -> list[tuple] | None:
    """Run (sql, params) statements in order; the rows the last one returned (None if it returns none).

    In one round trip on PostgreSQL (Django's psycopg cursors bind client-side, which allows several
    statements in one execute; each sees the ones before it), one by one elsewhere.
    """
    if connection.vendor == "postgresql":
        # The projector's checkpoint move, if no projection sent it yet: no round trip of its own.
        move = take_checkpoint_move()
        statements = [move, *statements] if move else statements
    if not statements:
        return None
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(";\n".join(sql for sql, _ in statements), [p for _, params in statements for p in params])
            while cursor.nextset():  # to the last statement's result
                pass
        else:
            for sql, params in statements:
                cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


def _insert_statements(model, fields: tuple[str, ...], rows: list[tuple]) -> list[tuple[str, list]]:
    """Multi-row INSERTs of `rows` into `model`'s table, INSERT_ROWS rows each."""
    if connection.vendor != "postgresql":
        # As the ORM would store them: SQLite keeps a UUID as 32 hex digits and a datetime as naive UTC
        # text, and the ORM's lookups compare with those forms (a dashed UUID is never found again).
        prepped = [model._meta.get_field(name) for name in fields]
        rows = [tuple(field.get_db_prep_value(value, connection) for field, value in zip(prepped, row)) for row in rows]
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(f) for f in fields)
    placeholder = "(" + ", ".join(["%s"] * len(fields)) + ")"
    return [
        (f"INSERT INTO {table} ({columns}) VALUES " + ", ".join([placeholder] * len(part)), [v for row in part for v in row])
        for part in (rows[start:start + INSERT_ROWS] for start in range(0, len(rows), INSERT_ROWS))
    ]


DECISION_FIELDS = ("position", "transaction_id", "week_start", "kind", "actor", "seconds")


def _decision_values(decisions: pd.DataFrame) -> list[tuple]:
    """The decision rows as DECISION_FIELDS tuples (seconds a Python int or None)."""
    columns = [decisions[column].tolist() for column in rqf.DECISION_COLUMNS]
    return [
        (int(position), tid, week, kind, actor, None if seconds is None or pd.isna(seconds) else int(seconds))
        for position, tid, week, kind, actor, seconds in zip(*columns)
    ]


def _week_counts(values: list[tuple]) -> dict[date, dict]:
    """rqf.week_counts over DECISION_FIELDS tuples instead of a frame (the same dicts)."""
    weeks: dict[date, dict] = {}
    for position, _, week, kind, actor, _ in values:
        entry = weeks.setdefault(week, {rqf.APPROVED: 0, rqf.REJECTED: 0, rqf.REVERSED: 0, "admins": Counter(), "last_position": 0})
        entry[kind] += 1
        entry["admins"][actor] += 1
        entry["last_position"] = max(entry["last_position"], position)
    return weeks


def _decision_rows(decisions: pd.DataFrame) -> list[ReviewQueueDecision]:
    return [ReviewQueueDecision(**dict(zip(DECISION_FIELDS, values))) for values in _decision_values(decisions)]


def _week_counts_statement(counts: dict[date, dict]) -> tuple[str, list]:
    """Each week's increments, upserted by one statement."""
    table = connection.ops.quote_name(ReviewQueueWeek._meta.db_table)
    values, params = [], []
    for week, entry in counts.items():
        values.append("(%s, %s, %s, %s, %s, 0)")
        params += [week, entry[rqf.APPROVED], entry[rqf.REJECTED], entry[rqf.REVERSED], entry["last_position"]]
    # A new week's `timed` starts at 0; _marks_statement adds the batch's timed decisions to it.
    sql = f"""
        INSERT INTO {table} AS t (week_start, approved, rejected, reversed, last_position, timed) VALUES {", ".join(values)}
        ON CONFLICT (week_start) DO UPDATE SET
            approved = t.approved + excluded.approved,
            rejected = t.rejected + excluded.rejected,
            reversed = t.reversed + excluded.reversed,
            last_position = CASE WHEN excluded.last_position > t.last_position THEN excluded.last_position ELSE t.last_position END
    """
    return sql, params


def _admin_counts_statement(counts: dict[date, dict]) -> tuple[str, list]:
    table = connection.ops.quote_name(ReviewQueueAdminWeek._meta.db_table)
    values, params = [], []
    for week, entry in counts.items():
        for actor, n in entry["admins"].items():
            values.append("(%s, %s, %s)")
            params += [week, actor, n]
    sql = f"""
        INSERT INTO {table} AS t (week_start, actor, decisions) VALUES {", ".join(values)}
        ON CONFLICT (week_start, actor) DO UPDATE SET decisions = t.decisions + excluded.decisions
    """
    return sql, params


def _marks_statement(week: date, before: rqf.WeekMarks | None, added: list[tuple[int, int]]) -> tuple[str, list]:
    """Move the week's percentile marks over the batch's timed decisions (already inserted: statement order
    in _execute_all), and add them to its `timed` count.

    rqf.move_mark says where each mark goes: a few entries up or down the (week_start, seconds,
    position) index from where it was, or (a week's first timed decisions) from the bottom.
    About as many index entries as the batch has decisions, whatever the week holds: the week with a
    million decisions costs what the week with ten does.
    """
    before = before or rqf.WeekMarks(timed=0, marks={})
    moves = {percent: rqf.move_mark(before.timed, before.marks.get(percent), added, percent) for percent in rqf.PERCENTILES}
    return _marks_update(week, before.timed + len(added), moves)


def _marks_update(week: date, timed: int, moves: dict[int, rqf.MarkMove]) -> tuple[str, list]:
    """UPDATE the week's `timed` count and move its marks as told (one index walk per moved mark)."""
    decisions = connection.ops.quote_name(ReviewQueueDecision._meta.db_table)
    weeks = connection.ops.quote_name(ReviewQueueWeek._meta.db_table)
    source = f"FROM {decisions} WHERE week_start = %s AND seconds IS NOT NULL"
    sets, params = ["timed = %s"], [timed]
    for percent, move in sorted(moves.items()):
        if move.direction == rqf.KEEP:
            continue
        if move.direction == rqf.FROM_BOTTOM:
            walk, walk_params = f"SELECT seconds, position {source} ORDER BY seconds, position LIMIT 1 OFFSET %s", [week, move.steps]
        else:
            op, order = (">", "") if move.direction == rqf.UP else ("<", " DESC")
            walk = (
                f"SELECT seconds, position {source} AND (seconds, position) {op} (%s, %s) "
                f"ORDER BY seconds{order}, position{order} LIMIT 1 OFFSET %s"
            )
            walk_params = [week, *move.origin, move.steps]
        sets.append(f"(p{percent}_seconds, p{percent}_position) = ({walk})")
        params += walk_params
    return f"UPDATE {weeks} SET {', '.join(sets)} WHERE week_start = %s", [*params, week]


def _pending_total_statement(change: int) -> tuple[str, list]:
    """Add `change` to the pending count (the row is made if a flush or a new database has none)."""
    table = connection.ops.quote_name(ReviewQueueTotal._meta.db_table)
    return (
        f"INSERT INTO {table} AS t (id, pending) VALUES (1, %s) "
        f"ON CONFLICT (id) DO UPDATE SET pending = t.pending + excluded.pending",
        [change],
    )


def recount_from_rows() -> None:
    """Every week's row and the pending count computed again from the decision and pending rows.

    For decision and pending rows written outside the projector (the benchmark's generated history,
    written with SQL in seconds): linear in the rows, once; the projector itself only adds batches.
    """
    decisions = connection.ops.quote_name(ReviewQueueDecision._meta.db_table)
    weeks = connection.ops.quote_name(ReviewQueueWeek._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {weeks}")
        cursor.execute(
            f"INSERT INTO {weeks} (week_start, approved, rejected, reversed, last_position, timed) "
            f"SELECT week_start, SUM(CASE WHEN kind = %s THEN 1 ELSE 0 END), SUM(CASE WHEN kind = %s THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN kind = %s THEN 1 ELSE 0 END), MAX(position), 0 FROM {decisions} GROUP BY week_start",
            [rqf.APPROVED, rqf.REJECTED, rqf.REVERSED],
        )
        cursor.execute(f"SELECT week_start, COUNT(*) FROM {decisions} WHERE seconds IS NOT NULL GROUP BY week_start")
        for week, timed in cursor.fetchall():
            # Each mark counted from the bottom, as for a week's first batch.
            moves = {p: rqf.MarkMove(rqf.FROM_BOTTOM, steps=rqf.percentile_rank(int(timed), p) - 1) for p in rqf.PERCENTILES}
            cursor.execute(*_marks_update(week, int(timed), moves))
    ReviewQueueTotal.objects.update_or_create(id=1, defaults={"pending": ReviewQueuePending.objects.count()})


# ---- messages ---------------------------------------------------------------------------------------

def message_weeks(weeks: list[date], pending_changed: bool, now: datetime) -> list[date]:
    """The weeks a batch's messages show: those it changed; when only pending changed (submissions),
    the current week, which is what the dashboard's tiles show; none when nothing changed."""
    if not weeks and not pending_changed:
        return []
    return weeks or [current_week_start(now)]


def review_queue_messages(
    weeks: list[date], pending_changed: bool, *, seq: int, now: datetime | None = None, stored=None,
) -> list[dict]:
    """One `review_queue.updated` per week the batch changed, each with pending now (read now, or
    `stored`: the rows of those weeks read already, with the batch's writes)."""
    now = now or timezone.now()
    weeks = message_weeks(weeks, pending_changed, now)
    if not weeks:
        return []
    _, pending, objects = queue_now(weeks, now, stored=stored)
    return [{"type": MESSAGE_TYPE, "seq": seq, "week": objects[week], "pending": pending} for week in weeks]


# ---- rebuild ---------------------------------------------------------------------------------------

class _Replay:
    """The whole queue computed in memory from the log, batch by batch (the same fold as the projector)."""

    def __init__(self):
        self.pending: dict[str, tuple[datetime, int]] = {}
        self.decisions: list[pd.DataFrame] = []
        self.through = 0
        self.events = 0

    def add(self, records: list[tuple], through: int) -> None:
        if records:
            batch = _fold(records, {tid: at for tid, (at, _) in self.pending.items()})
            for tid in batch.resolved:
                del self.pending[tid]
            self.pending.update(batch.submitted)
            if not batch.decisions.empty:
                self.decisions.append(batch.decisions)
            self.events += len(records)
        self.through = max(self.through, through)

    def frame(self) -> pd.DataFrame:
        if not self.decisions:
            return pd.DataFrame({c: pd.Series(dtype="object") for c in rqf.DECISION_COLUMNS})
        return pd.concat(self.decisions, ignore_index=True)


def _bulk_records(through: int):
    """The log's relevant events up to a gap-free `through`, straight from the table in chunks (read once)."""
    after = 0
    while True:
        rows = list(
            StoredEvent.objects.filter(position__gt=after, position__lte=through, type__in=list(KINDS))
            .order_by("position")
            .values_list("position", "type", "stream_id", "metadata", "recorded_at")[:REBUILD_READ_ROWS]
        )
        if not rows:
            return
        yield [(p, KINDS[t], str(s), actor_of(m), at) for p, t, s, m, at in rows]
        after = rows[-1][0]


def _write_all(replay: _Replay) -> tuple[int, int]:
    """Replace every row with the replay's (inside the caller's transaction); (weeks, decisions) written."""
    for model in (ReviewQueuePending, ReviewQueueDecision, ReviewQueueWeek, ReviewQueueAdminWeek, ReviewQueueTotal):
        model.objects.all().delete()
    ReviewQueuePending.objects.bulk_create(
        [ReviewQueuePending(transaction_id=tid, submitted_at=at, position=pos) for tid, (at, pos) in replay.pending.items()],
        batch_size=INSERT_ROWS,
    )
    ReviewQueueTotal.objects.create(id=1, pending=len(replay.pending))
    decisions = replay.frame()
    if decisions.empty:
        return 0, 0
    ReviewQueueDecision.objects.bulk_create(_decision_rows(decisions), batch_size=INSERT_ROWS)
    summaries = rqf.weekly_summaries(decisions)
    counts = rqf.week_counts(decisions)
    marks = _marks_of(decisions)
    ReviewQueueWeek.objects.bulk_create(
        [
            ReviewQueueWeek(
                week_start=week, approved=s["approved"], rejected=s["rejected"], reversed=s["reversed"],
                p50_seconds=s["time_to_decision_p50_seconds"], p90_seconds=s["time_to_decision_p90_seconds"],
                last_position=counts[week]["last_position"], **_mark_fields(marks.get(week)),
            )
            for week, s in summaries.items()
        ],
        batch_size=INSERT_ROWS,
    )
    ReviewQueueAdminWeek.objects.bulk_create(
        [ReviewQueueAdminWeek(week_start=week, actor=actor, decisions=n) for week, e in counts.items() for actor, n in e["admins"].items()],
        batch_size=INSERT_ROWS,
    )
    return len(summaries), len(decisions)


def _marks_of(decisions: pd.DataFrame) -> dict[date, rqf.WeekMarks]:
    """Each week's marks from all its timed decisions (a rebuild)."""
    timed = decisions[decisions["seconds"].notna()]
    return {
        week: rqf.week_marks(zip(group["seconds"].astype("int64"), group["position"].astype("int64")))
        for week, group in timed.groupby("week_start")
    } if len(timed) else {}


def _mark_fields(marks: rqf.WeekMarks | None) -> dict:
    """ReviewQueueWeek's timed and mark position fields for these marks (none: a week without timed decisions)."""
    if marks is None:
        return {"timed": 0, "p50_position": None, "p90_position": None}
    return {"timed": marks.timed, **{f"p{p}_position": None if marks.marks[p] is None else marks.marks[p][1] for p in rqf.PERCENTILES}}


def _gap_free_cut() -> int:
    """A position with every event at or below it committed or never to be (SQLite numbers rows in commit order)."""
    if connection.vendor != "postgresql":
        return eventstore.last_position()
    try:
        return eventstore.settled_position(attempts=3)
    except eventstore.StillAppending as exc:
        raise EventStoreBusy(f"no gap-free cut of the log: {exc}; try again") from exc


def rebuild_review_queue(*, catch_up_batch: int = 5000) -> Rebuilt:
    """Recompute every row from the log: read in bulk without any lock up to a gap-free cut, then,
    holding this projection's checkpoint row only, read what came after, replace the rows and move
    the checkpoint. The projector (every projection) waits for that last part, which writes the
    rows: proportional to the number of decisions in the log, not to its events."""
    config = ReviewQueue().config()
    replay = _Replay()
    cut = _gap_free_cut()
    for records in _bulk_records(cut):
        replay.add(records, records[-1][0])
    replay.through = cut
    with transaction.atomic():
        checkpoint, _ = ProjectionCheckpoint.objects.select_for_update().get_or_create(name=NAME, defaults={"config": config})
        while True:
            batch = eventstore.read_all(after=replay.through, limit=catch_up_batch)
            if not batch:
                if replay.through >= checkpoint.position or eventstore.last_position() <= replay.through:
                    # Caught up; or the checkpoint is ahead of every committed event (a log restored from an
                    # older backup): the log is the truth, and waiting here would hold the lock forever.
                    break
                # A hole the live projector already passed is final: read_all proves it within a grace period.
                time.sleep(0.05)
                continue
            replay.add(_records(batch), batch[-1].position)
        weeks, decisions = _write_all(replay)
        checkpoint.position = replay.through
        checkpoint.config = config
        checkpoint.save(update_fields=["position", "config", "updated_at"])
    return Rebuilt(
        position=replay.through,
        summary=f"{replay.events} events read, {decisions} decisions in {weeks} weeks, {len(replay.pending)} pending",
    )


# ---- verify: arithmetic of its own (zoneinfo, sorted lists), no pandas --------------------------------

def _week_of(instant: datetime, zone: ZoneInfo, week_start: str) -> date:
    local = instant.astimezone(zone).date()
    return local - timedelta(days=local.weekday() if week_start == "monday" else (local.weekday() + 1) % 7)


def _percentile(values: list, percent: int):
    """The smallest value with at least `percent`% of the values at or below it (by counting, not by rank);
    of (seconds, position) keys, the key whose seconds are the percentile and whose row is the mark."""
    ordered = sorted(values)
    for index, value in enumerate(ordered, start=1):
        if index * 100 >= percent * len(ordered):
            return value
    return None


def recompute(*, through: int) -> tuple[dict, dict, dict, dict]:
    """From the log up to `through`: ({week: object}, {transaction_id: submitted_at} pending, {week: decision
    count}, {week: (timed count, {percent: (seconds, position) at its rank})})."""
    zone, week_start = ZoneInfo(settings.ANALYTICS_TIME_ZONE), settings.ANALYTICS_WEEK_START
    pending: dict[str, datetime] = {}
    kinds: dict[date, Counter] = defaultdict(Counter)
    admins: dict[date, Counter] = defaultdict(Counter)
    keys: dict[date, list[tuple[int, int]]] = defaultdict(list)
    rows = (
        StoredEvent.objects.filter(position__lte=through, type__in=list(KINDS))
        .order_by("position")
        .values_list("position", "type", "stream_id", "metadata", "recorded_at")
    )
    for position, type_, stream_id, metadata, recorded_at in rows.iterator(chunk_size=5000):
        tid, kind = str(stream_id), KINDS[type_]
        if kind == rqf.SUBMITTED:
            pending[tid] = recorded_at
            continue
        if kind == rqf.APPROVAL_RECORDED:
            continue
        week = _week_of(recorded_at, zone, week_start)
        kinds[week][kind] += 1
        admins[week][actor_of(metadata)] += 1
        if kind != rqf.REVERSED and tid in pending:
            waited = recorded_at - pending.pop(tid)
            # Whole seconds from the timedelta's own fields (microseconds dropped), never negative.
            keys[week].append((max(0, waited.days * 86400 + waited.seconds), position))
    weeks = {
        week: rqf.week_object(
            week, approved=k[rqf.APPROVED], rejected=k[rqf.REJECTED], reversed=k[rqf.REVERSED],
            p50=_seconds_of(_percentile(keys[week], 50)), p90=_seconds_of(_percentile(keys[week], 90)), admins=dict(admins[week]),
        )
        for week, k in kinds.items()
    }
    marks = {week: (len(keys[week]), {p: _percentile(keys[week], p) for p in rqf.PERCENTILES}) for week in kinds}
    return weeks, pending, {week: sum(k.values()) for week, k in kinds.items()}, marks


def _seconds_of(key: tuple[int, int] | None) -> int | None:
    return None if key is None else key[0]


def verify_review_queue() -> list[str]:
    """Differences between the stored rows and the log; empty when they agree."""
    config = ReviewQueue().config()
    with consistent_read():
        checkpoint = ProjectionCheckpoint.objects.filter(name=NAME).first()
        through = checkpoint.position if checkpoint else 0
        stored_weeks = {w.week_start for w in ReviewQueueWeek.objects.all()}
        stored = week_objects(sorted(stored_weeks))
        stored_marks = {
            week: (timed, {50: _key(s50, p50), 90: _key(s90, p90)})
            for week, timed, s50, p50, s90, p90 in ReviewQueueWeek.objects.values_list(
                "week_start", "timed", "p50_seconds", "p50_position", "p90_seconds", "p90_position")
        }
        stored_pending = {str(t): at for t, at in ReviewQueuePending.objects.values_list("transaction_id", "submitted_at")}
        stored_total = ReviewQueueTotal.objects.filter(id=1).values_list("pending", flat=True).first() or 0
        decision_rows = dict(
            ReviewQueueDecision.objects.order_by().values("week_start").annotate(n=Count("position")).values_list("week_start", "n")
        )
        expected, pending, expected_rows, expected_marks = recompute(through=through)
    problems = []
    if checkpoint and checkpoint.config != config:
        problems.append(f"config: rows are for {checkpoint.config}, settings say {config}")
    no_marks = (0, {p: None for p in rqf.PERCENTILES})
    for week in sorted(set(stored) | set(expected)):
        have, want = stored.get(week, rqf.week_object(week)), expected.get(week, rqf.week_object(week))
        if have != want:
            problems.append(f"{week}: stored {_short(have)}, log says {_short(want)}")
        elif decision_rows.get(week, 0) != expected_rows.get(week, 0):
            problems.append(f"{week}: {decision_rows.get(week, 0)} decision rows, log says {expected_rows.get(week, 0)}")
        elif stored_marks.get(week, no_marks) != expected_marks.get(week, no_marks):
            # The figures agree today, but the marks the next batch moves from do not: it would go wrong.
            problems.append(f"{week}: marks (timed, {{percent: (seconds, position)}}) stored {stored_marks.get(week, no_marks)}, "
                            f"log says {expected_marks.get(week, no_marks)}")
    if stored_pending != pending:
        missing, extra = sorted(set(pending) - set(stored_pending)), sorted(set(stored_pending) - set(pending))
        changed = sorted(t for t in set(pending) & set(stored_pending) if pending[t] != stored_pending[t])
        problems.append(
            f"pending: {len(stored_pending)} stored, log says {len(pending)} "
            f"(missing {missing[:5]}, not pending {extra[:5]}, other submission time {changed[:5]})"
        )
    elif stored_total != len(pending):
        problems.append(f"pending count: {stored_total} kept, {len(pending)} pending rows and in the log")
    return problems


def _key(seconds, position) -> tuple[int, int] | None:
    return None if seconds is None or position is None else (int(seconds), int(position))


def _short(week: dict) -> str:
    admins = ",".join(f"{a['actor']}={a['decisions']}" for a in week["by_admin"])
    return (
        f"approved={week['approved']} rejected={week['rejected']} reversed={week['reversed']} "
        f"p50={week['time_to_decision_p50_seconds']} p90={week['time_to_decision_p90_seconds']} by_admin=[{admins}]"
    )


class ReviewQueue(Projection):
    """The review queue: see the module docstring."""

    name = NAME
    handles = frozenset(KINDS)

    def apply(self, events: list, *, through: int) -> list[dict]:
        # The writes and the read of the messages' rows after them: one round trip (plus the pending
        # rows' delete, when the batch decides something).
        statements, weeks, pending_changed = _batch_writes(events)
        now = timezone.now()
        shown = message_weeks(weeks, pending_changed, now)
        if not shown:
            _execute_all(statements)
            return []
        rows = _execute_all([*statements, stored_statement(shown)])
        return review_queue_messages(weeks, pending_changed, seq=through, now=now, stored=stored_from_rows(shown, rows))

    def rebuild(self, *, readers: int) -> Rebuilt:
        # One reader: this projection reads only the columns it needs, once.
        return rebuild_review_queue()

    def verify(self) -> list[str]:
        return verify_review_queue()
