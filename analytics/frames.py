"""Weekly income arithmetic with pandas on integer minor units. Pure: imports nothing from Django."""
from __future__ import annotations

import pandas as pd

WEEK_STARTS = ("monday", "sunday")
RESULT_COLUMNS = ["week_start", "currency", "total_minor", "count", "last_position"]


def week_start_dates(occurred_at: pd.Series, *, time_zone: str, week_start: str) -> pd.Series:
    """The local calendar date on which each instant's week begins.

    Weeks are cut on local dates, not by subtracting 7x24 hours, so a week that
    contains a DST change (167 or 169 hours long) still starts at local midnight.
    """
    if week_start not in WEEK_STARTS:
        raise ValueError(f"week_start must be one of {WEEK_STARTS}, not {week_start!r}")
    local = pd.to_datetime(occurred_at, utc=True, format="ISO8601").dt.tz_convert(time_zone)
    local_days = local.dt.tz_localize(None).dt.normalize()
    weekday = local.dt.day_of_week  # Monday is 0
    days_into_week = weekday if week_start == "monday" else (weekday + 1) % 7
    return (local_days - pd.to_timedelta(days_into_week, unit="D")).dt.date


def weekly_totals(records: pd.DataFrame, *, time_zone: str, week_start: str) -> pd.DataFrame:
    """Sum approved amounts per (week_start, currency).

    `records` has columns position (int), occurred_at (ISO 8601 string or aware
    datetime), currency (str) and amount_minor (int). The result has one row per
    (week_start, currency) with integer total_minor and count, and the highest
    position that contributed to it.
    """
    if records.empty:
        return pd.DataFrame({column: pd.Series(dtype="object") for column in RESULT_COLUMNS})
    frame = pd.DataFrame(
        {
            "week_start": week_start_dates(records["occurred_at"], time_zone=time_zone, week_start=week_start),
            "currency": records["currency"].astype(str),
            # int64 holds 9.2e18 minor units: far beyond any weekly total; never float.
            "amount_minor": records["amount_minor"].astype("int64"),
            "position": records["position"].astype("int64"),
        }
    )
    grouped = frame.groupby(["week_start", "currency"], sort=True).agg(
        total_minor=("amount_minor", "sum"),
        count=("amount_minor", "size"),
        last_position=("position", "max"),
    )
    return grouped.reset_index()[RESULT_COLUMNS]
