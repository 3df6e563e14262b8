"""Review-queue arithmetic: decisions per week, nearest-rank percentiles of seconds to decision, pending. Pure: imports nothing from Django."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pandas as pd

from analytics.frames import WEEK_STARTS, week_start_dates

# What the projection calls each event it reads (the caller maps event types to these).
SUBMITTED = "submitted"
APPROVAL_RECORDED = "approval_recorded"
APPROVED = "approved"
REJECTED = "rejected"
REVERSED = "reversed"
DECISION_KINDS = (APPROVED, REJECTED, REVERSED)
# Time to decision: from the submission to the approval or rejection that ended the review.
# A reversal is a decision (counted, credited to its actor) but no review of a submission.
TIMED_KINDS = (APPROVED, REJECTED)
PERCENTILES = (50, 90)
DECISION_COLUMNS = ["position", "transaction_id", "week_start", "kind", "actor", "seconds"]
_SECOND = timedelta(seconds=1)


def percentile_rank(count: int, percent: int) -> int:
    """The 1-based rank of the nearest-rank percentile among `count` sorted values: ceil(percent * count / 100).

    Nearest rank is the smallest value with at least `percent`% of the values at or below it.
    It is always one of the observed values (whole seconds stay whole), needs no interpolation,
    and is found by one index probe (ORDER BY ... OFFSET rank - 1) instead of reading a week.
    """
    if count < 1:
        raise ValueError("no rank among zero values")
    if not 0 < percent <= 100:
        raise ValueError("percent must be in (0, 100]")
    return max(1, -(-percent * count // 100))


def nearest_rank(sorted_values, percent: int):
    """The nearest-rank `percent`ile of values already sorted ascending; None when there are none."""
    if not len(sorted_values):
        return None
    return sorted_values[percentile_rank(len(sorted_values), percent) - 1]


def time_percentiles(seconds) -> tuple[int | None, int | None]:
    """(p50, p90) of the given seconds, in any order; (None, None) for none."""
    ordered = sorted(int(s) for s in seconds)
    return nearest_rank(ordered, 50), nearest_rank(ordered, 90)


# Where a batch moves a percentile's mark (move_mark).
KEEP, UP, DOWN, FROM_BOTTOM = "keep", "up", "down", "from_bottom"


@dataclass(frozen=True)
class WeekMarks:
    """A week's count of timed decisions and, per percentile, the (seconds, position) of the decision at its rank."""

    timed: int
    marks: dict[int, tuple[int, int] | None]


@dataclass(frozen=True)
class MarkMove:
    """How to find a percentile's new mark in the week's (seconds, position) order.

    UP: the entry `steps` + 1 places after `origin`; DOWN: `steps` + 1 places before it; FROM_BOTTOM:
    the entry at 0-based index `steps` (the mark was unknown); KEEP: the mark stays.
    """

    direction: str
    origin: tuple[int, int] | None = None
    steps: int = 0


def move_mark(timed: int, mark: tuple[int, int] | None, added: list[tuple[int, int]], percent: int) -> MarkMove:
    """Where the `percent`ile's mark goes when `added` (seconds, position) keys join `timed` earlier ones.

    The mark is the entry at rank percentile_rank(timed) in (seconds, position) order: a total order
    (positions are unique), whose entry at a rank has the seconds that rank has in seconds order. Each
    added key below the mark pushes it one rank up; the new target rank is percentile_rank(timed + len(added)).
    The difference is at most about len(added) entries, so the walk is short however large the week.
    """
    target = percentile_rank(timed + len(added), percent)
    if mark is None or timed < 1:
        # A week's first timed decisions (or a mark never set): counted from the bottom, once.
        return MarkMove(FROM_BOTTOM, steps=target - 1)
    rank = percentile_rank(timed, percent) + sum(1 for key in added if key < mark)
    if target == rank:
        return MarkMove(KEEP, origin=mark)
    if target > rank:
        return MarkMove(UP, origin=mark, steps=target - rank - 1)
    return MarkMove(DOWN, origin=mark, steps=rank - target - 1)


def week_marks(keys) -> WeekMarks:
    """The marks of a week from all its timed (seconds, position) keys, in any order (a rebuild, a recount)."""
    ordered = sorted((int(s), int(p)) for s, p in keys)
    if not ordered:
        return WeekMarks(timed=0, marks={percent: None for percent in PERCENTILES})
    return WeekMarks(
        timed=len(ordered), marks={percent: ordered[percentile_rank(len(ordered), percent) - 1] for percent in PERCENTILES},
    )


# Below this many decisions a batch's weeks are cut one by one: most batches hold one decision, and
# a pandas conversion costs about a millisecond whatever its size.
SMALL_BATCH = 64
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def decision_weeks(instants: list[datetime], *, time_zone: str, week_start: str) -> list[date]:
    """The local date on which each instant's week begins: analytics.frames' cut (local calendar days
    since 1970-01-01, a Thursday, floored to the week's first day), in Python for a few instants."""
    if len(instants) >= SMALL_BATCH:
        return list(week_start_dates(pd.Series(instants, dtype="object"), time_zone=time_zone, week_start=week_start))
    if week_start not in WEEK_STARTS:
        raise ValueError(f"week_start must be one of {WEEK_STARTS}, not {week_start!r}")
    zone, shift = ZoneInfo(time_zone), 3 if week_start == "monday" else 4
    weeks = []
    for instant in instants:
        days = instant.astimezone(zone).date().toordinal() - _EPOCH_ORDINAL
        weeks.append(date.fromordinal(days - (days + shift) % 7 + _EPOCH_ORDINAL))
    return weeks


def seconds_between(submitted_at: datetime, decided_at: datetime) -> int:
    """Whole seconds from submission to decision, rounded down; never negative.

    Both instants are the events' recorded_at. Clocks of different servers can disagree by a
    little; a decision recorded "before" its own submission took no time at all.
    """
    return max(0, (decided_at - submitted_at) // _SECOND)


def by_admin(counts: dict[str, int]) -> list[dict]:
    """Decisions per actor, most first, ties by name: a stable order for JSON, CSV and tests."""
    return [{"actor": actor, "decisions": int(n)} for actor, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n]


def week_object(week_start: date, *, approved: int = 0, rejected: int = 0, reversed: int = 0,  # noqa: A002 - the field's name
                p50: int | None = None, p90: int | None = None, admins: dict[str, int] | None = None) -> dict:
    """One week as the API, the snapshot and `review_queue.updated` show it (zeros and nulls for a quiet week)."""
    return {
        "week_start": week_start.isoformat(),
        "approved": int(approved),
        "rejected": int(rejected),
        "reversed": int(reversed),
        "decisions": int(approved) + int(rejected) + int(reversed),
        "time_to_decision_p50_seconds": None if p50 is None else int(p50),
        "time_to_decision_p90_seconds": None if p90 is None else int(p90),
        "by_admin": by_admin(admins or {}),
    }


def iso_utc(instant: datetime | None) -> str | None:
    """An aware instant as the REST API writes datetimes: UTC with `Z`."""
    if instant is None:
        return None
    text = instant.astimezone(timezone.utc).isoformat()
    return text[:-6] + "Z"


def pending_object(count: int, oldest_submitted_at: datetime | None, *, now: datetime) -> dict:
    """Pending now: the count, the oldest submission, and its age in whole seconds at `now` (read time)."""
    if not count or oldest_submitted_at is None:
        return {"count": int(count), "oldest_submitted_at": None, "oldest_age_seconds": None}
    return {
        "count": int(count),
        "oldest_submitted_at": iso_utc(oldest_submitted_at),
        "oldest_age_seconds": seconds_between(oldest_submitted_at, now),
    }


@dataclass
class ReviewBatch:
    """What one batch of events does to the review queue.

    `decisions` has DECISION_COLUMNS, one row per approval, rejection or reversal, in position
    order; `seconds` is None for a reversal and for a decision whose submission the projection
    never saw (a stream imported without its start). `submitted` are the batch's submissions still
    pending at its end ({transaction_id: (submitted_at, position)}); `resolved` the transactions
    pending before the batch that it decided (to delete from the pending table).
    """

    decisions: pd.DataFrame
    submitted: dict[str, tuple[datetime, int]] = field(default_factory=dict)
    resolved: set[str] = field(default_factory=set)

    @property
    def pending_changed(self) -> bool:
        return bool(self.submitted or self.resolved)


def review_batch(events, *, known: dict[str, datetime], time_zone: str, week_start: str) -> ReviewBatch:
    """Apply events (position, kind, transaction_id, actor, recorded_at), in position order, to the queue.

    `known` holds the submission time of every transaction this batch decides that was pending
    before it (the caller reads them from its pending table). A transaction submitted and decided
    within the batch never reaches the pending table. An approval recorded under dual control is
    not a decision: the transaction stays pending until the second approval (or a rejection).
    """
    values, submitted, resolved = review_decisions(events, known=known, time_zone=time_zone, week_start=week_start)
    columns = list(zip(*values)) or [()] * 6
    frame = pd.DataFrame(
        {
            "position": pd.Series(columns[0], dtype="int64"),
            "transaction_id": pd.Series(columns[1], dtype="object"),
            "week_start": pd.Series(columns[2], dtype="object"),
            "kind": pd.Series(columns[3], dtype="object"),
            "actor": pd.Series(columns[4], dtype="object"),
            # Python ints or None, never floats: whole seconds stay exact at any size.
            "seconds": pd.Series(columns[5], dtype="object"),
        },
        columns=DECISION_COLUMNS,
    )
    return ReviewBatch(decisions=frame, submitted=submitted, resolved=resolved)


def review_decisions(
    events, *, known: dict[str, datetime], time_zone: str, week_start: str,
) -> tuple[list[tuple], dict[str, tuple[datetime, int]], set[str]]:
    """review_batch without the frame: its decision rows as DECISION_COLUMNS tuples (Python ints, None
    for an untimed decision), its `submitted` and its `resolved`.

    The projector's small batches use these directly: building the frame costs about a millisecond
    per batch, most of an idle approval's review-queue CPU, for rows it turns back into tuples.
    """
    submitted: dict[str, tuple[datetime, int]] = {}
    resolved: set[str] = set()
    rows = []
    for position, kind, transaction_id, actor, recorded_at in sorted(events, key=lambda e: e[0]):
        if kind == SUBMITTED:
            submitted[transaction_id] = (recorded_at, position)
        elif kind in TIMED_KINDS:
            if transaction_id in submitted:
                since = submitted.pop(transaction_id)[0]
            elif transaction_id in known and transaction_id not in resolved:
                since = known[transaction_id]
                resolved.add(transaction_id)
            else:
                since = None  # submitted before the log begins: counted, but not timed
            seconds = None if since is None else seconds_between(since, recorded_at)
            rows.append((position, transaction_id, recorded_at, kind, actor, seconds))
        elif kind == REVERSED:
            rows.append((position, transaction_id, recorded_at, kind, actor, None))
        # APPROVAL_RECORDED and anything else: the transaction stays as it was.
    weeks = decision_weeks([row[2] for row in rows], time_zone=time_zone, week_start=week_start)
    values = [(int(position), tid, week, kind, actor, seconds) for (position, tid, _, kind, actor, seconds), week in zip(rows, weeks)]
    return values, submitted, resolved


def week_counts(decisions: pd.DataFrame) -> dict[date, dict]:
    """Per week: {"approved", "rejected", "reversed", "admins": {actor: n}, "last_position"} of these decisions."""
    weeks: dict[date, dict] = {}
    for week, kind, actor, position in decisions[["week_start", "kind", "actor", "position"]].itertuples(index=False, name=None):
        entry = weeks.setdefault(week, {APPROVED: 0, REJECTED: 0, REVERSED: 0, "admins": Counter(), "last_position": 0})
        entry[kind] += 1
        entry["admins"][actor] += 1
        entry["last_position"] = max(entry["last_position"], int(position))
    return weeks


def weekly_summaries(decisions: pd.DataFrame) -> dict[date, dict]:
    """Every week's complete object from all its decisions (a rebuild; the projector adds batches instead)."""
    summaries = {}
    timed = decisions[decisions["seconds"].notna()]
    seconds_by_week = {week: list(group["seconds"]) for week, group in timed.groupby("week_start")} if len(timed) else {}
    for week, entry in week_counts(decisions).items():
        p50, p90 = time_percentiles(seconds_by_week.get(week, []))
        summaries[week] = week_object(
            week, approved=entry[APPROVED], rejected=entry[REJECTED], reversed=entry[REVERSED], p50=p50, p90=p90, admins=entry["admins"]
        )
    return summaries
