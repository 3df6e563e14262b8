"""Check the weekly income projection against the log with arithmetic of its own: Decimal and zoneinfo, no pandas.

Sharing the projector's code would make a wrong sum agree with itself; this module
re-derives every bucket from the approved events' decimal strings, in one consistent
snapshot, without taking the projector's lock (a long verify never stalls projection).
"""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal, localcontext
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import OuterRef, Subquery

from analytics.models import ProjectionCheckpoint, WeeklyIncome, WeeklyIncomeHistory
from analytics.projection import CHECKPOINT, current_config
from core.db import consistent_read
from core.models import StoredEvent
from core.money import CURRENCY_EXPONENTS
from transactions import events as txn_events

# Far more digits than any sum of 2^63 amounts below 10^19 minor units needs.
_DIGITS = 80


def week_of(occurred_at: str, *, time_zone: ZoneInfo, week_start: str) -> date:
    """The local date on which the week holding `occurred_at` starts (datetime arithmetic, not pandas)."""
    local_day = datetime.fromisoformat(occurred_at).astimezone(time_zone).date()
    offset = local_day.weekday() if week_start == "monday" else (local_day.weekday() + 1) % 7
    return local_day - timedelta(days=offset)


def _in_minor(amount: Decimal, currency: str) -> Decimal:
    return amount.scaleb(CURRENCY_EXPONENTS[currency])


def recompute(*, through: int) -> tuple[dict[tuple[date, str], tuple[Decimal, int]], list[str]]:
    """(total in minor units, count) per bucket from approved events up to `through`, and the events it could not place."""
    zone = ZoneInfo(settings.ANALYTICS_TIME_ZONE)
    sums: dict[tuple[date, str], list] = defaultdict(lambda: [Decimal(0), 0])
    unplaceable = []
    approved = (
        StoredEvent.objects.filter(type=txn_events.APPROVED, position__lte=through)
        .order_by("position")
        .values_list("position", "data")
    )
    with localcontext(prec=_DIGITS):
        for position, data in approved.iterator(chunk_size=5000):
            try:
                week = week_of(data["occurred_at"], time_zone=zone, week_start=settings.ANALYTICS_WEEK_START)
            except (OverflowError, ValueError) as exc:
                unplaceable.append(f"event {position}: occurred_at {data['occurred_at']!r} has no week here ({exc})")
                continue
            bucket = sums[(week, data["currency"])]
            bucket[0] += _in_minor(Decimal(data["amount"]), data["currency"])
            bucket[1] += 1
    return {key: (total, count) for key, (total, count) in sums.items()}, unplaceable


def _latest_history() -> dict[tuple[date, str], tuple[int, int]]:
    latest = WeeklyIncomeHistory.objects.filter(week_start=OuterRef("week_start"), currency=OuterRef("currency")).order_by("-position")
    rows = WeeklyIncome.objects.annotate(
        history_total=Subquery(latest.values("total_minor")[:1]), history_count=Subquery(latest.values("count")[:1])
    ).values_list("week_start", "currency", "history_total", "history_count")
    return {(ws, cur): (int(total) if total is not None else None, count) for ws, cur, total, count in rows}


def _money(minor, currency: str) -> str:
    with localcontext(prec=_DIGITS):
        exponent = CURRENCY_EXPONENTS[currency]
        return str(Decimal(minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent)))


def verify_weekly_income() -> list[str]:
    """Differences between the stored rows (and their history) and the log; empty when they agree."""
    with consistent_read():
        checkpoint = ProjectionCheckpoint.objects.filter(name=CHECKPOINT).first()
        through = checkpoint.position if checkpoint else 0
        stored = {(r.week_start, r.currency): (Decimal(r.total_minor), r.count) for r in WeeklyIncome.objects.all()}
        history = _latest_history()
        expected, problems = recompute(through=through)
    if checkpoint and checkpoint.config != current_config():
        problems.insert(0, f"config: rows are for {checkpoint.config}, settings say {current_config()}")
    for key in sorted(set(stored) | set(expected)):
        have, want = stored.get(key, (Decimal(0), 0)), expected.get(key, (Decimal(0), 0))
        week, currency = key
        if have != want:
            problems.append(
                f"{week} {currency}: stored total={_money(have[0], currency)} count={have[1]}, "
                f"log says total={_money(want[0], currency)} count={want[1]}"
            )
        elif key in stored and history.get(key) != (int(have[0]), have[1]):
            total, count = history.get(key, (None, None))
            shown = "none" if total is None else f"total={_money(total, currency)} count={count}"
            problems.append(f"{week} {currency}: history ends at {shown}, stored total={_money(have[0], currency)} count={have[1]}")
    return problems
