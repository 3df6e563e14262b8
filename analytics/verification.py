"""Check the weekly income projection against the log with arithmetic of its own: Decimal and zoneinfo, no pandas.

Sharing the projector's code would make a wrong sum agree with itself; this module
re-derives every bucket from the approved and reversed events' decimal strings (an
approval in its occurred_at week, a reversal in the week it was recorded), in one
consistent snapshot, without taking the projector's lock (a long verify never stalls
projection).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
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
# A history that differs everywhere would print millions of lines: the first ones say enough.
MAX_HISTORY_PROBLEMS = 20


def week_of(occurred_at: str | datetime, *, time_zone: ZoneInfo, week_start: str) -> date:
    """The local date on which the week holding `occurred_at` starts (datetime arithmetic, not pandas)."""
    instant = occurred_at if isinstance(occurred_at, datetime) else datetime.fromisoformat(occurred_at)
    local_day = instant.astimezone(time_zone).date()
    offset = local_day.weekday() if week_start == "monday" else (local_day.weekday() + 1) % 7
    return local_day - timedelta(days=offset)


def _in_minor(amount: Decimal, currency: str) -> Decimal:
    return amount.scaleb(CURRENCY_EXPONENTS[currency])


@dataclass
class Bucket:
    """One (week, currency) in minor units; `total` is the net."""

    gross: Decimal = Decimal(0)
    count: int = 0
    reversed: Decimal = Decimal(0)
    reversed_count: int = 0
    last_position: int = 0

    @property
    def total(self) -> Decimal:
        return self.gross - self.reversed

    def values(self) -> tuple:
        return (self.total, self.count, self.gross, self.reversed, self.reversed_count)


def recompute(*, through: int, history: Iterator[tuple] | None = None) -> tuple[dict[tuple[date, str], Bucket], list[str]]:
    """Every bucket from approved and reversed events up to `through`, and the events it could not place.

    With `history` (every history row as (position, week_start, currency, *_SUMS), in position
    order), each row is also compared with its bucket's sums right after its event, in the same
    walk; what differs is added to the problems (the first MAX_HISTORY_PROBLEMS of them).
    """
    zone = ZoneInfo(settings.ANALYTICS_TIME_ZONE)
    sums: dict[tuple[date, str], Bucket] = defaultdict(Bucket)
    unplaceable: list[str] = []
    differences: list[str] = []
    rows = iter(history) if history is not None else None
    row = next(rows, None) if rows is not None else None

    def differ(text: str) -> None:
        if len(differences) < MAX_HISTORY_PROBLEMS:
            differences.append(text)

    events = (
        StoredEvent.objects.filter(type__in=[txn_events.APPROVED, txn_events.REVERSED], position__lte=through)
        .order_by("position")
        .values_list("position", "type", "data", "recorded_at")
    )
    with localcontext(prec=_DIGITS):
        for position, kind, data, recorded_at in events.iterator(chunk_size=5000):
            reversal = kind == txn_events.REVERSED
            # A reversal counts in the week it happened; an approval in the week the money moved.
            instant = recorded_at if reversal else data["occurred_at"]
            try:
                week = week_of(instant, time_zone=zone, week_start=settings.ANALYTICS_WEEK_START)
            except (OverflowError, ValueError) as exc:
                unplaceable.append(f"event {position}: {'recorded_at' if reversal else 'occurred_at'} {str(instant)!r} has no week here ({exc})")
                continue
            key = (week, data["currency"])
            bucket = sums[key]
            bucket.last_position = position
            amount = _in_minor(Decimal(data["amount"]), data["currency"])
            if reversal:
                bucket.reversed += amount
                bucket.reversed_count += 1
            else:
                bucket.gross += amount
                bucket.count += 1
            if rows is None:
                continue
            while row is not None and row[0] < position:
                differ(f"history row at {row[0]} ({row[1]} {row[2]}): no approval or reversal of that bucket there")
                row = next(rows, None)
            want = bucket.values()
            if row is None or row[0] != position:
                differ(f"history of {week} {data['currency']}: no row at {position}, "
                       f"the log says {_shown(want, data['currency'], full=True)}")
                continue
            have = (row[1], row[2], *(int(v) for v in row[3:]))
            if have[:2] != key or tuple(Decimal(v) for v in have[2:]) != tuple(Decimal(v) for v in want):
                differ(f"history row at {position}: {have[0]} {have[1]} {_shown(have[2:], have[1], full=True)}, "
                       f"the log says {week} {data['currency']} {_shown(want, data['currency'], full=True)}")
            row = next(rows, None)
    if rows is not None:
        while row is not None:
            differ(f"history row at {row[0]} ({row[1]} {row[2]}): no approval or reversal of that bucket there")
            row = next(rows, None)
    return dict(sums), unplaceable + differences


_SUMS = ("total_minor", "count", "gross_minor", "reversed_minor", "reversed_count")


def _latest_history() -> dict[tuple[date, str], tuple | None]:
    latest = WeeklyIncomeHistory.objects.filter(week_start=OuterRef("week_start"), currency=OuterRef("currency")).order_by("-position")
    rows = WeeklyIncome.objects.annotate(
        **{f"history_{name}": Subquery(latest.values(name)[:1]) for name in _SUMS}
    ).values_list("week_start", "currency", *(f"history_{name}" for name in _SUMS))
    return {(ws, cur): (None if values[0] is None else tuple(int(v) for v in values)) for ws, cur, *values in rows}


def _money(minor, currency: str) -> str:
    with localcontext(prec=_DIGITS):
        exponent = CURRENCY_EXPONENTS[currency]
        return str(Decimal(minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent)))


def _plain(values: tuple) -> bool:
    """Nothing reversed: the row reads as it did before reversals existed (total and count say it all)."""
    total, _, gross, reversed_, reversed_count = values
    return gross == total and not reversed_ and not reversed_count


def _shown(values: tuple, currency: str, *, full: bool) -> str:
    total, count, gross, reversed_, reversed_count = values
    text = f"total={_money(total, currency)} count={count}"
    if full:
        text += f" gross={_money(gross, currency)} reversed={_money(reversed_, currency)} reversed_count={reversed_count}"
    return text


def verify_weekly_income() -> list[str]:
    """Differences between the stored rows (and their history) and the log; empty when they agree."""
    with consistent_read():
        checkpoint = ProjectionCheckpoint.objects.filter(name=CHECKPOINT).first()
        through = checkpoint.position if checkpoint else 0
        rows = list(WeeklyIncome.objects.all())
        stored = {(r.week_start, r.currency): tuple(int(getattr(r, name)) for name in _SUMS) for r in rows}
        last_positions = {(r.week_start, r.currency): r.last_position for r in rows}
        history = _latest_history()
        # Every history row (what `?at=` reads), in the same walk of the log: one sort of the history.
        every_row = WeeklyIncomeHistory.objects.order_by("position").values_list("position", "week_start", "currency", *_SUMS)
        expected, problems = recompute(through=through, history=every_row.iterator(chunk_size=5000))
    if checkpoint and checkpoint.config != current_config():
        problems.insert(0, f"config: rows are for {checkpoint.config}, settings say {current_config()}")
    empty = Bucket().values()
    for key in sorted(set(stored) | set(expected)):
        have = stored.get(key, empty)
        want = expected[key].values() if key in expected else empty
        week, currency = key
        if tuple(Decimal(v) for v in have) != tuple(Decimal(v) for v in want):
            # Every column once either side has a reversal in it (a tampered `reversed` column shows).
            full = not (_plain(have) and _plain(want))
            problems.append(f"{week} {currency}: stored {_shown(have, currency, full=full)}, log says {_shown(want, currency, full=full)}")
        elif key in expected and last_positions.get(key) != expected[key].last_position:
            problems.append(f"{week} {currency}: stored last_position {last_positions.get(key)}, "
                            f"the log's last event of that bucket is at {expected[key].last_position}")
        elif key in stored and history.get(key) != have:
            ended = history.get(key)
            full = not _plain(have) or (ended is not None and not _plain(ended))
            shown = "none" if ended is None else _shown(ended, currency, full=full)
            problems.append(f"{week} {currency}: history ends at {shown}, stored {_shown(have, currency, full=full)}")
    return problems
