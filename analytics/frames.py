"""Weekly income arithmetic with pandas on integer minor units, approvals and reversals. Pure: imports nothing from Django.

Records have columns position (int), occurred_at (ISO 8601 string or aware datetime: the instant
that places the record in a week: an approval's occurred_at, a reversal's recorded_at), currency
(str), amount_minor (int, or Python ints beyond int64) and, optionally, reversal (bool; absent
means every record is an approval). Per bucket: gross and count from approvals, reversed and
reversed_count from reversals, total = net = gross - reversed (may be negative).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

WEEK_STARTS = ("monday", "sunday")
# total_minor is the net; the columns after the first five came with reversals.
RESULT_COLUMNS = ["week_start", "currency", "total_minor", "count", "last_position", "gross_minor", "reversed_minor", "reversed_count"]
RUNNING_COLUMNS = ["week_start", "currency", "position", "total_minor", "count", "gross_minor", "reversed_minor", "reversed_count"]

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
    if amount_minor.dtype == object or amount_minor.dtype.kind == "u":
        # Python ints from the log (or uint64, which pandas picks for ints past int64): possibly beyond int64, so split them one by one.
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


def _reversal_mask(records: pd.DataFrame) -> np.ndarray:
    if "reversal" not in records:
        return np.zeros(len(records), dtype=bool)
    return records["reversal"].to_numpy(dtype=bool)


def _kind_columns(records: pd.DataFrame) -> pd.DataFrame:
    """Per record: its amount split into gross and reversed parts (the other kind's are 0) and a count for each kind."""
    high, low = _split(records["amount_minor"].reset_index(drop=True))
    reversal = _reversal_mask(records)
    high, low = high.to_numpy(), low.to_numpy()
    zero = np.zeros(len(records), dtype="int64")
    return pd.DataFrame({
        "gross_high": np.where(reversal, zero, high), "gross_low": np.where(reversal, zero, low),
        "reversed_high": np.where(reversal, high, zero), "reversed_low": np.where(reversal, low, zero),
        "count": (~reversal).astype("int64"), "reversed_count": reversal.astype("int64"),
    })


def _money_columns(sums: pd.DataFrame) -> dict[str, np.ndarray]:
    """gross_minor, reversed_minor and total_minor (the net) as exact Python ints from summed parts."""
    gross = _joined(sums["gross_high"], sums["gross_low"]).to_numpy()
    reversed_ = _joined(sums["reversed_high"], sums["reversed_low"]).to_numpy()
    # Python ints (object arrays): the difference is exact and may be negative.
    net = np.array([g - r for g, r in zip(gross, reversed_)], dtype=object) if len(gross) else np.zeros(0, dtype=object)
    return {"gross_minor": gross, "reversed_minor": reversed_, "total_minor": net}


def weekly_totals(records: pd.DataFrame, *, time_zone: str, week_start: str) -> pd.DataFrame:
    """Sum approved and reversed amounts per (week_start, currency).

    The result has one row per (week_start, currency): total_minor (the net, a Python int),
    count (approvals), the highest position that contributed, gross_minor, reversed_minor and
    reversed_count.
    """
    if records.empty:
        return pd.DataFrame({column: pd.Series(dtype="object") for column in RESULT_COLUMNS})
    if len(records) > MAX_ROWS:
        raise ValueError(f"at most {MAX_ROWS} rows per batch keep the sums exact")
    frame = _kind_columns(records)
    frame["week_start"] = week_start_dates(records["occurred_at"].reset_index(drop=True), time_zone=time_zone, week_start=week_start)
    frame["currency"] = records["currency"].astype(str).reset_index(drop=True)
    frame["position"] = records["position"].astype("int64").reset_index(drop=True)
    grouped = frame.groupby(["week_start", "currency"], sort=True).agg(
        gross_high=("gross_high", "sum"), gross_low=("gross_low", "sum"),
        reversed_high=("reversed_high", "sum"), reversed_low=("reversed_low", "sum"),
        count=("count", "sum"), reversed_count=("reversed_count", "sum"), last_position=("position", "max"),
    ).reset_index()
    for name, values in _money_columns(grouped).items():
        grouped[name] = pd.Series(values, index=grouped.index, dtype="object")
    return grouped[RESULT_COLUMNS]


def weekly_running_totals(records: pd.DataFrame, *, time_zone: str, week_start: str) -> pd.DataFrame:
    """For each record, its bucket's sums within `records` up to and including it.

    One row per record, in position order: the history from which "weekly income as
    it stood right after event P" is read without replaying the log.
    """
    if records.empty:
        return pd.DataFrame({column: pd.Series(dtype="object") for column in RUNNING_COLUMNS})
    if len(records) > MAX_ROWS:
        raise ValueError(f"at most {MAX_ROWS} rows per batch keep the sums exact")
    # The projector runs this for every batch, most of them one event: each pandas call
    # costs tens of microseconds whatever the size, so this builds one frame and groups once.
    records = records.sort_values("position", kind="stable") if not records["position"].is_monotonic_increasing else records
    days = _week_start_days(records["occurred_at"], time_zone=time_zone, week_start=week_start)
    currency = records["currency"].astype(str).to_numpy()
    running = _kind_columns(records).groupby([days, currency], sort=False).cumsum()
    money = _money_columns(running)
    return pd.DataFrame(
        {
            "week_start": days.astype("datetime64[D]").astype(object),
            "currency": currency,
            "position": records["position"].to_numpy(dtype="int64"),
            "total_minor": money["total_minor"],
            "count": running["count"].to_numpy(),
            "gross_minor": money["gross_minor"],
            "reversed_minor": money["reversed_minor"],
            "reversed_count": running["reversed_count"].to_numpy(),
        },
        columns=RUNNING_COLUMNS,
    )
