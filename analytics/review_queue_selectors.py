"""Read-side queries for the review queue: zero-filled weeks, pending now, this week (the snapshot)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import connection
from django.utils import timezone

from analytics import review_queue_frames as rqf
from analytics.models import ProjectionCheckpoint, ReviewQueueAdminWeek, ReviewQueuePending, ReviewQueueTotal, ReviewQueueWeek
from analytics.selectors import current_week_start, require_config, resolve_range

# The projection's name: its checkpoint row (analytics.review_queue).
NAME = "review_queue"


@dataclass(frozen=True)
class ReviewQueueReport:
    as_of: int
    time_zone: str
    week_start_day: str
    pending: dict
    weeks: list[dict]


def review_queue_position() -> int:
    return ProjectionCheckpoint.objects.filter(name=NAME).values_list("position", flat=True).first() or 0


@dataclass(frozen=True)
class _Stored:
    as_of: int
    pending: tuple[int, datetime | None]
    weeks: dict[date, dict]


def _aware(value) -> datetime | None:
    # SQLite hands raw timestamps back as naive UTC text.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, dt_timezone.utc)
    return value


def _stored(weeks: list[date]) -> _Stored:
    """The checkpoint, pending now and these weeks' rows with their admins, in one statement.

    One statement reads one snapshot: the position, the pending figures and the weeks agree without
    a transaction, in one round trip (the projector sends it with its batch's writes: stored_statement).
    """
    with connection.cursor() as cursor:
        cursor.execute(*stored_statement(weeks))
        return stored_from_rows(weeks, cursor.fetchall())


def stored_statement(weeks: list[date]) -> tuple[str, list]:
    """_stored's statement and parameters."""
    checkpoint, pending = ProjectionCheckpoint._meta.db_table, ReviewQueuePending._meta.db_table
    total = ReviewQueueTotal._meta.db_table
    week_table, admin_table = ReviewQueueWeek._meta.db_table, ReviewQueueAdminWeek._meta.db_table
    if len(weeks) <= 60:
        # A few weeks (a batch's): by key. A range (the API's, contiguous): by range.
        where, week_params = f"week_start IN ({', '.join(['%s'] * len(weeks))})", list(weeks)
    else:
        where, week_params = "week_start >= %s AND week_start <= %s", [min(weeks), max(weeks)]
    sql = f"""
        SELECT 0, CAST(NULL AS DATE), (SELECT CAST(config AS TEXT) FROM {checkpoint} WHERE name = %s),
               (SELECT position FROM {checkpoint} WHERE name = %s), COALESCE((SELECT pending FROM {total} WHERE id = 1), 0),
               CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), (SELECT MIN(submitted_at) FROM {pending})
        UNION ALL
        SELECT 1, week_start, NULL, approved, rejected, reversed, p50_seconds, p90_seconds, NULL FROM {week_table} WHERE {where}
        UNION ALL
        SELECT 2, week_start, actor, decisions, NULL, NULL, NULL, NULL, NULL FROM {admin_table} WHERE {where}
    """
    return sql, [NAME, NAME, *week_params, *week_params]


def stored_from_rows(weeks: list[date], fetched: list[tuple]) -> _Stored:
    """_stored's result from the rows its statement returned."""
    as_of, pending_figures, rows, admins = 0, (0, None), {}, defaultdict(dict)
    for kind, week, actor, a, b, c, d, e, at in fetched:
        if kind == 0:  # the checkpoint: its settings in the actor column
            require_config(actor, projection="the review queue")
            as_of, pending_figures = int(a or 0), (int(b), _aware(at))
            continue
        week = week if isinstance(week, date) else date.fromisoformat(week)
        if kind == 1:
            rows[week] = (a, b, c, d, e)
        else:
            admins[week][actor] = int(a)
    objects = {}
    for week in weeks:
        if week not in rows:
            objects[week] = rqf.week_object(week)
            continue
        approved, rejected, reversed_, p50, p90 = rows[week]
        objects[week] = rqf.week_object(
            week, approved=approved, rejected=rejected, reversed=reversed_, p50=p50, p90=p90, admins=admins.get(week),
        )
    return _Stored(as_of=as_of, pending=pending_figures, weeks=objects)


def week_objects(weeks: list[date]) -> dict[date, dict]:
    """The stored objects of these weeks; a week without decisions is zeros and nulls."""
    return _stored(weeks).weeks if weeks else {}


def queue_now(weeks: list[date], now: datetime | None = None, *, stored: _Stored | None = None) -> tuple[int, dict, dict[date, dict]]:
    """(as_of, pending now, these weeks' objects) from one statement (or from `stored`, its result read already)."""
    stored = stored or _stored(weeks)
    count, oldest = stored.pending
    return stored.as_of, rqf.pending_object(count, oldest, now=now or timezone.now()), stored.weeks


def review_queue(*, start: date | None = None, end: date | None = None, now: datetime | None = None) -> ReviewQueueReport:
    """Every week in [start, end] (the last 12 by default), zeros included, and pending now: one statement, one snapshot."""
    weeks = resolve_range(start, end)
    as_of, pending, objects = queue_now(weeks, now)
    return ReviewQueueReport(
        as_of=as_of, time_zone=settings.ANALYTICS_TIME_ZONE, week_start_day=settings.ANALYTICS_WEEK_START,
        pending=pending, weeks=[objects[week] for week in weeks],
    )


def review_queue_snapshot(now: datetime | None = None) -> dict:
    """The dashboard snapshot's part: {"pending": ..., "this_week": {...}} (inside the caller's consistent read)."""
    now = now or timezone.now()
    week = current_week_start(now)
    _, pending, objects = queue_now([week], now)
    return {"pending": pending, "this_week": objects[week]}
