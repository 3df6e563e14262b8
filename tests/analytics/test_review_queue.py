"""The review-queue projection: decisions in the week they were made, time to decision, pending now,
the same answer however the log is cut into batches, rebuild and verify."""
import io
import uuid
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from analytics import registry
from analytics.models import (
    ProjectionCheckpoint, ReviewQueueAdminWeek, ReviewQueueDecision, ReviewQueuePending, ReviewQueueTotal, ReviewQueueWeek,
)
from analytics.projection import project_next_batch
from analytics.review_queue import ReviewQueue, rebuild_review_queue, verify_review_queue
from analytics.review_queue_selectors import review_queue, week_objects
from core import eventstore
from realtime.broadcast import item
from tests.database import analyzed_plan, rows_read
from transactions import events as txn_events

pytestmark = pytest.mark.django_db
MON = datetime(2026, 11, 16, 9, 0, tzinfo=timezone.utc)
WEEK = date(2026, 11, 16)
NEXT_WEEK = date(2026, 11, 23)


@contextmanager
def clock(at: datetime):
    with mock.patch("django.utils.timezone.now", return_value=at):
        yield


def append(stream, event, *, actor: str, at: datetime) -> int:
    """One event recorded at `at` by `actor` (straight into the log: the read model is not the subject here)."""
    with clock(at), transaction.atomic():
        [recorded] = eventstore.append(
            stream_id=stream, expected_version=eventstore.stream_version(stream), events=[event], metadata={"actor": actor}
        )
    return recorded.position


def submit(at: datetime, *, actor: str = "clerk", amount: str = "10.00") -> uuid.UUID:
    stream = uuid.uuid4()
    append(stream, txn_events.submitted(transaction_id=stream, amount=Decimal(amount), currency="EUR", occurred_at=at,
                                        reference="", description=""), actor=actor, at=at)
    return stream


def approve(stream, at: datetime, *, actor: str = "ana", amount: str = "10.00") -> int:
    return append(stream, txn_events.approved(transaction_id=stream, amount=Decimal(amount), currency="EUR", occurred_at=MON,
                                              reason="ok"), actor=actor, at=at)


def record_first_approval(stream, at: datetime, *, actor: str = "ana") -> int:
    return append(stream, txn_events.approval_recorded(transaction_id=stream, amount=Decimal("10.00"), currency="EUR", reason="ok",
                                                       threshold=Decimal("10.00")), actor=actor, at=at)


def reject(stream, at: datetime, *, actor: str = "ben") -> int:
    return append(stream, txn_events.rejected(transaction_id=stream, reason="no"), actor=actor, at=at)


def reverse(stream, at: datetime, *, actor: str = "ana") -> int:
    return append(stream, txn_events.reversed_(transaction_id=stream, amount=Decimal("10.00"), currency="EUR", reason="refund"),
                  actor=actor, at=at)


def project_all(batch_size: int = 5000) -> list:
    batches = []
    while batch := project_next_batch(batch_size=batch_size):
        batches.append(batch)
    return batches


def state() -> dict:
    """Everything the projection stores, in comparable form."""
    weeks = sorted(ReviewQueueWeek.objects.values_list("week_start", flat=True))
    return {
        "weeks": week_objects(weeks),
        "last_positions": dict(ReviewQueueWeek.objects.values_list("week_start", "last_position")),
        "marks": list(ReviewQueueWeek.objects.order_by("week_start").values_list(
            "week_start", "timed", "p50_seconds", "p50_position", "p90_seconds", "p90_position")),
        "pending": dict(ReviewQueuePending.objects.values_list("transaction_id", "submitted_at")),
        "pending_count": ReviewQueueTotal.objects.filter(id=1).values_list("pending", flat=True).first(),
        "decisions": list(ReviewQueueDecision.objects.order_by("position").values_list("position", "week_start", "kind", "actor", "seconds")),
        "checkpoint": ProjectionCheckpoint.objects.get(name="review_queue").position,
    }


def forget_the_review_queue():
    for model in (ReviewQueuePending, ReviewQueueDecision, ReviewQueueWeek, ReviewQueueAdminWeek, ReviewQueueTotal):
        model.objects.all().delete()
    ProjectionCheckpoint.objects.filter(name="review_queue").update(position=0)


def a_busy_fortnight() -> None:
    """Submissions, approvals (one under dual control), rejections, a reversal, over two weeks."""
    a, b, c, d, e = (submit(MON + timedelta(minutes=i)) for i in range(5))
    approve(a, MON + timedelta(minutes=10))                                    # 600 s
    reject(b, MON + timedelta(minutes=1, seconds=30))                          # 30 s
    record_first_approval(c, MON + timedelta(minutes=3))
    approve(c, MON + timedelta(hours=1, minutes=2), actor="ben")               # 3600 s after submission
    reverse(a, MON + timedelta(days=7, hours=1))                               # next week
    reject(d, MON + timedelta(days=7, hours=2), actor="ana")                   # next week
    submit(MON + timedelta(days=8))                                            # still pending, like e


def test_it_counts_each_kind_of_decision_in_the_week_it_was_made_with_times_and_admins():
    a_busy_fortnight()
    project_all()
    weeks = week_objects([WEEK, NEXT_WEEK])
    assert weeks[WEEK] == {
        "week_start": "2026-11-16", "approved": 2, "rejected": 1, "reversed": 0, "decisions": 3,
        "time_to_decision_p50_seconds": 600, "time_to_decision_p90_seconds": 3600,
        "by_admin": [{"actor": "ben", "decisions": 2}, {"actor": "ana", "decisions": 1}],
    }
    assert weeks[NEXT_WEEK]["approved"] == 0 and weeks[NEXT_WEEK]["rejected"] == 1 and weeks[NEXT_WEEK]["reversed"] == 1
    # The rejection of d was 7 days 2 hours minus 3 minutes after its submission.
    seconds = 7 * 86400 + 2 * 3600 - 3 * 60
    assert (weeks[NEXT_WEEK]["time_to_decision_p50_seconds"], weeks[NEXT_WEEK]["time_to_decision_p90_seconds"]) == (seconds, seconds)
    assert weeks[NEXT_WEEK]["by_admin"] == [{"actor": "ana", "decisions": 2}]


def test_it_keeps_what_waits_pending_and_the_oldest_submission_first():
    a_busy_fortnight()
    project_all()
    report = review_queue(start=WEEK, end=NEXT_WEEK, now=MON + timedelta(days=9))
    # e (submitted at MON + 4 min) and the submission of MON + 8 days: c left when its second approval came.
    assert report.pending == {
        "count": 2, "oldest_submitted_at": "2026-11-16T09:04:00Z", "oldest_age_seconds": 9 * 86400 - 4 * 60,
    }


def test_it_keeps_a_transaction_awaiting_its_second_approval_pending():
    stream = submit(MON)
    record_first_approval(stream, MON + timedelta(seconds=5))
    project_all()
    assert review_queue(now=MON + timedelta(seconds=10)).pending["count"] == 1
    assert not ReviewQueueDecision.objects.exists()


def test_it_gives_the_same_rows_however_the_log_is_cut_into_batches():
    a_busy_fortnight()
    project_all()
    whole = state()
    # Every size up to the whole log (its positions need not start at 1: the sequence outlives earlier tests).
    events = len(eventstore.read_all(after=0, limit=1000))
    for size in range(1, events + 1):
        forget_the_review_queue()
        project_all(batch_size=size)
        assert state() == whole, f"batches of {size}"


def test_it_gives_incrementally_what_a_rebuild_gives_and_verify_agrees():
    a_busy_fortnight()
    project_all(batch_size=2)
    incremental = state()
    assert verify_review_queue() == []
    rebuilt = rebuild_review_queue()
    assert rebuilt.position == eventstore.last_position()
    assert state() == incremental
    assert verify_review_queue() == []


def test_a_rebuild_leaves_weekly_income_alone():
    a_busy_fortnight()
    project_all()
    ProjectionCheckpoint.objects.filter(name="weekly_income").update(position=3)
    rebuild_review_queue()
    assert ProjectionCheckpoint.objects.get(name="weekly_income").position == 3


def test_rebuild_through_the_registry_under_its_name():
    a_busy_fortnight()
    project_all()
    before = state()
    forget_the_review_queue()
    rebuilt = registry.get("review_queue").rebuild(readers=1)
    assert rebuilt.position == eventstore.last_position() and "12 events read, 5 decisions in 2 weeks, 2 pending" in rebuilt.summary
    assert state() == before


def test_verify_names_a_week_that_differs_from_the_log():
    a_busy_fortnight()
    project_all()
    ReviewQueueWeek.objects.filter(week_start=WEEK).update(p50_seconds=1)
    ReviewQueuePending.objects.all().delete()
    problems = verify_review_queue()
    assert any(p.startswith("2026-11-16: stored") and "p50=1 " in p for p in problems)
    assert any(p.startswith("pending: 0 stored, log says 2") for p in problems)


def test_verify_names_marks_that_would_lead_the_next_batch_astray():
    a, b, c = (submit(MON + timedelta(minutes=i)) for i in range(3))
    for stream in (a, b, c):
        approve(stream, MON + timedelta(minutes=10))  # waits of 600, 540 and 480 s
    project_all()
    assert verify_review_queue() == []
    # The same seconds, another row: today's figures agree, the mark does not.
    ReviewQueueWeek.objects.filter(week_start=WEEK).update(p50_position=1)
    assert [p for p in verify_review_queue() if "marks" in p] == [
        f"2026-11-16: marks (timed, {{percent: (seconds, position)}}) stored (3, {{50: (540, 1), 90: (600, {ReviewQueueDecision.objects.get(seconds=600).position})}}), "
        f"log says (3, {{50: (540, {ReviewQueueDecision.objects.get(seconds=540).position}), 90: (600, {ReviewQueueDecision.objects.get(seconds=600).position})}})"
    ]


def test_verify_names_a_kept_pending_count_that_differs_from_the_rows():
    a_busy_fortnight()
    project_all()
    assert ReviewQueueTotal.objects.get(id=1).pending == 2
    ReviewQueueTotal.objects.filter(id=1).update(pending=3)
    assert verify_review_queue() == ["pending count: 3 kept, 2 pending rows and in the log"]


def test_the_marks_follow_many_batches_of_tied_waits_as_a_recount_would():
    import random

    from analytics import review_queue_frames as rqf

    rng = random.Random(7)
    streams = [submit(MON + timedelta(seconds=i)) for i in range(240)]
    project_all()
    done = 0
    while done < len(streams):
        size = rng.randint(1, 30)
        for i, stream in enumerate(streams[done:done + size], start=done):
            approve(stream, MON + timedelta(seconds=i + rng.choice((3, 3, 3, 10, 60, 61, 3600))))  # ties on purpose
        done += size
        project_all()
        keys = ReviewQueueDecision.objects.filter(week_start=WEEK, seconds__isnull=False).values_list("seconds", "position")
        expected = rqf.week_marks(keys)
        week = ReviewQueueWeek.objects.get(week_start=WEEK)
        assert (week.timed, {50: (week.p50_seconds, week.p50_position), 90: (week.p90_seconds, week.p90_position)}) == (
            expected.timed, expected.marks), f"after {done}"
    assert verify_review_queue() == []


@pytest.mark.needs_postgres
def test_a_batch_walks_a_few_index_entries_however_many_decisions_the_week_holds():
    from django.db import connection

    from analytics import review_queue as rq
    from analytics import review_queue_frames as rqf

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO analytics_reviewqueuedecision (position, transaction_id, week_start, kind, actor, seconds) "
            "SELECT g, gen_random_uuid(), %s, 'approved', 'ana', g %% 5000 FROM generate_series(1, 50000) g",
            [WEEK],
        )
        cursor.execute("ANALYZE analytics_reviewqueuedecision")
    rq.recount_from_rows()
    week = ReviewQueueWeek.objects.get(week_start=WEEK)
    before = rqf.WeekMarks(timed=week.timed, marks={50: (week.p50_seconds, week.p50_position), 90: (week.p90_seconds, week.p90_position)})
    added = [(4999, 50001), (4999, 50002), (4999, 50003)]  # all three above both marks: each moves up
    ReviewQueueDecision.objects.bulk_create([
        ReviewQueueDecision(position=p, transaction_id=uuid.uuid4(), week_start=WEEK, kind="approved", actor="ana", seconds=s) for s, p in added
    ])
    sql, params = rq._marks_statement(WEEK, before, added)
    plan = analyzed_plan(sql, params)
    # 50,000 timed decisions in the week; each mark moves one entry up: a couple of entries per mark.
    assert rows_read(plan, "analytics_reviewqueuedecision") <= 6
    # And where it lands is where a recount of the 50,003 lands.
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    week = ReviewQueueWeek.objects.get(week_start=WEEK)
    recounted = rqf.week_marks(ReviewQueueDecision.objects.filter(week_start=WEEK).values_list("seconds", "position"))
    assert (week.timed, {50: (week.p50_seconds, week.p50_position), 90: (week.p90_seconds, week.p90_position)}) == (
        recounted.timed, recounted.marks)


def test_it_counts_a_decision_whose_submission_precedes_the_log_without_timing_it():
    imported = uuid.uuid4()
    # A stream whose start is not in this log (imported from elsewhere): only its decision is.
    append(imported, txn_events.rejected(transaction_id=imported, reason="dup"), actor="ana", at=MON)
    project_all()
    assert week_objects([WEEK])[WEEK] == {
        "week_start": "2026-11-16", "approved": 0, "rejected": 1, "reversed": 0, "decisions": 1,
        "time_to_decision_p50_seconds": None, "time_to_decision_p90_seconds": None,
        "by_admin": [{"actor": "ana", "decisions": 1}],
    }
    assert verify_review_queue() == []


def test_it_times_a_transaction_submitted_and_decided_in_one_batch():
    stream = submit(MON)
    approve(stream, MON + timedelta(seconds=42))
    [batch] = project_all()
    assert week_objects([WEEK])[WEEK]["time_to_decision_p50_seconds"] == 42
    assert not ReviewQueuePending.objects.exists()
    assert batch.event_count == 2


def test_a_week_of_reversals_only_has_no_percentiles():
    stream = submit(MON - timedelta(weeks=1))
    approve(stream, MON - timedelta(weeks=1))
    reverse(stream, MON)
    project_all()
    week = week_objects([WEEK])[WEEK]
    assert (week["reversed"], week["time_to_decision_p50_seconds"], week["time_to_decision_p90_seconds"]) == (1, None, None)


def configure(settings, *, time_zone="UTC", week_start="monday"):
    """Settings as a fresh install would have them: every checkpoint computed for them (nothing projected yet)."""
    settings.ANALYTICS_TIME_ZONE, settings.ANALYTICS_WEEK_START = time_zone, week_start
    ProjectionCheckpoint.objects.update(config=f"{time_zone}/{week_start}")


def test_it_cuts_weeks_in_local_time_across_a_dst_change(settings):
    configure(settings, time_zone="Europe/Berlin")
    # Berlin leaves summer time on Sunday 2026-10-25: 22:30 UTC that day is 23:30 Sunday local, 23:30 UTC is Monday.
    late_sunday, early_monday = datetime(2026, 10, 25, 22, 30, tzinfo=timezone.utc), datetime(2026, 10, 25, 23, 30, tzinfo=timezone.utc)
    reject(submit(late_sunday - timedelta(hours=1)), late_sunday)
    reverse(uuid.uuid4(), early_monday)
    project_all()
    weeks = week_objects([date(2026, 10, 19), date(2026, 10, 26)])
    assert (weeks[date(2026, 10, 19)]["rejected"], weeks[date(2026, 10, 19)]["time_to_decision_p50_seconds"]) == (1, 3600)
    assert weeks[date(2026, 10, 26)]["reversed"] == 1
    assert verify_review_queue() == []


def test_it_cuts_weeks_on_sunday_when_so_configured(settings):
    configure(settings, week_start="sunday")
    saturday, sunday = datetime(2026, 11, 21, 23, 0, tzinfo=timezone.utc), datetime(2026, 11, 22, 0, 30, tzinfo=timezone.utc)
    approve(submit(saturday), saturday)
    reject(submit(saturday), sunday)
    project_all()
    weeks = week_objects([date(2026, 11, 15), date(2026, 11, 22)])
    assert weeks[date(2026, 11, 15)]["approved"] == 1 and weeks[date(2026, 11, 15)]["rejected"] == 0
    assert weeks[date(2026, 11, 22)]["rejected"] == 1 and weeks[date(2026, 11, 22)]["time_to_decision_p50_seconds"] == 5400
    assert verify_review_queue() == []


def test_each_changed_week_is_pushed_with_the_batch_position_and_pending_now():
    stream = submit(MON)
    project_all()
    approve(stream, MON + timedelta(seconds=30))
    other = submit(MON + timedelta(days=7))
    reject(other, MON + timedelta(days=7, seconds=5))
    [batch] = project_all()
    pushed = [m for m in batch.messages if m["type"] == "review_queue.updated"]
    assert [m["week"]["week_start"] for m in pushed] == ["2026-11-16", "2026-11-23"]
    assert all(m["seq"] == batch.through for m in pushed)
    assert pushed[0]["week"]["approved"] == 1 and pushed[1]["week"]["rejected"] == 1
    assert all(m["pending"] == {"count": 0, "oldest_submitted_at": None, "oldest_age_seconds": None} for m in pushed)
    # The hub orders and conflates them per week.
    assert [item(m)["key"] for m in pushed] == ["review_queue/2026-11-16", "review_queue/2026-11-23"]


def test_a_batch_of_submissions_only_pushes_the_current_week_with_the_new_pending_count():
    submit(MON)
    [batch] = project_all()
    [pushed] = [m for m in batch.messages if m["type"] == "review_queue.updated"]
    assert pushed["pending"]["count"] == 1 and pushed["pending"]["oldest_submitted_at"] == "2026-11-16T09:00:00Z"
    assert pushed["week"]["decisions"] == 0


def test_a_batch_without_queue_events_pushes_nothing_for_it():
    stream = uuid.uuid4()
    append(stream, txn_events.approval_recorded(transaction_id=stream, amount=Decimal("1.00"), currency="EUR", reason="",
                                                threshold=Decimal("1.00")), actor="ana", at=MON)
    [batch] = project_all()
    assert not [m for m in batch.messages if m["type"] == "review_queue.updated"]


def test_it_is_registered_with_its_own_checkpoint_and_the_queue_events():
    assert "analytics.review_queue.ReviewQueue" in registry.PROJECTIONS
    projection = registry.get("review_queue")
    assert isinstance(projection, ReviewQueue)
    assert projection.handles == {
        txn_events.SUBMITTED, txn_events.APPROVAL_RECORDED, txn_events.APPROVED, txn_events.REJECTED, txn_events.REVERSED,
    }
    submit(MON)
    project_all()
    assert ProjectionCheckpoint.objects.get(name="review_queue").position == eventstore.last_position()


def test_the_commands_rebuild_and_verify_the_review_queue_alone():
    a_busy_fortnight()
    project_all()
    before = state()
    income = ProjectionCheckpoint.objects.get(name="weekly_income").position
    forget_the_review_queue()
    out = io.StringIO()
    with mock.patch("analytics.management.commands.rebuild_projections.publish_resync"):
        call_command("rebuild_projections", "--projection", "review_queue", stdout=out)
    assert "review_queue rebuilt through position" in out.getvalue()
    assert state() == before
    assert ProjectionCheckpoint.objects.get(name="weekly_income").position == income
    call_command("verify_projections", "--projection", "review_queue", stdout=io.StringIO())
    ReviewQueueAdminWeek.objects.filter(actor="ben").update(decisions=7)
    err = io.StringIO()
    with pytest.raises(CommandError, match="review_queue: 1 mismatch"):
        call_command("verify_projections", "--projection", "review_queue", stdout=io.StringIO(), stderr=err)
    assert "review_queue: 2026-11-16: stored" in err.getvalue() and "ben=7" in err.getvalue()


def test_the_stored_percentiles_follow_the_nearest_rank_as_each_decision_arrives():
    from analytics.review_queue_frames import time_percentiles

    waits = [17, 3, 250, 41, 9, 3600, 120, 5, 77, 1000, 2, 64]
    for n, wait in enumerate(waits, start=1):
        at = MON + timedelta(hours=n)
        approve(submit(at), at + timedelta(seconds=wait))
        project_all()
        week = week_objects([WEEK])[WEEK]
        expected = time_percentiles(waits[:n])
        assert (week["time_to_decision_p50_seconds"], week["time_to_decision_p90_seconds"]) == expected, f"after {n}"
    assert time_percentiles(waits) == (41, 1000)


def test_it_follows_the_real_commands_with_four_eyes_and_a_reversal(settings):
    from transactions import services

    settings.APPROVAL_DUAL_CONTROL = {"EUR": Decimal("100.00")}
    with clock(MON):
        small = services.transaction_submit(amount=Decimal("5.00"), currency="EUR", occurred_at=None, actor="clerk")
        large = services.transaction_submit(amount=Decimal("500.00"), currency="EUR", occurred_at=None, actor="clerk")
        withdrawn = services.transaction_submit(amount=Decimal("7.00"), currency="EUR", occurred_at=None, actor="clerk")
    with clock(MON + timedelta(minutes=5)):
        services.transaction_approve(transaction_id=small.id, actor="ana", reason="ok")
        services.transaction_approve(transaction_id=large.id, actor="ana", reason="first")
        services.transaction_reject(transaction_id=withdrawn.id, actor="clerk", reason="withdrawn")
    project_all()
    assert review_queue(start=WEEK, end=WEEK).pending["count"] == 1  # the large one awaits its second approval
    with clock(MON + timedelta(hours=1)):
        services.transaction_approve(transaction_id=large.id, actor="ben", reason="second")
        services.transaction_reverse(transaction_id=small.id, actor="ben", reason="refund")
    project_all()
    report = review_queue(start=WEEK, end=WEEK)
    [week] = report.weeks
    assert (week["approved"], week["rejected"], week["reversed"]) == (2, 1, 1)
    assert week["by_admin"] == [{"actor": "ben", "decisions": 2}, {"actor": "ana", "decisions": 1}, {"actor": "clerk", "decisions": 1}]
    # 300 s twice (small, withdrawn), 3600 s for the large one (from its submission, not its first approval).
    assert (week["time_to_decision_p50_seconds"], week["time_to_decision_p90_seconds"]) == (300, 3600)
    assert report.pending["count"] == 0 and report.as_of == eventstore.last_position()
    assert verify_review_queue() == []


def test_a_rebuild_catches_up_past_its_cut_with_what_the_projector_applied_meanwhile(monkeypatch):
    a_busy_fortnight()
    project_all()
    live = state()
    # The bulk read stops at an earlier cut, as when decisions keep coming during a rebuild.
    monkeypatch.setattr("analytics.review_queue._gap_free_cut", lambda: eventstore.last_position() - 4)
    rebuilt = rebuild_review_queue()
    assert rebuilt.position == eventstore.last_position()
    assert state() == live


@pytest.mark.timeout(20)
def test_it_rebuilds_from_the_log_as_it_is_when_the_checkpoint_is_ahead_of_it():
    # A log restored from an older backup under newer rows: the rebuild is the repair, so it must not wait
    # (holding the checkpoint lock every projection waits on) for events that will never come.
    a_busy_fortnight()
    project_all()
    live = state()
    ProjectionCheckpoint.objects.filter(name="review_queue").update(position=eventstore.last_position() + 50)
    rebuilt = rebuild_review_queue()
    assert rebuilt.position == eventstore.last_position()
    assert ProjectionCheckpoint.objects.get(name="review_queue").position == eventstore.last_position()
    assert state() == live


@pytest.mark.parametrize("actor", [None, 5, ["ana"]])
def test_it_counts_a_decision_whose_metadata_names_no_actor_as_by_nobody_like_the_transaction_list(actor):
    # An imported log may carry {"actor": null}: the transaction list says "" (transactions.replay), never "None".
    stream = submit(MON)
    with clock(MON + timedelta(minutes=5)), transaction.atomic():
        eventstore.append(stream_id=stream, expected_version=1, events=[txn_events.rejected(transaction_id=stream, reason="no")],
                          metadata={"actor": actor})
    project_all()
    [week] = review_queue(start=WEEK, end=WEEK).weeks
    assert week["by_admin"] == [{"actor": "", "decisions": 1}]
    assert verify_review_queue() == []
    assert rebuild_review_queue() and review_queue(start=WEEK, end=WEEK).weeks == [week]
