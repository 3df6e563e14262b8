"""Read-side queries for weekly income (zero-filled weeks, time travel, the summary) and the projections' positions."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from analytics import registry
from analytics.models import ProjectionCheckpoint, WeeklyIncome, WeeklyIncomeHistory
from analytics.projection import CHECKPOINT, current_config
from core import eventstore
from core.errors import DomainError
from core.db import consistent_read
from core.models import StoredEvent
from core.money import currency_exponent, format_minor_units

DEFAULT_WEEKS = 12
MAX_WEEKS = 520


@dataclass(frozen=True)
class WeeklyIncomeReport:
    as_of: int
    time_zone: str
    week_start_day: str
    rows: list[dict]
    # The checkpoint row's version (its xmin) the rows were read at; None when unknown (no row, not PostgreSQL).
    version: str | None = None


class ProjectionRebuildPending(DomainError):
    """The stored rows were cut for another time zone or week start than the settings say: until a rebuild swaps
    in rows for these settings, any answer would put the old weeks under the new labels."""

    status_code = 503
    code = "projection_rebuild_pending"
    title = "Projection being recomputed"
    retry_after = 5


def require_config(stored: str | None, *, projection: str = "weekly income") -> None:
    """Refuse to answer from rows computed for other settings (None: nothing projected yet, nothing to cut wrongly)."""
    if stored is not None and stored != current_config():
        raise ProjectionRebuildPending(
            f"{projection} was computed for {stored!r} but this server is configured for {current_config()!r}; "
            "it answers again once `manage.py rebuild_projections` has recomputed it (or the settings match the rows)"
        )


def week_start_of(day: date) -> date:
    offset = day.weekday() if settings.ANALYTICS_WEEK_START == "monday" else (day.weekday() + 1) % 7
    return day - timedelta(days=offset)


def current_week_start(now: datetime | None = None) -> date:
    now = now or timezone.now()
    return week_start_of(now.astimezone(ZoneInfo(settings.ANALYTICS_TIME_ZONE)).date())


def default_range(now: datetime | None = None) -> tuple[date, date]:
    end = current_week_start(now)
    return end - timedelta(weeks=DEFAULT_WEEKS - 1), end


def projection_position(name: str | None = None) -> int:
    """How far the projections have applied the log: one projection's checkpoint, or with no name the
    lowest over every registered projection (the position through which every read model is current).

    Which one a caller wants: readiness, lag and the catch-up's empty batch speak for every read
    model, so they take the lowest; a read of one projection's rows (weekly income's `as_of`,
    `min_position`, `at`) takes that projection's own. The projector moves them together, so
    they differ only while one catches up (a new projection) or after one was rebuilt (ahead).
    """
    names = [name] if name else registry.names()
    positions = dict(ProjectionCheckpoint.objects.filter(name__in=names).values_list("name", "position"))
    # A projection without a row has applied nothing yet.
    return min(positions.get(n, 0) for n in names)


def projection_lag(now: datetime | None = None) -> dict:
    """How far each registered projection is behind the event log, in events and in seconds.

    `seconds` is the age of the oldest event not yet applied (0 when caught up): a
    projector that is stuck shows a growing number here even when no new events come.
    """
    names = registry.names()
    positions = dict(ProjectionCheckpoint.objects.filter(name__in=names).values_list("name", "position"))
    last = eventstore.last_position()
    now = now or timezone.now()
    ages: dict[int, float] = {}
    lag = {}
    for name in names:
        applied = positions.get(name, 0)
        if applied not in ages:
            oldest = StoredEvent.objects.filter(position__gt=applied).order_by("position").values_list("recorded_at", flat=True).first()
            ages[applied] = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
        lag[name] = {"applied": applied, "last_event": last, "behind": max(0, last - applied), "seconds": round(ages[applied], 3)}
    return lag


def resolve_range(start: date | None, end: date | None) -> list[date]:
    """The week starts from `start` to `end`; 12 weeks when one or both are missing."""
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
    return [start + timedelta(weeks=i) for i in range((end - start).days // 7 + 1)]


def minor_units_text(minor: int, exponent: int) -> str:
    """`format_minor_units` for a known exponent, by integer arithmetic: 1250, 2 -> "12.50" (the hot loop of every report)."""
    if exponent == 0:
        return str(minor)
    units, cents = divmod(-minor if minor < 0 else minor, 10**exponent)
    return f"{'-' if minor < 0 else ''}{units}.{cents:0{exponent}d}"


# A bucket as the queries below return it: (total = net, count, gross, reversed, reversed_count), minor units.
Sums = tuple[int, int, int, int, int]
_EMPTY: Sums = (0, 0, 0, 0, 0)


def _sums(total, count, gross, reversed_, reversed_count) -> Sums:
    return int(total), int(count), int(gross), int(reversed_), int(reversed_count)


def _report(as_of: int, weeks: list[date], currencies: list[str], found: dict[tuple, Sums], version: str | None = None) -> WeeklyIncomeReport:
    rows = []
    # Zero-filled weeks are most rows of a long range: format each currency's zero once.
    zero = {cur: format_minor_units(0, cur) for cur in currencies}
    exponents = {cur: currency_exponent(cur) for cur in currencies}
    for week in weeks:
        week_text = week.isoformat()
        for cur in currencies:
            total, count, gross, reversed_, reversed_count = found.get((week, cur), _EMPTY)
            exponent, nothing = exponents[cur], zero[cur]
            net = minor_units_text(total, exponent) if total else nothing
            rows.append({
                "week_start": week_text, "currency": cur, "total": net, "count": count,
                "gross": minor_units_text(gross, exponent) if gross else nothing,
                "reversed": minor_units_text(reversed_, exponent) if reversed_ else nothing,
                "reversed_count": reversed_count, "net": net,
            })
    return WeeklyIncomeReport(
        as_of=as_of, time_zone=settings.ANALYTICS_TIME_ZONE, week_start_day=settings.ANALYTICS_WEEK_START, rows=rows,
        version=version,
    )


def weekly_income(*, start: date | None = None, end: date | None = None, currency: str | None = None) -> WeeklyIncomeReport:
    """Weekly totals for every week in [start, end] and every currency shown, zeros included."""
    weeks = resolve_range(start, end)
    as_of, version, currencies, found = _weekly_income_rows(weeks[0], weeks[-1], currency)
    return _report(as_of, weeks, [currency] if currency else currencies, found, version)


def _weekly_income_rows(first: date, last: date, currency: str | None) -> tuple[int, str | None, list[str], dict[tuple, Sums]]:
    """The checkpoint (position and version), every currency with income, and the stored rows in range: one statement.

    One statement reads one snapshot, so the position and the rows it covers agree without
    a transaction (the hot read of every dashboard: 1 round trip instead of 6).
    """
    rows_table, checkpoint_table = WeeklyIncome._meta.db_table, ProjectionCheckpoint._meta.db_table
    in_currency = "AND currency = %s" if currency else ""
    version = _VERSION_SQL if connection.vendor == "postgresql" else "CAST(NULL AS BIGINT)"
    sql = f"""
        SELECT 0, CAST(NULL AS DATE), CAST(config AS TEXT), CAST(position AS NUMERIC), {version},
               CAST(NULL AS NUMERIC), CAST(NULL AS NUMERIC), CAST(NULL AS BIGINT)
        FROM {checkpoint_table} WHERE name = %s
        UNION ALL
        SELECT DISTINCT 1, CAST(NULL AS DATE), currency, CAST(NULL AS NUMERIC), CAST(NULL AS BIGINT),
               CAST(NULL AS NUMERIC), CAST(NULL AS NUMERIC), CAST(NULL AS BIGINT) FROM {rows_table}
        UNION ALL
        SELECT 2, week_start, currency, total_minor, count, gross_minor, reversed_minor, reversed_count FROM {rows_table}
        WHERE week_start >= %s AND week_start <= %s {in_currency}
    """
    params = [CHECKPOINT, first, last] + ([currency] if currency else [])
    as_of, version, currencies, found = 0, None, [], {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for kind, week, cur, total, *rest in cursor.fetchall():
            if kind == 0:  # the checkpoint: its settings in the currency column
                require_config(cur)
                as_of, version = int(total), _version(rest[0])
            elif kind == 1:
                currencies.append(cur)
            else:
                # SQLite hands dates back as text.
                week = week if isinstance(week, date) else date.fromisoformat(week)
                found[(week, cur)] = _sums(total, *rest)
    return as_of, version, sorted(currencies), found


# The checkpoint row's xmin: the transaction that last wrote it. Every projected batch and every
# rebuild (which may rewrite rows without moving the position) updates the row, so (position,
# xmin) names one state of the rows and their history; xid8 is not needed, the position is there too.
_VERSION_SQL = "CAST(CAST(xmin AS TEXT) AS BIGINT)"


def _version(value) -> str | None:
    return None if value is None else str(value)


def checkpoint_state() -> tuple[int, str | None]:
    """(weekly income's position, its checkpoint version) in one cheap statement; version None when not known."""
    if connection.vendor != "postgresql":
        return projection_position(CHECKPOINT), None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT position, {_VERSION_SQL} FROM {ProjectionCheckpoint._meta.db_table} WHERE name = %s", [CHECKPOINT])
        row = cursor.fetchone()
    return (0, None) if row is None else (int(row[0]), _version(row[1]))


def log_and_checkpoint() -> tuple[int, int, str | None]:
    """(the log's last position, the projection's position, its checkpoint version) in one round trip: what
    `min_position` and `at` check first."""
    events, checkpoint = StoredEvent._meta.db_table, ProjectionCheckpoint._meta.db_table
    version = _VERSION_SQL if connection.vendor == "postgresql" else "NULL"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT position FROM {events} ORDER BY position DESC LIMIT 1), "
            f"(SELECT position FROM {checkpoint} WHERE name = %s), "
            f"(SELECT {version} FROM {checkpoint} WHERE name = %s)",
            [CHECKPOINT, CHECKPOINT],
        )
        last, applied, version = cursor.fetchone()
    return int(last or 0), int(applied or 0), _version(version)


def weekly_income_at(*, position: int, start: date | None = None, end: date | None = None, currency: str | None = None) -> WeeklyIncomeReport:
    """Time travel: weekly income as it stood right after event `position`.

    Read from the buckets' history, one index lookup per bucket in range: the cost
    depends on the weeks asked for, not on the length of the log. The caller makes
    sure the projection has applied `position` (else the history is incomplete).
    """
    weeks = resolve_range(start, end)
    if connection.vendor == "postgresql":
        _, currencies, found = _history_rows(position, weeks[0], weeks[-1], currency)
    else:
        currencies, found = _history_rows_portable(position, weeks[0], weeks[-1], currency)
    return _report(position, weeks, [currency] if currency else currencies, found)


@dataclass(frozen=True)
class CheckedTimeTravel:
    last: int  # the log's last position
    applied: int  # weekly income's checkpoint
    version: str | None  # its checkpoint row's version
    report: WeeklyIncomeReport | None  # None unless the projection has applied the position asked for


def weekly_income_at_checked(*, position: int, start: date | None = None, end: date | None = None,
                             currency: str | None = None) -> CheckedTimeTravel:
    """weekly_income_at with its precondition read in the same statement: the log's end and the checkpoint, and the
    history only when the checkpoint has reached `position` (one round trip instead of two on PostgreSQL)."""
    weeks = resolve_range(start, end)
    if connection.vendor != "postgresql":
        require_config(ProjectionCheckpoint.objects.filter(name=CHECKPOINT).values_list("config", flat=True).first())
        last, applied, version = log_and_checkpoint()
        report = weekly_income_at(position=position, start=weeks[0], end=weeks[-1], currency=currency) if position <= applied else None
        return CheckedTimeTravel(last, applied, version, report)
    state, currencies, found = _history_rows(position, weeks[0], weeks[-1], currency, checked=True)
    last, applied, version = state
    report = _report(position, weeks, [currency] if currency else currencies, found, version) if position <= applied else None
    return CheckedTimeTravel(last, applied, version, report)


def _history_rows(position: int, first: date, last: date, currency: str | None, *, checked: bool = False,
                  ) -> tuple[tuple[int, int, str | None] | None, list[str], dict[tuple, Sums]]:
    """Each bucket's latest history row at `position`, and the currencies with income by then: one statement.

    One statement reads one snapshot (no transaction, one round trip instead of seven). Per bucket
    in range, one probe of the (week_start, currency, position) index, backwards from `position`;
    per currency, one probe of (currency, position) for its first position. Not EXISTS (... position
    <= P): for some P the planner answered that with a bitmap scan of every entry up to P (tens of
    thousands per currency on a 1M-event log, 15 ms warm and far more on cold pages). `checked` adds (the log's last position, the
    checkpoint's position, its version) and reads the history only if the checkpoint has reached
    `position` (a one-time filter: nothing is probed otherwise).
    """
    rows_table, history_table = WeeklyIncome._meta.db_table, WeeklyIncomeHistory._meta.db_table
    events, checkpoint = StoredEvent._meta.db_table, ProjectionCheckpoint._meta.db_table
    in_currency = "AND w.currency = %s" if currency else ""
    state, gate = "", ""
    if checked:
        state = f"""
        WITH state AS MATERIALIZED (
            SELECT (SELECT position FROM {events} ORDER BY position DESC LIMIT 1) AS last_position,
                   (SELECT position FROM {checkpoint} WHERE name = %s) AS applied,
                   (SELECT {_VERSION_SQL} FROM {checkpoint} WHERE name = %s) AS version,
                   (SELECT config FROM {checkpoint} WHERE name = %s) AS config
        )"""
        gate = "AND %s <= (SELECT applied FROM state)"
    sql = f"""{state}
        SELECT w.week_start, w.currency, h.total_minor, h.count, h.gross_minor, h.reversed_minor, h.reversed_count
        FROM {rows_table} w
        CROSS JOIN LATERAL (
            SELECT total_minor, count, gross_minor, reversed_minor, reversed_count FROM {history_table}
            WHERE week_start = w.week_start AND currency = w.currency AND position <= %s
            ORDER BY position DESC LIMIT 1
        ) h
        WHERE w.week_start >= %s AND w.week_start <= %s {in_currency} {gate}
        UNION ALL
        SELECT NULL, c.currency, NULL, NULL, NULL, NULL, NULL FROM (SELECT DISTINCT currency FROM {rows_table}) c
        WHERE (SELECT min(h.position) FROM {history_table} h WHERE h.currency = c.currency) <= %s {gate}
    """
    params = [position, first, last] + ([currency] if currency else []) + ([position] if checked else []) + [position]
    if checked:
        # The state row: no week, the settings in the currency column, (last, version, applied) in the total, count
        # and gross columns (a currency row has no total).
        sql += ("UNION ALL SELECT NULL, config, CAST(COALESCE(last_position, 0) AS NUMERIC), version, CAST(applied AS NUMERIC), "
                "NULL, NULL FROM state")
        params = [CHECKPOINT, CHECKPOINT, CHECKPOINT] + params + [position]
    checked_state, currencies, found = None, [], {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for week, cur, total, *rest in cursor.fetchall():
            if week is None and total is not None:
                require_config(cur)
                checked_state = (int(total), int(rest[1] or 0), _version(rest[0]))
            elif week is None:
                currencies.append(cur)
            else:
                found[(week, cur)] = _sums(total, *rest)
    return checked_state, sorted(currencies), found


def _history_rows_portable(position: int, first: date, last: date, currency: str | None) -> tuple[list[str], dict[tuple, Sums]]:
    """_history_rows for SQLite (no LATERAL): the same rows through the ORM, in one read transaction."""
    latest = WeeklyIncomeHistory.objects.filter(
        week_start=OuterRef("week_start"), currency=OuterRef("currency"), position__lte=position
    ).order_by("-position")
    with consistent_read():
        buckets = WeeklyIncome.objects.filter(week_start__gte=first, week_start__lte=last)
        if currency:
            buckets = buckets.filter(currency=currency)
        fields = ("total_minor", "count", "gross_minor", "reversed_minor", "reversed_count")
        rows = buckets.annotate(
            **{f"{name}_then": Subquery(latest.values(name)[:1]) for name in fields}
        ).values_list("week_start", "currency", *(f"{name}_then" for name in fields))
        found = {(ws, cur): _sums(*sums) for ws, cur, *sums in rows if sums[0] is not None}
        # A currency is shown once it had income at `position`, in any week: one index probe each.
        known = WeeklyIncome.objects.order_by().values_list("currency", flat=True).distinct()
        currencies = sorted(
            cur for cur in known if WeeklyIncomeHistory.objects.filter(currency=cur, position__lte=position).exists()
        )
    return currencies, found


def weekly_summary(*, now: datetime | None = None) -> list[dict]:
    """Per currency: this week against last week, and the last 4 weeks against the 4 before (net, with gross and reversed)."""
    this_week = current_week_start(now)
    weeks = [this_week - timedelta(weeks=i) for i in range(8)]
    sums: dict[str, dict[date, tuple[int, int, int]]] = {}
    for row in WeeklyIncome.objects.filter(week_start__gte=weeks[-1], week_start__lte=this_week):
        sums.setdefault(row.currency, {})[row.week_start] = (int(row.total_minor), int(row.gross_minor), int(row.reversed_minor))
    for cur in WeeklyIncome.objects.order_by().values_list("currency", flat=True).distinct():
        sums.setdefault(cur, {})
    summary = []
    for cur in sorted(sums):
        by_week = sums[cur]

        def period(span: list[date]) -> tuple[int, int, int]:
            parts = [by_week.get(w, (0, 0, 0)) for w in span]
            return tuple(sum(p[i] for p in parts) for i in range(3))

        def money(values: tuple[int, int, int]) -> dict:
            net, gross, reversed_ = values
            return {"total": format_minor_units(net, cur), "gross": format_minor_units(gross, cur),
                    "reversed": format_minor_units(reversed_, cur)}

        now_sums, before_sums = period(weeks[:1]), period(weeks[1:2])
        last4, prev4 = period(weeks[:4]), period(weeks[4:])
        summary.append(
            {
                "currency": cur,
                "this_week": {"week_start": weeks[0].isoformat(), **money(now_sums)},
                "last_week": {"week_start": weeks[1].isoformat(), **money(before_sums)},
                "change_percent": percent_change(now_sums[0], before_sums[0]),
                "last_4_weeks": {"from": weeks[3].isoformat(), **money(last4)},
                "previous_4_weeks": {"from": weeks[7].isoformat(), **money(prev4)},
                "change_percent_4_weeks": percent_change(last4[0], prev4[0]),
            }
        )
    return summary


def percent_change(current: int, previous: int) -> str | None:
    """Exact percent change of the net with one decimal ("12.5"); None when there is nothing to compare with.

    Measured against the size of the earlier value, so a move up is positive even from a
    negative week (reversals can outweigh income): -10.00 -> 5.00 is +150.0, not -150.0.
    """
    if previous == 0:
        return None
    change = (Decimal(current - previous) * 100 / abs(Decimal(previous))).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN)
    return str(change)
