"""Review-queue arithmetic without Django: nearest-rank percentiles, whole seconds, weeks of decisions, pending."""
import ast
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from analytics import review_queue_frames as rqf

T0 = datetime(2026, 11, 16, 9, 0, tzinfo=timezone.utc)  # a Monday
CUT = {"time_zone": "UTC", "week_start": "monday"}


def test_it_takes_the_nearest_rank_so_the_median_of_an_even_count_is_the_lower_middle_value():
    assert rqf.time_percentiles([40, 10, 30, 20]) == (20, 40)


def test_it_takes_the_ninetieth_percentile_as_the_value_at_rank_ceil_of_ninety_percent():
    values = list(range(1, 11))  # 10 values: rank 9 for p90, 5 for p50
    assert rqf.time_percentiles(values) == (5, 9)
    assert rqf.time_percentiles(list(range(1, 12))) == (6, 10)  # 11 values: ceil(5.5) = 6, ceil(9.9) = 10


def test_it_gives_the_only_value_for_both_percentiles_of_one_decision():
    assert rqf.time_percentiles([7]) == (7, 7)


def test_it_gives_no_percentiles_without_decisions():
    assert rqf.time_percentiles([]) == (None, None)
    assert rqf.nearest_rank([], 50) is None


def test_it_keeps_percentiles_exact_for_integers_beyond_float_precision():
    big = 2**60 + 1
    assert rqf.time_percentiles([big, big + 2, big + 4]) == (big + 2, big + 4)


def test_it_computes_ranks_by_integer_arithmetic():
    assert [rqf.percentile_rank(n, 50) for n in (1, 2, 3, 4, 5)] == [1, 1, 2, 2, 3]
    assert [rqf.percentile_rank(n, 90) for n in (1, 9, 10, 11, 20)] == [1, 9, 9, 10, 18]
    with pytest.raises(ValueError):
        rqf.percentile_rank(0, 50)


def test_it_rounds_seconds_down_and_never_below_zero():
    assert rqf.seconds_between(T0, T0 + timedelta(seconds=59, microseconds=999_999)) == 59
    assert rqf.seconds_between(T0, T0 - timedelta(seconds=3)) == 0


def test_it_orders_admins_by_decisions_then_name():
    assert rqf.by_admin({"cy": 1, "ana": 3, "ben": 3}) == [
        {"actor": "ana", "decisions": 3}, {"actor": "ben", "decisions": 3}, {"actor": "cy", "decisions": 1},
    ]


def test_it_shows_a_quiet_week_as_zeros_and_nulls():
    assert rqf.week_object(date(2026, 11, 16)) == {
        "week_start": "2026-11-16", "approved": 0, "rejected": 0, "reversed": 0, "decisions": 0,
        "time_to_decision_p50_seconds": None, "time_to_decision_p90_seconds": None, "by_admin": [],
    }


def test_it_computes_the_oldest_pending_age_at_the_time_asked():
    pending = rqf.pending_object(2, T0, now=T0 + timedelta(hours=1, microseconds=5))
    assert pending == {"count": 2, "oldest_submitted_at": "2026-11-16T09:00:00Z", "oldest_age_seconds": 3600}
    assert rqf.pending_object(0, None, now=T0) == {"count": 0, "oldest_submitted_at": None, "oldest_age_seconds": None}


def batch(*events, known=None, **cut):
    return rqf.review_batch(list(events), known=known or {}, **(cut or CUT))


def test_it_times_a_transaction_submitted_and_decided_in_the_same_batch():
    result = batch((1, "submitted", "a", "clerk", T0), (2, "approved", "a", "ana", T0 + timedelta(seconds=90)))
    assert list(result.decisions["seconds"]) == [90]
    assert result.submitted == {} and result.resolved == set()


def test_it_times_a_decision_from_a_submission_known_from_before_the_batch():
    result = batch((5, "rejected", "a", "ana", T0 + timedelta(minutes=2)), known={"a": T0})
    assert list(result.decisions["seconds"]) == [120]
    assert result.resolved == {"a"}


def test_it_counts_a_decision_whose_submission_precedes_the_log_but_does_not_time_it():
    result = batch((5, "approved", "imported", "ana", T0))
    assert list(result.decisions["kind"]) == ["approved"]
    assert list(result.decisions["seconds"]) == [None]
    assert result.resolved == set()


def test_it_keeps_a_transaction_with_a_first_approval_pending():
    result = batch((1, "submitted", "a", "clerk", T0), (2, "approval_recorded", "a", "ana", T0 + timedelta(seconds=5)))
    assert result.decisions.empty
    assert result.submitted == {"a": (T0, 1)}


def test_it_times_a_dual_control_approval_from_the_submission_not_the_first_approval():
    result = batch(
        (1, "submitted", "a", "clerk", T0),
        (2, "approval_recorded", "a", "ana", T0 + timedelta(seconds=5)),
        (3, "approved", "a", "ben", T0 + timedelta(seconds=50)),
    )
    assert list(zip(result.decisions["actor"], result.decisions["seconds"])) == [("ben", 50)]


def test_it_counts_a_reversal_without_timing_it():
    result = batch((7, "reversed", "a", "ana", T0), known={"a": T0 - timedelta(days=1)})
    assert list(zip(result.decisions["kind"], result.decisions["seconds"])) == [("reversed", None)]
    assert result.resolved == set()


def test_it_cuts_decision_weeks_in_local_time_across_a_dst_change():
    # Berlin leaves summer time on Sunday 2026-10-25; Sunday 23:30 local is 22:30 UTC (winter time).
    sunday_late = datetime(2026, 10, 25, 22, 30, tzinfo=timezone.utc)
    monday_early = datetime(2026, 10, 25, 23, 30, tzinfo=timezone.utc)  # 00:30 Monday local
    result = batch((1, "rejected", "a", "x", sunday_late), (2, "rejected", "b", "x", monday_early),
                   time_zone="Europe/Berlin", week_start="monday")
    assert list(result.decisions["week_start"]) == [date(2026, 10, 19), date(2026, 10, 26)]


def test_it_cuts_weeks_on_sunday_when_configured():
    saturday, sunday = datetime(2026, 11, 21, 12, tzinfo=timezone.utc), datetime(2026, 11, 22, 12, tzinfo=timezone.utc)
    result = batch((1, "rejected", "a", "x", saturday), (2, "rejected", "b", "x", sunday), time_zone="UTC", week_start="sunday")
    assert list(result.decisions["week_start"]) == [date(2026, 11, 15), date(2026, 11, 22)]


def test_it_summarizes_each_week_from_all_its_decisions():
    result = batch(
        (1, "submitted", "a", "c", T0), (2, "submitted", "b", "c", T0), (3, "submitted", "d", "c", T0),
        (4, "approved", "a", "ana", T0 + timedelta(seconds=10)),
        (5, "rejected", "b", "ben", T0 + timedelta(seconds=30)),
        (6, "approved", "d", "ana", T0 + timedelta(seconds=20)),
        (7, "reversed", "a", "ben", T0 + timedelta(days=7)),
    )
    summaries = rqf.weekly_summaries(result.decisions)
    assert summaries[date(2026, 11, 16)] == {
        "week_start": "2026-11-16", "approved": 2, "rejected": 1, "reversed": 0, "decisions": 3,
        "time_to_decision_p50_seconds": 20, "time_to_decision_p90_seconds": 30,
        "by_admin": [{"actor": "ana", "decisions": 2}, {"actor": "ben", "decisions": 1}],
    }
    assert summaries[date(2026, 11, 23)]["reversed"] == 1
    assert summaries[date(2026, 11, 23)]["time_to_decision_p50_seconds"] is None


def test_it_imports_nothing_from_django():
    tree = ast.parse(Path(rqf.__file__).read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    assert not {m for m in modules if m and m.split(".")[0] in {"django", "core", "transactions", "rest_framework"}}


@pytest.mark.parametrize("time_zone", ["UTC", "Europe/Berlin", "America/New_York", "Pacific/Apia", "Asia/Kolkata"])
@pytest.mark.parametrize("week_start", ["monday", "sunday"])
def test_it_cuts_a_few_decisions_in_python_exactly_as_frames_cuts_many(time_zone, week_start):
    from analytics.frames import week_start_dates
    import pandas as pd

    # Every half hour over three weeks around the 2026 autumn DST changes, and a few far instants.
    instants = [datetime(2026, 10, 20, tzinfo=timezone.utc) + timedelta(minutes=30 * i) for i in range(3 * 7 * 48)]
    instants += [datetime(1970, 1, 1, tzinfo=timezone.utc), datetime(2011, 12, 29, 10, tzinfo=timezone.utc), datetime(2099, 3, 29, 1, tzinfo=timezone.utc)]
    by_frames = list(week_start_dates(pd.Series(instants, dtype="object"), time_zone=time_zone, week_start=week_start))
    one_by_one = [rqf.decision_weeks([i], time_zone=time_zone, week_start=week_start)[0] for i in instants]
    assert one_by_one == by_frames
    assert rqf.decision_weeks(instants, time_zone=time_zone, week_start=week_start) == by_frames


def test_it_refuses_an_unknown_first_day_of_the_week():
    with pytest.raises(ValueError):
        rqf.decision_weeks([T0], time_zone="UTC", week_start="friday")


# ---- percentile marks: moved by each batch, never recounted ------------------------------------------

def walk(ordered: list, move: rqf.MarkMove, mark):
    """Where the database's index walk lands (analytics.review_queue._marks_update), on a sorted list."""
    if move.direction == rqf.KEEP:
        return mark
    if move.direction == rqf.FROM_BOTTOM:
        return ordered[move.steps]
    at = ordered.index(move.origin)
    return ordered[at + move.steps + 1] if move.direction == rqf.UP else ordered[at - move.steps - 1]


def moved_through(batches: list[list[int]]) -> list[tuple]:
    """Marks after each batch of waits, moved batch by batch as the projector does, beside the recount of all keys."""
    keys, marks, timed, position, seen = [], {p: None for p in rqf.PERCENTILES}, 0, 0, []
    for waits in batches:
        added = []
        for wait in waits:
            position += 1
            added.append((wait, position))
        keys = sorted(keys + added)
        for percent in rqf.PERCENTILES:
            marks[percent] = walk(keys, rqf.move_mark(timed, marks[percent], added, percent), marks[percent])
        timed += len(added)
        seen.append((dict(marks), rqf.week_marks(keys).marks))
    return seen


def test_a_moved_mark_is_the_key_at_the_nearest_rank_after_every_batch_with_many_ties():
    for moved, recounted in moved_through([[5, 5, 5], [5], [1, 1, 9, 9, 5], [0] * 12, [100] * 30, [5, 6, 7]]):
        assert moved == recounted


def test_a_mark_moves_fewer_entries_than_the_batch_holds_however_large_the_week():
    mark = rqf.week_marks([(s, p) for p, s in enumerate(range(1_000_000))]).marks[50]
    assert mark == (499_999, 499_999)  # rank 500,000 of 1,000,000
    # Two of three below it: it is now rank 500,002, which is the new target, ceil(1,000,003 / 2).
    assert rqf.move_mark(1_000_000, mark, [(5, 1_000_001), (2_000_000, 1_000_002), (7, 1_000_003)], 50) == rqf.MarkMove(rqf.KEEP, origin=mark)
    # All three above it: two entries up, the second one after it (steps counts the ones skipped).
    assert rqf.move_mark(1_000_000, mark, [(2_000_000 + i, 1_000_001 + i) for i in range(3)], 50) == rqf.MarkMove(rqf.UP, origin=mark, steps=1)
    # Four below it: two entries down.
    assert rqf.move_mark(1_000_000, mark, [(i, 1_000_001 + i) for i in range(4)], 50) == rqf.MarkMove(rqf.DOWN, origin=mark, steps=1)


def test_a_week_s_first_timed_decisions_are_counted_from_the_bottom():
    assert rqf.move_mark(0, None, [(9, 1), (3, 2), (4, 3)], 90) == rqf.MarkMove(rqf.FROM_BOTTOM, steps=2)


def test_the_marks_of_no_decisions_are_none_and_of_one_are_that_one():
    assert rqf.week_marks([]) == rqf.WeekMarks(timed=0, marks={50: None, 90: None})
    assert rqf.week_marks([(7, 3)]) == rqf.WeekMarks(timed=1, marks={50: (7, 3), 90: (7, 3)})


def test_moved_marks_equal_recounted_ones_for_any_batches():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.lists(st.integers(0, 20), min_size=1, max_size=25), max_size=25))
    def check(batches):
        for moved, recounted in moved_through(batches):
            assert moved == recounted

    check()
