"""The weekly income projector: checkpoint with the rows, idempotent, only approved income, rebuild and verify."""
from datetime import date, datetime, timedelta, timezone

import pytest
from django.test import override_settings

from analytics import projection, selectors
from analytics.models import ProjectionCheckpoint, WeeklyIncome, WeeklyIncomeHistory
from analytics.projection import ProjectionConfigChanged, ProjectionFailed, project_next_batch, rebuild_weekly_income
from analytics.verification import verify_weekly_income
from core import eventstore
from transactions import services
from tests.factories import approved, submit

pytestmark = pytest.mark.django_db
MON = datetime(2026, 11, 16, 12, 0, tzinfo=timezone.utc)
NEXT_MON = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def next_week_is_accepted(settings):
    # These tests cut weeks around fixed dates, one of them next week; the occurred_at
    # window (tested in tests/transactions) would refuse it as too far in the future.
    settings.OCCURRED_AT_MAX_AHEAD = timedelta(days=3650)


def project_all():
    batches = []
    while batch := project_next_batch(batch_size=3):
        batches.append(batch)
    return batches


def totals():
    return {(r.week_start, r.currency): (r.total_minor, r.count) for r in WeeklyIncome.objects.all()}


def checkpoint():
    return ProjectionCheckpoint.objects.get(name="weekly_income").position


def test_only_approved_transactions_count():
    approved("10.00", "EUR", MON)
    submit("99.00", "EUR", MON)
    rejected = submit("50.00", "EUR", MON)
    services.transaction_reject(transaction_id=rejected.id, actor="t", reason="no")
    project_all()
    assert totals() == {(date(2026, 11, 16), "EUR"): (1000, 1)}


def test_the_checkpoint_moves_to_the_last_event_with_the_rows():
    approved("10.00", "EUR", MON)
    approved("1500", "JPY", NEXT_MON)
    project_all()
    assert checkpoint() == eventstore.last_position()
    assert totals() == {(date(2026, 11, 16), "EUR"): (1000, 1), (date(2026, 11, 23), "JPY"): (1500, 1)}


def test_running_the_projector_again_changes_nothing():
    approved("10.00", "EUR", MON)
    project_all()
    before = (totals(), checkpoint())
    assert project_next_batch() is None
    assert project_all() == []
    assert (totals(), checkpoint()) == before


def test_new_approvals_add_to_the_existing_week():
    approved("10.00", "EUR", MON)
    project_all()
    approved("2.50", "EUR", MON)
    [batch] = project_all()
    assert totals() == {(date(2026, 11, 16), "EUR"): (1250, 2)}
    [update] = [m for m in batch.messages if m["type"] == "weekly_income.updated"]
    assert update == {
        "type": "weekly_income.updated",
        "seq": batch.through,
        "week_start": "2026-11-16",
        "currency": "EUR",
        "total": "12.50",
        "count": 2,
        "gross": "12.50",
        "reversed": "0.00",
        "reversed_count": 0,
        "net": "12.50",
    }


def test_a_batch_carries_transaction_messages_in_position_order():
    txn = submit("5.00", "USD", MON)
    services.transaction_approve(transaction_id=txn.id, actor="ana", reason="ok")
    other = submit("7.00", "USD", MON)
    batch = project_next_batch()
    kinds = [(m["type"], m["seq"]) for m in batch.messages if m["type"].startswith("transaction.")]
    positions = [e.position for e in eventstore.read_all()]
    assert kinds == [("transaction.submitted", positions[0]), ("transaction.approved", positions[1]), ("transaction.submitted", positions[2])]
    submitted = batch.messages[0]["transaction"]
    # The submission's message shows the transaction as it was then, not as it is now.
    assert (submitted["id"], submitted["status"], submitted["version"]) == (str(txn.id), "pending", 1)
    assert batch.messages[1]["transaction"]["status"] == "approved"
    assert batch.messages[2]["transaction"]["id"] == str(other.id)


def test_it_sends_each_transaction_as_the_rest_api_shows_it(api):
    txn = submit("5.00", "USD", MON)
    services.transaction_approve(transaction_id=txn.id, actor="ana", reason="ok <fine>")
    batch = project_next_batch()
    submitted, decided = (m["transaction"] for m in batch.messages if m["type"].startswith("transaction."))
    shown = api.get(f"/api/transactions/{txn.id}/").json()
    assert decided == shown
    # The submission as it stood then: the REST body of a pending transaction at version 1.
    assert submitted == {**shown, "status": "pending", "version": 1, "decided_at": None, "decided_by": "", "decision_reason": ""}


def test_it_writes_a_batch_in_one_statement_however_many_buckets_it_touches():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    approved("10.00", "EUR", MON)
    project_all()
    approved("5.00", "EUR", MON)
    approved("7.00", "USD", MON)
    approved("1500", "JPY", NEXT_MON)
    with CaptureQueriesContext(connection) as queries:
        project_next_batch()
    # The rows get their increments in one upsert (new totals returned) whose statement inserts the history too.
    writes = [q["sql"] for q in queries.captured_queries if "analytics_weeklyincome" in q["sql"]]
    assert len(writes) == 1
    assert totals() == {
        (date(2026, 11, 16), "EUR"): (1500, 2), (date(2026, 11, 16), "USD"): (700, 1), (date(2026, 11, 23), "JPY"): (1500, 1),
    }
    approvals = [e.position for e in eventstore.read_all() if e.type == "TransactionApproved"]
    assert [(h.currency, h.position, h.total_minor, h.count) for h in WeeklyIncomeHistory.objects.order_by("position")] == [
        ("EUR", approvals[0], 1000, 1), ("EUR", approvals[1], 1500, 2), ("USD", approvals[2], 700, 1), ("JPY", approvals[3], 1500, 1),
    ]


def test_the_projection_refuses_to_mix_week_definitions():
    approved("10.00", "EUR", MON)
    project_all()
    with override_settings(ANALYTICS_WEEK_START="sunday"), pytest.raises(ProjectionConfigChanged, match="rebuild_projections"):
        project_next_batch()


def test_rebuilding_recomputes_every_row_from_the_log():
    approved("10.00", "EUR", MON)
    approved("20.00", "EUR", NEXT_MON)
    project_all()
    WeeklyIncome.objects.filter(week_start=date(2026, 11, 16)).update(total_minor=1)
    with override_settings(ANALYTICS_WEEK_START="sunday"):
        assert rebuild_weekly_income() == eventstore.last_position()
        assert totals() == {(date(2026, 11, 15), "EUR"): (1000, 1), (date(2026, 11, 22), "EUR"): (2000, 1)}
        assert verify_weekly_income() == []


def test_verify_reports_a_tampered_row_as_a_diff():
    approved("10.00", "EUR", MON)
    project_all()
    assert verify_weekly_income() == []
    WeeklyIncome.objects.update(total_minor=999)
    assert verify_weekly_income() == [
        "2026-11-16 EUR: stored total=9.99 count=1 gross=10.00 reversed=0.00 reversed_count=0, "
        "log says total=10.00 count=1 gross=10.00 reversed=0.00 reversed_count=0"
    ]


def test_verify_reports_a_missing_row():
    approved("10.00", "EUR", MON)
    project_all()
    WeeklyIncome.objects.all().delete()
    assert verify_weekly_income() == ["2026-11-16 EUR: stored total=0.00 count=0, log says total=10.00 count=1"]


def test_verify_only_compares_events_the_projection_has_applied():
    approved("10.00", "EUR", MON)
    project_all()
    approved("5.00", "EUR", MON)  # committed, not yet projected
    assert verify_weekly_income() == []


def test_the_task_projects_and_publishes_after_commit(django_capture_on_commit_callbacks, monkeypatch):
    published = []
    monkeypatch.setattr("analytics.tasks.publish", lambda messages, **_: published.extend(messages))
    with django_capture_on_commit_callbacks(execute=True):
        approved("10.00", "EUR", MON)
    assert checkpoint() == eventstore.last_position()
    assert [m["type"] for m in published] == [
        "transaction.submitted", "transaction.approved", "weekly_income.updated", "review_queue.updated",
    ]
    assert selectors.projection_position() == eventstore.last_position()


def test_it_ends_a_run_after_a_short_batch_without_asking_the_log_again(monkeypatch):
    from analytics.tasks import project_and_publish

    monkeypatch.setattr("analytics.tasks.publish", lambda messages, **_: None)
    approved("10.00", "EUR", MON)
    approved("20.00", "EUR", MON)  # four events
    monkeypatch.setitem(projection.project_next_batch.__kwdefaults__, "batch_size", 3)
    reads = []
    real = projection.project_next_batch
    monkeypatch.setattr(projection, "project_next_batch", lambda **kw: reads.append(kw) or real(**kw))
    # A full batch (3 of 3) means more may be there: read on; the short one (1 of 3) ends the run.
    assert project_and_publish() == 4
    assert len(reads) == 2 and checkpoint() == eventstore.last_position()


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_it_commits_a_batch_without_waiting_for_the_disk_and_only_that_transaction(monkeypatch):
    from django.db import connection

    def synchronous_commit():
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return cursor.fetchone()[0]

    seen = []
    real_messages = projection.transaction_messages  # runs after the checkpoint moved, before COMMIT
    monkeypatch.setattr(projection, "transaction_messages", lambda batch: seen.append(synchronous_commit()) or real_messages(batch))
    monkeypatch.setattr("analytics.tasks.publish", lambda messages, **_: None)
    approved("10.00", "EUR", MON)  # committed: the embedded-mode wake-up projects it in this process
    # The projector's own transaction skips the WAL flush; the connection's later work (a command, in
    # embedded mode) is durable again.
    assert seen and set(seen) == {"off"} and synchronous_commit() == "on"
    assert totals() == {(date(2026, 11, 16), "EUR"): (1000, 1)}


def test_the_periodic_catch_up_publishes_an_empty_heartbeat_batch_when_idle(monkeypatch):
    from analytics.tasks import catch_up_projections

    published = []
    monkeypatch.setattr("analytics.tasks.publish", lambda messages, **range_: published.append((messages, range_)))
    approved("10.00", "EUR", MON)
    assert catch_up_projections() > 0
    position = checkpoint()
    assert catch_up_projections() == 0
    assert published[-1] == ([], {"after": position, "through": position})


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_an_event_that_took_a_lower_position_but_commits_later_is_still_projected(monkeypatch):
    """Hold A's transaction open after it appended; B appends next; the projector runs meanwhile."""
    import threading

    from django.db import connections

    from tests.factories import project_all, submit

    submit()  # a first event and the checkpoint row exist; project them
    slow, fast = submit("7.00", "EUR", MON), submit("5.00", "EUR", MON)
    project_all()
    a_appended, release_a, b_done = threading.Event(), threading.Event(), threading.Event()

    real_append = eventstore.append

    def append_then_hold_for_a(**kwargs):
        # A's command stays open right after its append (commands refuse to be nested,
        # so the transaction is held from inside it).
        recorded = real_append(**kwargs)
        if kwargs["stream_id"] == slow.id:
            a_appended.set()
            release_a.wait(10)
        return recorded

    monkeypatch.setattr(eventstore, "append", append_then_hold_for_a)
    # Commands then append with eventstore.append in a transaction of their own, which the wrapper
    # above holds open; alone (append_alone) the append would commit within its own statement.
    monkeypatch.setattr(eventstore, "can_append_alone", lambda: False)

    def approve_in_held_transaction(txn_id):
        try:
            services.transaction_approve(transaction_id=txn_id, actor="a", reason="slow")
        finally:
            connections.close_all()

    def approve(txn_id):
        try:
            a_appended.wait(10)
            services.transaction_approve(transaction_id=txn_id, actor="b", reason="fast")
            b_done.set()
        finally:
            connections.close_all()

    project_all()
    threads = [threading.Thread(target=approve_in_held_transaction, args=(slow.id,)), threading.Thread(target=approve, args=(fast.id,))]
    for thread in threads:
        thread.start()
    assert a_appended.wait(10)
    b_done.wait(0.5)
    project_all()  # the projector runs while A is still open
    release_a.set()
    for thread in threads:
        thread.join(10)
    project_all()
    assert totals()[(date(2026, 11, 16), "EUR")] == (1200, 2)
    assert checkpoint() == eventstore.last_position()


def round_trips_of_next_batch() -> list[str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        project_next_batch()
    # The test's own savepoint around the atomic block is not the projector's (its BEGIN and COMMIT
    # are not captured: the same count either way).
    return [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]


@pytest.fixture
def only_weekly_income(monkeypatch):
    from analytics import registry

    monkeypatch.setattr(registry, "PROJECTIONS", ("analytics.projection.WeeklyIncomeProjection",))
    registry.projections.cache_clear()
    yield
    registry.projections.cache_clear()


def an_idle_approval() -> None:
    """What an idle dashboard waits for: one approval of a transaction submitted (and projected) earlier."""
    approved("10.00", "EUR", MON)
    pending = submit("5.00", "EUR", MON, actor="clerk")
    project_all()
    services.transaction_approve(transaction_id=pending.id, actor="boss")


def test_it_projects_an_idle_approval_for_weekly_income_alone_in_four_round_trips(only_weekly_income):
    an_idle_approval()
    trips = round_trips_of_next_batch()
    # Lock the checkpoints, read the batch, move the checkpoints and upsert the rows with their
    # history (one execute), read the transactions for their messages (and BEGIN/COMMIT around them).
    assert len(trips) == 4
    assert trips[2].startswith("UPDATE") and "analytics_weeklyincome" in trips[2]
    assert checkpoint() == eventstore.last_position()


def test_the_review_queue_adds_two_round_trips_to_an_idle_approval_however_many_tables_it_writes():
    an_idle_approval()
    trips = round_trips_of_next_batch()
    # Its pending row's delete (which hands back the submission time), then its decision, counts,
    # admin counts, percentiles and the read of its message's rows, in one multi-statement execute.
    assert len(trips) == 6
    assert ProjectionCheckpoint.objects.get(name="review_queue").position == eventstore.last_position()
    from analytics.review_queue_selectors import review_queue

    week = review_queue(start=date(2026, 11, 16), end=date(2026, 11, 16)).weeks[0]
    assert (week["approved"], week["by_admin"]) == (2, [{"actor": "boss", "decisions": 1}, {"actor": "tester", "decisions": 1}])


def test_a_batch_of_submissions_only_costs_the_review_queue_one_round_trip():
    approved("10.00", "EUR", MON)
    project_all()
    submit("5.00", "EUR", MON, actor="clerk")
    submit("6.00", "EUR", MON, actor="clerk")
    # Weekly income handles none of them and is not called: lock, read, the checkpoints' move with the
    # queue's writes and read (one execute), messages.
    trips = round_trips_of_next_batch()
    assert len(trips) == 4 and trips[2].startswith("UPDATE") and "review_queue" in trips[2]
    assert {c.name: c.position for c in ProjectionCheckpoint.objects.all()} == {
        "weekly_income": eventstore.last_position(), "review_queue": eventstore.last_position(),
    }


def test_the_checkpoints_move_by_a_statement_of_their_own_when_no_projection_writes(only_weekly_income):
    approved("10.00", "EUR", MON)
    project_all()
    submit("5.00", "EUR", MON, actor="clerk")  # nothing weekly income handles
    trips = round_trips_of_next_batch()
    assert len(trips) == 4 and trips[2].startswith("UPDATE")
    assert checkpoint() == eventstore.last_position()


def test_a_failed_batch_rolls_back_its_checkpoint_move_with_the_rows_and_names_where_it_stood(monkeypatch):
    approved("10.00", "EUR", MON)
    project_all()
    before = checkpoint()
    approved("20.00", "EUR", MON)
    from analytics import review_queue

    def fail(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(review_queue, "_batch_writes", fail)  # after weekly income sent the move with its upsert
    with pytest.raises(ProjectionFailed) as failed:
        project_next_batch()
    assert failed.value.projection == "review_queue" and failed.value.after == before
    assert checkpoint() == before and ProjectionCheckpoint.objects.get(name="review_queue").position == before
    assert totals()[(date(2026, 11, 16), "EUR")] == (1000, 1)


@pytest.mark.parametrize("zone, first_day", [("UTC", "monday"), ("Europe/Berlin", "sunday"), ("America/New_York", "monday"), ("Pacific/Kiritimati", "sunday")])
def test_it_computes_a_small_batch_in_python_exactly_as_the_frames_do(settings, zone, first_day):
    import random
    from types import SimpleNamespace

    from analytics.frames import weekly_running_totals

    settings.ANALYTICS_TIME_ZONE, settings.ANALYTICS_WEEK_START = zone, first_day
    rng = random.Random(f"{zone}/{first_day}")
    # Around a DST change and a week boundary, at minute resolution, with sub-second and non-UTC offsets.
    base = datetime(2026, 3, 28, 0, 0, tzinfo=timezone.utc)
    for trial in range(60):
        events = []
        for position in rng.sample(range(1, 500), rng.randint(1, 12)):
            instant = base + timedelta(minutes=rng.randint(0, 6 * 24 * 60), microseconds=rng.choice([0, 123456]))
            currency = rng.choice(["EUR", "JPY", "USD"])
            amount = rng.choice(["0.01", "10.00", "99999999999.99", "92233720368547758.08"] if currency != "JPY" else ["1", "1500", "9999999999999999999"])
            if rng.random() < 0.3:
                events.append(SimpleNamespace(type="TransactionReversed", position=position, recorded_at=instant,
                                              data={"amount": amount, "currency": currency}))
            else:
                offset = rng.choice([0, 5, -7, None])  # None: no offset, which both read as UTC
                shown = (instant.replace(tzinfo=None) if offset is None else instant.astimezone(timezone(timedelta(hours=offset)))).isoformat()
                events.append(SimpleNamespace(type="TransactionApproved", position=position, recorded_at=base,
                                              data={"amount": amount, "currency": currency, "occurred_at": shown}))
        events.sort(key=lambda e: e.position)
        small = projection._small_running_totals(events)
        frame = weekly_running_totals(projection.income_records(events), time_zone=zone, week_start=first_day)
        expected = [
            (row[0], row[1], int(row[2]), *(int(v) for v in row[3:]))
            for row in frame[["week_start", "currency", "position", *projection.SUMS]].itertuples(index=False, name=None)
        ]
        assert small == expected, (trial, events)


def test_it_leaves_a_large_batch_or_an_amount_out_of_range_to_the_frames():
    from types import SimpleNamespace

    def approval(position, amount="1.00"):
        return SimpleNamespace(type="TransactionApproved", position=position, recorded_at=MON,
                               data={"amount": amount, "currency": "EUR", "occurred_at": MON.isoformat()})

    assert projection._small_running_totals([approval(p) for p in range(1, 65)]) is not None
    assert projection._small_running_totals([approval(p) for p in range(1, 66)]) is None
    assert projection._small_running_totals([approval(1, "100000000000000000.00")]) is None
