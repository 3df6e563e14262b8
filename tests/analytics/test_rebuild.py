"""The full rebuild (analytics.rebuild) writes what the incremental projector writes, reads every event once, and names a poison event."""
import threading
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import psycopg
import pytest
from django.db import connection, connections, transaction
from django.test import override_settings

from analytics import rebuild, rebuild_frames
from analytics.frames import week_start_dates
from analytics.models import ProjectionCheckpoint, WeeklyIncome, WeeklyIncomeHistory
from analytics.projection import ProjectionFailed
from analytics.verification import verify_weekly_income
from core import eventstore
from tests.factories import approved, no_wake_up, project_all, submit
from transactions import events, services

MON = datetime(2026, 11, 16, 12, 0, tzinfo=timezone.utc)
# 10^15 - 1 minor units: the per-transaction limit; three of them carry out of every low part.
TOP_EUR = "9999999999999.99"


def rows_and_history():
    rows = sorted(WeeklyIncome.objects.values_list("week_start", "currency", "total_minor", "count", "last_position"))
    history = sorted(WeeklyIncomeHistory.objects.values_list("week_start", "currency", "position", "total_minor", "count"))
    return rows, history


def checkpoint() -> int:
    return ProjectionCheckpoint.objects.get(name="weekly_income").position


def append_approval(data_changes: dict) -> int:
    """An approval as an older version (or a hand-edited import) could have written it: events are forever."""
    stream = uuid.uuid4()
    event = events.approved(transaction_id=stream, amount=Decimal("1.00"), currency="EUR", occurred_at=MON, reason="")
    event.data.update(data_changes)
    with transaction.atomic():
        [recorded] = eventstore.append(stream_id=stream, expected_version=0, events=[event], metadata={"actor": "legacy"})
    return recorded.position


def a_varied_log():
    """Approvals over weeks around a DST change, four currencies (0, 2 and 4 decimals), rejections and pending ones."""
    for day in range(0, 60, 5):
        when = datetime(2026, 9, 18, 23, 30, tzinfo=timezone.utc) + timedelta(days=day, hours=day % 5)
        approved(f"{day + 1}.{day % 100:02d}", "EUR", when)
        approved(str(1000 + day), "JPY", when)
    for _ in range(3):
        approved(TOP_EUR, "EUR", MON)
    approved("0.0001", "CLF", MON)
    approved("12.3456", "CLF", MON + timedelta(days=1))
    txn = submit("5.00", "USD", MON)
    services.transaction_reject(transaction_id=txn.id, actor="tester", reason="no")
    submit("7.00", "USD", MON)  # pending: no income
    approved("3.00", "USD", MON)
    # Accepted before the per-transaction limit: far beyond int64 in minor units.
    append_approval({"amount": "999999999999999.9999", "currency": "CLF"})


@pytest.mark.django_db
@pytest.mark.parametrize("zone, week_start", [("UTC", "monday"), ("America/New_York", "sunday")])
def test_it_writes_the_same_rows_and_history_as_the_incremental_projector(zone, week_start):
    with override_settings(ANALYTICS_TIME_ZONE=zone, ANALYTICS_WEEK_START=week_start):
        rebuild.rebuild_weekly_income()  # an empty log; the checkpoint now says which weeks these are
        a_varied_log()
        project_all()
        incremental = rows_and_history()
        assert rebuild.rebuild_weekly_income() == eventstore.last_position() == checkpoint()
        assert rows_and_history() == incremental
        assert verify_weekly_income() == []
    # The three approvals at the limit: every low part carried, and the sum is exact.
    assert max(int(total) for _, currency, total, _, _ in incremental[0] if currency == "EUR") == 3 * (10**15 - 1)
    assert max(int(total) for _, currency, total, _, _ in incremental[0] if currency == "CLF") > 2**63


@pytest.mark.django_db
def test_it_replaces_rows_that_were_wrong_and_keeps_the_history_indexes():
    approved("10.00", "EUR", MON)
    project_all()
    WeeklyIncome.objects.update(total_minor=1)
    WeeklyIncomeHistory.objects.update(total_minor=1)
    rebuild.rebuild_weekly_income()
    assert [int(t) for t in WeeklyIncome.objects.values_list("total_minor", flat=True)] == [1000]
    assert [int(t) for t in WeeklyIncomeHistory.objects.values_list("total_minor", flat=True)] == [1000]
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s ORDER BY 1", [WeeklyIncomeHistory._meta.db_table])
        names = [name for (name,) in cursor.fetchall()]
    assert "weekly_income_history_bucket_position" in names and "weekly_income_history_cur_pos" in names


@pytest.mark.django_db
@pytest.mark.parametrize(
    "changes, cause",
    [
        ({"occurred_at": "0001-01-01T00:00:00+00:00"}, "OutOfRange"),
        ({"occurred_at": "2026-13-45T00:00:00+00:00"}, "DatetimeFieldOverflow|InvalidDatetimeFormat|DataError"),
        ({"amount": "ten"}, "InvalidTextRepresentation|DataError"),
        ({"amount": "10.001"}, "MoneyError"),
        ({"amount": "-5.00"}, "OutOfRange"),
        ({"currency": "XXX"}, "MoneyError"),
        ({"currency": "EURO"}, "MoneyError"),
    ],
    ids=["year-1", "no-such-date", "not-a-number", "too-many-decimals", "negative", "no-minor-unit", "four-letters"],
)
def test_it_names_the_poison_event_and_changes_nothing(changes, cause):
    approved("10.00", "EUR", MON)
    project_all()
    before = rows_and_history(), checkpoint()
    for _ in range(3):
        approved("1.00", "USD", MON)
    poison = append_approval(changes)
    approved("2.00", "USD", MON)
    with pytest.raises(ProjectionFailed, match=rf"events {poison}\.\.{poison} could not be projected \(({cause})"):
        rebuild.rebuild_weekly_income()
    assert (rows_and_history(), checkpoint()) == before


def test_the_week_arithmetic_agrees_with_the_projectors_own():
    instants = [
        datetime(2026, 3, 8, 6, 59, tzinfo=timezone.utc),  # New York: Saturday night before the spring DST change
        datetime(2026, 3, 8, 7, 0, tzinfo=timezone.utc),
        datetime(2026, 11, 1, 5, 30, tzinfo=timezone.utc),
        datetime(1969, 12, 31, 23, 59, tzinfo=timezone.utc),
        datetime(2026, 11, 22, 23, 59, 59, tzinfo=timezone.utc),
        datetime(2026, 11, 23, 0, 0, tzinfo=timezone.utc),
    ]
    import pandas as pd

    micros = np.array([int((t - datetime(2000, 1, 1, tzinfo=timezone.utc)) / timedelta(microseconds=1)) for t in instants])
    for zone in ("UTC", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"):
        for week_start in ("monday", "sunday"):
            ours = rebuild_frames.local_week_starts(micros, time_zone=zone, week_start=week_start)
            theirs = week_start_dates(pd.Series([t.isoformat() for t in instants]), time_zone=zone, week_start=week_start)
            assert [(datetime(2000, 1, 1) + timedelta(days=int(d))).date() for d in ours] == list(theirs), (zone, week_start)


def test_history_rows_encode_totals_past_int64_as_postgres_numerics():
    high = np.array([0, 1, 2**63 - 1])
    low = np.array([5, 99_999_999, 12_345_678])
    digits = rebuild_frames.numeric_digits(high, low)
    as_ints = [sum(int(d) * 10_000 ** (6 - k) for k, d in enumerate(row)) for row in digits]
    assert as_ints == [5, 10**8 + 99_999_999, (2**63 - 1) * 10**8 + 12_345_678]


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_readers_split_by_block_ranges_lose_and_double_nothing_and_name_a_poison_event():
    """Committed data, two readers sharing one exported snapshot, a block range per query: every boundary is crossed."""
    with no_wake_up():
        a_varied_log()
    project_all()
    incremental = rows_and_history()
    stats = rebuild.RebuildStats()
    rebuild.rebuild_weekly_income(readers=2, chunk_blocks=1, stats=stats)
    assert stats.readers == 2 and stats.approvals == len(incremental[1])
    assert rows_and_history() == incremental
    assert verify_weekly_income() == []

    # No connection to spare (max_connections reached): this connection reads every range itself.
    def refused(**params):
        raise psycopg.OperationalError("sorry, too many clients already")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rebuild.psycopg, "connect", refused)
        rebuild.rebuild_weekly_income(readers=2, chunk_blocks=1)
    assert rows_and_history() == incremental

    with no_wake_up():
        poison = append_approval({"occurred_at": "2026-02-30T00:00:00+00:00"})
        approved("2.00", "USD", MON)
    with pytest.raises(ProjectionFailed, match=rf"events {poison}\.\.{poison} could not be projected"):
        rebuild.rebuild_weekly_income(readers=2, chunk_blocks=1)
    assert rows_and_history() == incremental


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_approvals_committed_during_a_rebuild_are_projected_once_afterwards(monkeypatch):
    with no_wake_up():
        for day in range(4):
            approved("10.00", "EUR", MON + timedelta(days=day))
    read_parallel = rebuild._read_parallel
    during = []

    def approve_meanwhile(**kwargs):
        # Another session approves (and commits) after the rebuild fixed its checkpoint.
        def approve():
            try:
                with no_wake_up():
                    during.append(approved("5.00", "EUR", MON).position)
            finally:
                connections.close_all()

        worker = threading.Thread(target=approve)
        worker.start()
        worker.join(timeout=30)
        return read_parallel(**kwargs)

    monkeypatch.setattr(rebuild, "_read_parallel", approve_meanwhile)
    through = rebuild.rebuild_weekly_income(readers=2)
    assert during and through < during[0]
    assert WeeklyIncome.objects.get().count == 4
    project_all()
    row = WeeklyIncome.objects.get()
    assert (row.count, int(row.total_minor), checkpoint()) == (5, 4500, during[0])
    assert verify_weekly_income() == []


@pytest.mark.needs_postgres
@pytest.mark.django_db
@override_settings(EVENT_STORE_LOCK_TIMEOUT_MS=100)
def test_an_append_that_never_ends_makes_the_rebuild_give_up_with_a_clear_error_and_change_nothing():
    approved("10.00", "EUR", MON)
    project_all()
    before = rows_and_history(), checkpoint()
    appended, release = threading.Event(), threading.Event()

    class RollBack(Exception):
        pass

    def append_and_hold():
        try:
            with transaction.atomic():
                stream = uuid.uuid4()
                event = events.submitted(transaction_id=stream, amount=Decimal("1.00"), currency="EUR", occurred_at=MON,
                                         reference="", description="")
                eventstore.append(stream_id=stream, expected_version=0, events=[event], metadata={"actor": "slow"})
                appended.set()
                release.wait(timeout=30)
                raise RollBack
        except RollBack:
            pass
        finally:
            appended.set()
            connections.close_all()

    holder = threading.Thread(target=append_and_hold)
    holder.start()
    try:
        assert appended.wait(timeout=30)
        with pytest.raises(rebuild.EventStoreBusy, match="appends kept core_event busy for 3 waits of 50 ms"):
            rebuild.rebuild_weekly_income()
    finally:
        release.set()
        holder.join(timeout=30)
    assert (rows_and_history(), checkpoint()) == before


@pytest.mark.django_db
def test_events_stored_out_of_position_order_are_summed_in_position_order():
    """Concurrent appends can land in blocks out of position order: running totals follow positions, not blocks."""
    from core.models import StoredEvent

    rows = []
    for n in range(90):
        stream = uuid.uuid4()
        event = events.approved(transaction_id=stream, amount=Decimal(f"{n + 1}.00"), currency="EUR", occurred_at=MON, reason="")
        rows.append(StoredEvent(position=1000 - n, stream_id=stream, version=1, type=event.type, data=event.data,
                                metadata={}, recorded_at=MON))
    StoredEvent.objects.bulk_create(rows)  # the highest position is stored first
    project_all()
    incremental = rows_and_history()
    rebuild.rebuild_weekly_income(chunk_blocks=1)
    assert rows_and_history() == incremental
    assert verify_weekly_income() == []
