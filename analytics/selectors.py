"""Read-side queries for weekly income: zero-filled weeks and the projection's position."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from analytics.models import ProjectionCheckpoint, WeeklyIncome
from analytics.projection import CHECKPOINT
from core import eventstore
from core.db import consistent_read
from core.money import format_minor_units

DEFAULT_WEEKS = 12
MAX_WEEKS = 520


@dataclass(frozen=True)
class WeeklyIncomeReport:
    as_of: int
    time_zone: str
    week_start_day: str
    rows: list[dict]


def week_start_of(day: date) -> date:
    offset = day.weekday() if settings.ANALYTICS_WEEK_START == "monday" else (day.weekday() + 1) % 7
    return day - timedelta(days=offset)


def current_week_start(now: datetime | None = None) -> date:
    now = now or timezone.now()
    return week_start_of(now.astimezone(ZoneInfo(settings.ANALYTICS_TIME_ZONE)).date())


def default_range(now: datetime | None = None) -> tuple[date, date]:
    end = current_week_start(now)
    return end - timedelta(weeks=DEFAULT_WEEKS - 1), end


def projection_position() -> int:
    return ProjectionCheckpoint.objects.filter(name=CHECKPOINT).values_list("position", flat=True).first() or 0


def projection_lag() -> dict:
    """How far the weekly income projection is behind the event log."""
    last = eventstore.last_position()
    applied = projection_position()
    return {"weekly_income": {"applied": applied, "last_event": last, "behind": max(0, last - applied)}}


def weekly_income(*, start: date | None = None, end: date | None = None, currency: str | None = None) -> WeeklyIncomeReport:
    """Weekly totals for every week in [start, end] and every currency shown, zeros included."""
    span = timedelta(weeks=DEFAULT_WEEKS - 1)
    if start is None and end is None:
        start, end = default_range()
    elif start is None:
        end = week_start_of(end)
        start = end - span
    elif end is None:
        start = week_start_of(start)
        end = start + span
    else:
        start, end = week_start_of(start), week_start_of(end)
    weeks = [start + timedelta(weeks=i) for i in range((end - start).days // 7 + 1)]

    with consistent_read():
        as_of = projection_position()
        stored = WeeklyIncome.objects.filter(week_start__gte=start, week_start__lte=end)
        if currency:
            stored = stored.filter(currency=currency)
            currencies = [currency]
        else:
            currencies = sorted(WeeklyIncome.objects.order_by().values_list("currency", flat=True).distinct())
        found = {(r.week_start, r.currency): r for r in stored}

    rows = []
    for week in weeks:
        for cur in currencies:
            row = found.get((week, cur))
            rows.append(
                {
                    "week_start": week.isoformat(),
                    "currency": cur,
                    "total": format_minor_units(row.total_minor if row else 0, cur),
                    "count": row.count if row else 0,
                }
            )
    return WeeklyIncomeReport(
        as_of=as_of,
        time_zone=settings.ANALYTICS_TIME_ZONE,
        week_start_day=settings.ANALYTICS_WEEK_START,
        rows=rows,
    )
