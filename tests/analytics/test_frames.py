"""Weekly totals in pandas: local weeks (DST, Sunday starts, ISO week 53) on integer minor units."""
from datetime import date

import pandas as pd
import pytest

from analytics.frames import weekly_running_totals, weekly_totals


def records(*rows):
    return pd.DataFrame(rows, columns=["position", "occurred_at", "currency", "amount_minor"])


def as_dicts(frame):
    """The columns approvals alone fill (the reversal columns have tests of their own below)."""
    return [
        {"week_start": ws, "currency": cur, "total_minor": int(total), "count": int(count), "last_position": int(last)}
        for ws, cur, total, count, last in frame[["week_start", "currency", "total_minor", "count", "last_position"]].itertuples(index=False, name=None)
    ]


def test_it_sums_minor_units_per_week_and_currency():
    frame = weekly_totals(
        records(
            (1, "2026-11-16T10:00:00+00:00", "EUR", 1250),
            (2, "2026-11-22T23:59:59+00:00", "EUR", 50),
            (3, "2026-11-23T00:00:00+00:00", "EUR", 1),
            (4, "2026-11-17T08:00:00+00:00", "JPY", 1200),
        ),
        time_zone="UTC",
        week_start="monday",
    )
    assert as_dicts(frame) == [
        {"week_start": date(2026, 11, 16), "currency": "EUR", "total_minor": 1300, "count": 2, "last_position": 2},
        {"week_start": date(2026, 11, 16), "currency": "JPY", "total_minor": 1200, "count": 1, "last_position": 4},
        {"week_start": date(2026, 11, 23), "currency": "EUR", "total_minor": 1, "count": 1, "last_position": 3},
    ]
    # Exact Python ints, never floats, never int64 that could wrap.
    assert all(type(total) is int for total in frame["total_minor"])


def test_weeks_are_cut_at_local_midnight_in_the_analytics_time_zone():
    # 23:30 UTC on Sunday 22 Nov is already Monday 23 Nov in Berlin (UTC+1).
    frame = weekly_totals(records((1, "2026-11-22T23:30:00+00:00", "EUR", 100)), time_zone="Europe/Berlin", week_start="monday")
    assert list(frame["week_start"]) == [date(2026, 11, 23)]
    frame = weekly_totals(records((1, "2026-11-22T23:30:00+00:00", "EUR", 100)), time_zone="UTC", week_start="monday")
    assert list(frame["week_start"]) == [date(2026, 11, 16)]


def test_a_week_that_springs_forward_still_starts_at_local_midnight():
    # Berlin moves to summer time on Sunday 29 March 2026; the week 23-29 March
    # has 167 hours, and the first minute of Monday 30 March belongs to the next week.
    frame = weekly_totals(
        records(
            (1, "2026-03-29T21:59:00+00:00", "EUR", 1),  # 23:59 CEST Sunday
            (2, "2026-03-29T22:00:00+00:00", "EUR", 2),  # 00:00 CEST Monday
        ),
        time_zone="Europe/Berlin",
        week_start="monday",
    )
    assert as_dicts(frame)[0]["week_start"] == date(2026, 3, 23) and as_dicts(frame)[0]["total_minor"] == 1
    assert as_dicts(frame)[1]["week_start"] == date(2026, 3, 30) and as_dicts(frame)[1]["total_minor"] == 2


def test_a_week_that_falls_back_keeps_its_extra_hour():
    # New York leaves DST on Sunday 1 Nov 2026; with Sunday weeks that week has 169 hours.
    frame = weekly_totals(
        records(
            (1, "2026-11-01T04:30:00+00:00", "USD", 1),  # 00:30 EDT Sunday: first hour of the week
            (2, "2026-11-08T04:59:00+00:00", "USD", 2),  # 23:59 EST Saturday 7 Nov: its last minute
            (3, "2026-11-08T05:00:00+00:00", "USD", 4),  # 00:00 EST Sunday 8 Nov: next week
        ),
        time_zone="America/New_York",
        week_start="sunday",
    )
    assert [(r["week_start"], r["total_minor"]) for r in as_dicts(frame)] == [(date(2026, 11, 1), 3), (date(2026, 11, 8), 4)]


def test_sunday_weeks_start_on_sunday():
    frame = weekly_totals(
        records((1, "2026-11-21T12:00:00+00:00", "EUR", 5), (2, "2026-11-22T12:00:00+00:00", "EUR", 7)),
        time_zone="UTC",
        week_start="sunday",
    )
    assert [(r["week_start"], r["total_minor"]) for r in as_dicts(frame)] == [(date(2026, 11, 15), 5), (date(2026, 11, 22), 7)]


def test_iso_week_53_of_2026_is_one_week_across_new_year():
    # 2026 has 53 ISO weeks: week 53 runs Monday 28 Dec 2026 to Sunday 3 Jan 2027.
    frame = weekly_totals(
        records(
            (1, "2026-12-28T00:00:00+00:00", "EUR", 1),
            (2, "2026-12-31T23:59:59+00:00", "EUR", 2),
            (3, "2027-01-03T23:59:59+00:00", "EUR", 4),
            (4, "2027-01-04T00:00:00+00:00", "EUR", 8),
        ),
        time_zone="UTC",
        week_start="monday",
    )
    rows = as_dicts(frame)
    assert date(2026, 12, 28).isocalendar()[:2] == (2026, 53)
    assert [(r["week_start"], r["total_minor"], r["count"]) for r in rows] == [(date(2026, 12, 28), 7, 3), (date(2027, 1, 4), 8, 1)]


def test_currencies_with_zero_and_three_minor_digits_sum_exactly():
    frame = weekly_totals(
        records(
            (1, "2026-11-16T10:00:00+00:00", "JPY", 999_999_999),
            (2, "2026-11-16T11:00:00+00:00", "JPY", 1),
            (3, "2026-11-16T10:00:00+00:00", "KWD", 1_234),  # 1.234 KWD
            (4, "2026-11-16T11:00:00+00:00", "KWD", 1),  # 0.001 KWD
        ),
        time_zone="UTC",
        week_start="monday",
    )
    assert {r["currency"]: r["total_minor"] for r in as_dicts(frame)} == {"JPY": 1_000_000_000, "KWD": 1_235}


def test_it_gives_each_approval_its_buckets_running_total_in_position_order():
    # Positions out of order, two buckets interleaved, a local midnight between them, a pre-1970 instant.
    frame = weekly_running_totals(
        records(
            (7, "2026-11-22T23:30:00+00:00", "EUR", 4),  # Monday 23 Nov in Berlin
            (3, "2026-11-17T08:00:00+00:00", "EUR", 1),
            (5, "2026-11-18T08:00:00+00:00", "JPY", 100),
            (4, "2026-11-22T22:59:00+00:00", "EUR", 2),  # 23:59 Sunday in Berlin: still week 16 Nov
            (9, "1969-12-31T23:30:00+00:00", "EUR", 8),  # Thursday 1 Jan 1970 in Berlin
        ),
        time_zone="Europe/Berlin",
        week_start="monday",
    )
    assert [tuple(row[:5]) for row in frame.itertuples(index=False, name=None)] == [
        (date(2026, 11, 16), "EUR", 3, 1, 1),
        (date(2026, 11, 16), "EUR", 4, 3, 2),
        (date(2026, 11, 16), "JPY", 5, 100, 1),
        (date(2026, 11, 23), "EUR", 7, 4, 1),
        (date(1969, 12, 29), "EUR", 9, 8, 1),
    ]
    assert all(type(total) is int for total in frame["total_minor"])


def test_no_records_give_an_empty_frame():
    assert weekly_totals(records(), time_zone="UTC", week_start="monday").empty


def test_an_unknown_week_start_is_refused():
    with pytest.raises(ValueError):
        weekly_totals(records((1, "2026-11-16T10:00:00+00:00", "EUR", 1)), time_zone="UTC", week_start="friday")


def test_the_pandas_module_imports_nothing_from_django():
    import ast
    from pathlib import Path

    import analytics.frames as frames

    tree = ast.parse(Path(frames.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert not any(name and name.split(".")[0] in {"django", "core", "transactions", "analytics"} for name in imported)


def mixed(*rows):
    return pd.DataFrame(rows, columns=["position", "occurred_at", "currency", "amount_minor", "reversal"])


def test_it_sums_reversals_apart_and_the_total_is_the_net():
    frame = weekly_totals(
        mixed(
            (1, "2026-11-16T10:00:00+00:00", "EUR", 1000, False),
            (2, "2026-11-17T10:00:00+00:00", "EUR", 250, True),
            (3, "2026-11-24T10:00:00+00:00", "EUR", 400, True),  # a week with no approvals: net below zero
        ),
        time_zone="UTC",
        week_start="monday",
    )
    rows = frame.to_dict("records")
    assert [(r["week_start"], r["gross_minor"], r["count"], r["reversed_minor"], r["reversed_count"], r["total_minor"]) for r in rows] == [
        (date(2026, 11, 16), 1000, 1, 250, 1, 750),
        (date(2026, 11, 23), 0, 0, 400, 1, -400),
    ]
    assert all(type(v) is int for r in rows for v in (r["gross_minor"], r["reversed_minor"], r["total_minor"]))


def test_running_totals_carry_gross_reversed_and_net_per_event():
    frame = weekly_running_totals(
        mixed(
            (1, "2026-11-16T10:00:00+00:00", "EUR", 1000, False),
            (2, "2026-11-16T11:00:00+00:00", "EUR", 1500, True),
            (3, "2026-11-16T12:00:00+00:00", "EUR", 5, False),
        ),
        time_zone="UTC",
        week_start="monday",
    )
    assert [tuple(row) for row in frame.itertuples(index=False, name=None)] == [
        (date(2026, 11, 16), "EUR", 1, 1000, 1, 1000, 0, 0),
        (date(2026, 11, 16), "EUR", 2, -500, 1, 1000, 1500, 1),
        (date(2026, 11, 16), "EUR", 3, -495, 2, 1005, 1500, 1),
    ]


def test_a_huge_reversal_is_exact_beyond_int64():
    huge = 10**19 - 1
    frame = weekly_running_totals(
        mixed(
            (1, "2026-11-16T10:00:00+00:00", "CLF", huge, True),
            (2, "2026-11-16T10:00:00+00:00", "CLF", huge, True),
            (3, "2026-11-16T10:00:00+00:00", "CLF", 1, False),
        ),
        time_zone="UTC",
        week_start="monday",
    )
    last = frame.iloc[-1]
    assert last["reversed_minor"] == 2 * huge and last["total_minor"] == 1 - 2 * huge and type(last["total_minor"]) is int
