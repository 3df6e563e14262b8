"""Weekly income arithmetic with pandas on integer minor units. Pure: imports nothing from Django."""
from __future__ import annotations

import numpy as np
import pandas as pd

WEEK_STARTS = ("monday", "sunday")
RESULT_COLUMNS = ["week_start", "currency", "total_minor", "count", "last_position"]
RUNNING_COLUMNS = ["week_start", "currency", "position", "total_minor", "count"]

# Sums are exact, never wrapped: each amount is split into a high and a low part below
# 10^9, each summed in int64, and the two are joined as Python ints. A low part sums to
# less than n * 10^9 and a high part (amounts below 10^19) to less than n * 10^10, so
# int64 holds both for any batch of fewer than MAX_ROWS rows.
_SPLIT = 10**9
_INT64_MAX = 2**63 - 1
MAX_ROWS = 900_000_000
_FAST_HIGH = 9_000_000_000


class AmountOutOfRange(ValueError):
    """An amount that this arithmetic cannot sum exactly (negative, or 10^19 minor units or more)."""


def week_start_dates(occurred_at: pd.Series, *, time_zone: str, week_start: str) -> pd.Series:
    """The local calendar date on which each instant's week begins.

    Weeks are cut on local dates, not by subtracting 7x24 hours, so a week that
    contains a DST change (167 or 169 hours long) still starts at local midnight.
    """
    days = _week_start_days(occurred_at, time_zone=time_zone, week_start=week_start)
    return pd.Series(days.astype("datetime64[D]").astype(object), index=occurred_at.index, dtype="object")


def _week_start_days(occurred_at: pd.Series, *, time_zone: str, week_start: str) -> np.ndarray:
    """Each instant's local week start as int64 days since 1970-01-01 (a Thursday)."""
    if week_start not in WEEK_STARTS:
        raise ValueError(f"week_start must be one of {WEEK_STARTS}, not {week_start!r}")
    local = pd.to_datetime(occurred_at, utc=True, format="ISO8601").dt.tz_convert(time_zone)
    # Wall-clock time as nanoseconds, floored to local calendar days: no per-step Series.
    days = local.dt.tz_localize(None).to_numpy().astype("datetime64[D]").astype("int64")
    # 1970-01-01 was a Thursday: +3 makes Monday 0, +4 makes Sunday 0.
    days_into_week = (days + (3 if week_start == "monday" else 4)) % 7
    return days - days_into_week


def _split(amount_minor: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(high, low) int64 parts with amount = high * 10^9 + low, refusing what would not be exact."""
    if amount_minor.dtype == object:
        # Python ints from the log: possibly beyond int64, so split them one by one.
        values = [int(v) for v in amount_minor]
        if values and (min(values) < 0 or max(values) >= _SPLIT * 10**10):
            raise AmountOutOfRange("amounts must be from 0 to 10^19 - 1 minor units")
        high = pd.Series([v // _SPLIT for v in values], index=amount_minor.index, dtype="int64")
        low = pd.Series([v % _SPLIT for v in values], index=amount_minor.index, dtype="int64")
        return high, low
    amount = amount_minor.to_numpy(dtype="int64")
    if len(amount) and amount.min() < 0:
        raise AmountOutOfRange("amounts must not be negative")
    # numpy, not Series arithmetic: the same integers without an index to align per operation.
    high, low = np.divmod(amount, _SPLIT)
    return pd.Series(high, index=amount_minor.index), pd.Series(low, index=amount_minor.index)


def _joined(high: pd.Series, low: pd.Series) -> pd.Series:
    """high * 10^9 + low as Python ints (object dtype): exact at any size."""
    if len(high) == 0 or int(high.max()) < _FAST_HIGH:
        # Provably inside int64 (high * 10^9 + low < 9.000000001e18): stay vectorized.
        return pd.Series((high.to_numpy() * _SPLIT + low.to_numpy()).astype(object), index=high.index, dtype="object")
    return pd.Series([int(h) * _SPLIT + int(lo) for h, lo in zip(high, low)], index=high.index, dtype="object")


def _frame(records: pd.DataFrame, *, time_zone: str, week_start: str) -> pd.DataFrame:
    if len(records) > MAX_ROWS:
        raise ValueError(f"at most {MAX_ROWS} rows per batch keep the sums exact")
    high, low = _split(records["amount_minor"].reset_index(drop=True))
    return pd.DataFrame(
        {
            "week_start": week_start_dates(records["occurred_at"].reset_index(drop=True), time_zone=time_zone, week_start=week_start),
            "currency": records["currency"].astype(str).reset_index(drop=True),
            "high": high,
            "low": low,
            "position": records["position"].astype("int64").reset_index(drop=True),
        }
    )


def weekly_totals(records: pd.DataFrame, *, time_zone: str, week_start: str) -> pd.DataFrame:
    """Sum approved amounts per (week_start, currency).

    `records` has columns position (int), occurred_at (ISO 8601 string or aware
    datetime), currency (str) and amount_minor (int, or Python ints beyond int64).
    The result has one row per (week_start, currency) with the exact total_minor as
    a Python int, the count, and the highest position that contributed to it.
    """
    if records.empty:
        return pd.DataFrame({column: pd.Series(dtype="object") for column in RESULT_COLUMNS})
    frame = _frame(records, time_zone=time_zone, week_start=week_start)
    grouped = frame.groupby(["week_start", "currency"], sort=True).agg(
        high=("high", "sum"),
        low=("low", "sum"),
        count=("position", "size"),
        last_position=("position", "max"),
    ).reset_index()
    grouped["total_minor"] = _joined(grouped["high"], grouped["low"])
    return grouped[RESULT_COLUMNS]


def weekly_running_totals(records: pd.DataFrame, *, time_zone: str, week_start: str) -> pd.DataFrame:
    """For each approved event, its bucket's total and count within `records` up to and including it.

    One row per record, in position order: the history from which "weekly income as
    it stood right after event P" is read without replaying the log.
    """
    if records.empty:
        return pd.DataFrame({column: pd.Series(dtype="object") for column in RUNNING_COLUMNS})
    if len(records) > MAX_ROWS:
        raise ValueError(f"at most {MAX_ROWS} rows per batch keep the sums exact")
    # The projector runs this for every batch, most of them one approval: each pandas call
    # costs tens of microseconds whatever the size, so this builds one frame and groups once.
    records = records.sort_values("position", kind="stable") if not records["position"].is_monotonic_increasing else records
    days = _week_start_days(records["occurred_at"], time_zone=time_zone, week_start=week_start)
    currency = records["currency"].astype(str).to_numpy()
    high, low = _split(records["amount_minor"].reset_index(drop=True))
    frame = pd.DataFrame({"high": high.to_numpy(), "low": low.to_numpy(), "count": np.ones(len(records), dtype="int64")})
    running = frame.groupby([days, currency], sort=False).cumsum()
    return pd.DataFrame(
        {
            "week_start": days.astype("datetime64[D]").astype(object),
            "currency": currency,
            "position": records["position"].to_numpy(dtype="int64"),
            "total_minor": _joined(running["high"], running["low"]).to_numpy(),
            "count": running["count"].to_numpy(),
        },
        columns=RUNNING_COLUMNS,
    )
