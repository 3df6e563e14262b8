"""Weekly income for a full rebuild with numpy on fixed-width integer columns. Pure: imports nothing from Django.

The rebuild reads the approved and reversed events as big-endian int64 columns (PostgreSQL's
binary send format, see analytics.rebuild) and never parses text in Python: instants arrive
as microseconds since 2000-01-01 UTC (an approval's occurred_at, a reversal's recorded_at),
amounts as ten-thousandths of the currency's major unit. Sums stay exact: an amount is split
into a high and a low part at 10^8, each summed in int64 (the caller checks that the high
sums cannot wrap), and a sum is H * 10^8 + L; gross and reversed are summed apart and the
net (the total) is their difference, which may be negative. History rows leave as
PostgreSQL's binary COPY format, built in numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

WEEK_STARTS = ("monday", "sunday")
# PostgreSQL counts timestamps in microseconds and dates in days from 2000-01-01.
PG_EPOCH_UNIX_US = 946_684_800 * 1_000_000
PG_EPOCH_UNIX_DAY = 10_957
_DAY_US = 86_400 * 1_000_000
# Instants the projector places: pandas' nanosecond range, a little narrowed, so a local
# date and its week start are ordinary dates in any zone (1678-01-02 .. 2261-12-31 UTC).
EARLIEST_US = (date(1678, 1, 2) - date(2000, 1, 1)).days * _DAY_US
LATEST_US = (date(2261, 12, 31) - date(2000, 1, 1)).days * _DAY_US
SPLIT = 10**8
# Amounts arrive in 10^-4 of the major unit: no ISO 4217 currency has more than 4 decimals.
AMOUNT_SCALE_DIGITS = 4
# Sent by the query for an amount it could not scale exactly into int64 (huge, too many
# decimals, negative or missing): the caller converts those few rows with core.money.
FLAGGED = -1

PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
PGCOPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
# A NUMERIC(38, 0) sent as seven base-10000 digits (weight 6): every sum below 10^28 in size,
# which is every sum whose high part fits int64. PostgreSQL strips the leading zeros.
_NUMERIC_DIGITS = 7
NUMERIC_POSITIVE, NUMERIC_NEGATIVE = 0x0000, 0x4000


def _numeric(name: str) -> list[tuple]:
    return [
        (f"{name}_len", ">i4"), (f"{name}_ndigits", ">i2"), (f"{name}_weight", ">i2"), (f"{name}_sign", ">i2"),
        (f"{name}_dscale", ">i2"), (f"{name}_digits", ">i2", (_NUMERIC_DIGITS,)),
    ]


# The COPY column order: analytics.rebuild names the same columns in its COPY statement.
HISTORY_COLUMNS = ("week_start", "currency", "position", "total_minor", "count", "gross_minor", "reversed_minor", "reversed_count")
HISTORY_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("week_len", ">i4"), ("week", ">i4"),
        ("currency_len", ">i4"), ("currency", "S3"),
        ("position_len", ">i4"), ("position", ">i8"),
        *_numeric("total"),
        ("count_len", ">i4"), ("count", ">i8"),
        *_numeric("gross"),
        *_numeric("reversed"),
        ("reversed_count_len", ">i4"), ("reversed_count", ">i8"),
    ]
)


class OutOfRange(ValueError):
    """An instant or amount this arithmetic does not place (the caller names the event)."""


def local_week_starts(instants_us: np.ndarray, *, time_zone: str, week_start: str) -> np.ndarray:
    """The week start of each instant (microseconds since 2000-01-01 UTC) as days since 2000-01-01.

    Weeks are cut on local calendar dates (pandas' zone rules, as frames.week_start_dates),
    so a week with a DST change still starts at local midnight. Callers first drop
    instants outside EARLIEST_US..LATEST_US.
    """
    if week_start not in WEEK_STARTS:
        raise ValueError(f"week_start must be one of {WEEK_STARTS}, not {week_start!r}")
    unix_us = instants_us.astype("int64", copy=False) + PG_EPOCH_UNIX_US
    if time_zone != "UTC":
        utc = pd.DatetimeIndex(unix_us.view("datetime64[us]")).tz_localize("UTC")
        unix_us = utc.tz_convert(time_zone).tz_localize(None).asi8
    days = unix_us // _DAY_US  # floor: days before 1970 stay on their own date
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
    into_week = weekday if week_start == "monday" else (weekday + 1) % 7
    return (days - into_week - PG_EPOCH_UNIX_DAY).astype("int32")


def out_of_range(instants_us: np.ndarray) -> np.ndarray:
    return (instants_us < EARLIEST_US) | (instants_us > LATEST_US)


def to_minor_units(amount_e4: np.ndarray, exponent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(minor units, rows that would round): an amount in 10^-4 units to the currency's minor units."""
    divisor = 10 ** (AMOUNT_SCALE_DIGITS - exponent.astype("int64"))
    minor, rest = np.divmod(amount_e4, divisor)
    return minor, rest != 0


@dataclass
class RunningTotals:
    """Per event, in (bucket, position) order: its bucket's running sums (each sum = high * 10^8 + low, low < 10^8)."""

    order: np.ndarray  # indices into the input, sorted by bucket then position
    bucket: np.ndarray
    position: np.ndarray
    gross_high: np.ndarray
    gross_low: np.ndarray
    count: np.ndarray
    reversed_high: np.ndarray
    reversed_low: np.ndarray
    reversed_count: np.ndarray
    last: np.ndarray  # index (into the sorted arrays) of each bucket's final row


def running_totals(position: np.ndarray, bucket: np.ndarray, high: np.ndarray, low: np.ndarray,
                   reversal: np.ndarray | None = None) -> RunningTotals:
    """Cumulative sums per bucket in position order. high/low: each amount split at 10^8; `reversal`
    marks the reversals (their amounts go to the reversed sums; None: every event is an approval).

    The caller guarantees no int64 wraps: sum(high) + sum(low) / 10^8 < 2^63.
    """
    n = len(position)
    reversal = np.zeros(n, dtype=bool) if reversal is None else reversal.astype(bool, copy=False)
    in_order = n == 0 or bool((position[1:] > position[:-1]).all())
    by_position = None if in_order else np.argsort(position, kind="stable")
    # Buckets are few (weeks x currencies): numbered by a hash pass, they sort as int16 keys,
    # which numpy's stable sort handles as a radix sort (linear) instead of a merge sort.
    keys, uniques = pd.factorize(bucket if in_order else bucket[by_position])
    if len(uniques) < 2**15:
        keys = keys.astype("int16")
    by_key = np.argsort(keys, kind="stable")
    order = by_key if in_order else by_position[by_key]
    sizes = np.bincount(keys, minlength=len(uniques))
    starts = np.cumsum(sizes) - sizes

    def grouped_cumsum(values: np.ndarray) -> np.ndarray:
        total = np.cumsum(values)
        before = np.concatenate(([0], total[starts[1:] - 1])) if len(starts) else np.zeros(0, dtype="int64")
        total -= np.repeat(before, sizes)
        return total

    def split_sums(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hs = grouped_cumsum(np.where(mask, high, 0)[order])
        ls = grouped_cumsum(np.where(mask, low, 0)[order])
        hs += ls // SPLIT
        ls %= SPLIT
        return hs, ls, grouped_cumsum(mask[order].astype("int64"))

    gross_high, gross_low, count = split_sums(~reversal)
    if reversal.any():
        reversed_high, reversed_low, reversed_count = split_sums(reversal)
    else:  # the common case: no reversals, no second pass
        reversed_high = reversed_low = reversed_count = np.zeros(n, dtype="int64")
    return RunningTotals(
        order=order, bucket=np.repeat(uniques, sizes), position=position[order],
        gross_high=gross_high, gross_low=gross_low, count=count,
        reversed_high=reversed_high, reversed_low=reversed_low, reversed_count=reversed_count, last=starts + sizes - 1,
    )


def joined(high: int, low: int) -> int:
    return int(high) * SPLIT + int(low)


def _template_row() -> np.ndarray:
    row = np.zeros(1, dtype=HISTORY_ROW)
    row["fields"], row["week_len"], row["currency_len"], row["position_len"] = len(HISTORY_COLUMNS), 4, 3, 8
    for name in ("total", "gross", "reversed"):
        row[f"{name}_len"], row[f"{name}_ndigits"], row[f"{name}_weight"] = 8 + 2 * _NUMERIC_DIGITS, _NUMERIC_DIGITS, _NUMERIC_DIGITS - 1
    row["count_len"], row["reversed_count_len"] = 8, 8
    return row


_TEMPLATE = _template_row()


def numeric_digits(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """The base-10000 digits (most significant first) of high * 10^8 + low, as an (n, 7) int16 array."""
    digits = np.empty((len(high), _NUMERIC_DIGITS), dtype="int16")
    digits[:, 5], digits[:, 6] = np.divmod(low, 10_000)
    rest = high
    for column in (4, 3, 2, 1):
        rest, digits[:, column] = np.divmod(rest, 10_000)
    digits[:, 0] = rest
    return digits


def difference(high_a: np.ndarray, low_a: np.ndarray, high_b: np.ndarray, low_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(negative, high, low) with |a - b| = high * 10^8 + low, 0 <= low < 10^8: a signed sum for NUMERIC."""
    high, low = high_a - high_b, low_a - low_b
    high += low // SPLIT  # floor division: a negative low borrows from high
    low %= SPLIT
    negative = high < 0
    # -(H * 10^8 + L) with 0 <= L < 10^8 is (-H - 1) * 10^8 + (10^8 - L) when L > 0.
    borrow = negative & (low > 0)
    low = np.where(negative, np.where(borrow, SPLIT - low, 0), low)
    high = np.where(negative, -high - borrow.astype("int64"), high)
    return negative, high, low


def history_copy_rows(week: np.ndarray, currency: np.ndarray, position: np.ndarray, totals: RunningTotals,
                      part: slice = slice(None)) -> np.ndarray:
    """History rows (HISTORY_COLUMNS) in binary COPY format for `part` of `totals`, header and trailer excluded.

    week: days since 2000-01-01; currency: 3-byte codes (both already for `part`); sums below 10^28
    in size (high < 2^63). The total is the net, gross - reversed, with its sign.
    Returns the rows as a structured array: hand `memoryview(rows)` to COPY.
    """
    rows = np.repeat(_TEMPLATE, len(week))
    rows["week"] = week
    rows["currency"] = currency
    rows["position"] = position
    gross_high, gross_low = totals.gross_high[part], totals.gross_low[part]
    reversed_high, reversed_low = totals.reversed_high[part], totals.reversed_low[part]
    negative, net_high, net_low = difference(gross_high, gross_low, reversed_high, reversed_low)
    rows["total_sign"] = np.where(negative, NUMERIC_NEGATIVE, NUMERIC_POSITIVE)
    rows["total_digits"] = numeric_digits(net_high, net_low)
    rows["gross_digits"] = numeric_digits(gross_high, gross_low)
    rows["reversed_digits"] = numeric_digits(reversed_high, reversed_low)
    rows["count"] = totals.count[part]
    rows["reversed_count"] = totals.reversed_count[part]
    return rows
