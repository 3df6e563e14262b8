"""Read-side queries for the review queue: zero-filled weeks, pending now, this week (the snapshot)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone

from analytics import review_queue_frames as rqf
from analytics.models import ProjectionCheckpoint, ReviewQueueAdminWeek, ReviewQueuePending, ReviewQueueWeek
from analytics.selectors import current_week_start, resolve_range
from core.db import consistent_read

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


def week_objects(weeks: list[date]) -> dict[date, dict]:
    """The stored objects of these weeks; a week without decisions is zeros and nulls. Two queries."""
    if not weeks:
        return {}
    # A few weeks (a batch's): by key; a range (the API's, contiguous): by range.
    where = {"week_start__in": weeks} if len(weeks) <= 60 else {"week_start__gte": min(weeks), "week_start__lte": max(weeks)}
    found = {w.week_start: w for w in ReviewQueueWeek.objects.filter(**where)}
    admins: dict[date, dict[str, int]] = defaultdict(dict)
    for week, actor, n in ReviewQueueAdminWeek.objects.filter(**where).values_list("week_start", "actor", "decisions"):
        admins[week][actor] = n
    objects = {}
    for week in weeks:
        row = found.get(week)
        objects[week] = rqf.week_object(week) if row is None else rqf.week_object(
            week, approved=row.approved, rejected=row.rejected, reversed=row.reversed,
            p50=row.p50_seconds, p90=row.p90_seconds, admins=admins.get(week),
        )
    return objects


def pending_now(now: datetime | None = None) -> dict:
    """Pending count and the oldest submission; its age is computed here, at read time. One query."""
    found = ReviewQueuePending.objects.aggregate(count=Count("pk"), oldest=Min("submitted_at"))
    return rqf.pending_object(found["count"], found["oldest"], now=now or timezone.now())


def review_queue(*, start: date | None = None, end: date | None = None, now: datetime | None = None) -> ReviewQueueReport:
    """Every week in [start, end] (the last 12 by default), zeros included, and pending now; one consistent read."""
    weeks = resolve_range(start, end)
    now = now or timezone.now()
    with consistent_read():
        as_of = review_queue_position()
        objects = week_objects(weeks)
        pending = pending_now(now)
    return ReviewQueueReport(
        as_of=as_of, time_zone=settings.ANALYTICS_TIME_ZONE, week_start_day=settings.ANALYTICS_WEEK_START,
        pending=pending, weeks=[objects[week] for week in weeks],
    )


def review_queue_snapshot(now: datetime | None = None) -> dict:
    """The dashboard snapshot's part: {"pending": ..., "this_week": {...}} (inside the caller's consistent read)."""
    now = now or timezone.now()
    week = current_week_start(now)
    return {"pending": pending_now(now), "this_week": week_objects([week])[week]}
