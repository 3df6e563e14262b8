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
from scripts.faults import no_wake_up
from tests.factories import append_held_open, approved, project_all, submit
from transactions import events, services
from tests.analytics.rows import reverse

MON = datetime(2026, 11, 16, 12, 0, tzinfo=timezone.utc)
# 10^15 - 1 minor units: the per-transaction limit; three of them carry out of every low part.
TOP_EUR = "9999999999999.99"


SUMS = ("total_minor", "count", "gross_minor", "reversed_minor", "reversed_count")


def rows_and_history():
    rows = sorted(WeeklyIncome.objects.values_list("week_start", "currency", *SUMS, "last_position"))
    history = sorted(WeeklyIncomeHistory.objects.values_list("week_start", "currency", "position", *SUMS))
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
    legacy = append_approval({"amount": "999999999999999.9999", "currency": "CLF"})
    # Reversals, placed by when they were recorded: the legacy amount in a week of its own (net far below
    # zero), one in the week of its approval, one across the DST change.
    reverse(legacy, at=MON + timedelta(weeks=3))
    approved("4.00", "USD", MON)
    reverse(eventstore.last_position(), at=MON + timedelta(hours=1))
    approved("6.00", "EUR", datetime(2026, 10, 20, tzinfo=timezone.utc))
    reverse(eventstore.last_position(), at=datetime(2026, 11, 1, 6, 30, tzinfo=timezone.utc))


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
    assert max(int(row[2]) for row in incremental[0] if row[1] == "EUR") == 3 * (10**15 - 1)
    assert max(int(row[2]) for row in incremental[0] if row[1] == "CLF") > 2**63
    assert min(int(row[2]) for row in incremental[0] if row[1] == "CLF") < -(2**63)  # the legacy reversal's week


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
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid IN (%s::regclass, %s::regclass) ORDER BY 1",
            [WeeklyIncome._meta.db_table, WeeklyIncomeHistory._meta.db_table],
        )
        constraints = [name for (name,) in cursor.fetchall()]
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id'), to_regclass(%s), to_regclass(%s)",
                       [WeeklyIncomeHistory._meta.db_table, rebuild.SHADOW.history, rebuild.SHADOW.income])
        sequence, *leftovers = cursor.fetchone()
    # The swapped-in tables carry the names migrations know, and no shadow is left behind.
    assert {"weekly_income_week_currency_unique", "weekly_income_history_bucket_position",
            "analytics_weeklyincome_pkey", "analytics_weeklyincomehistory_pkey"} <= set(constraints)
    assert sequence == "public.analytics_weeklyincomehistory_id_seq" and leftovers == [None, None]
    # The projector goes on writing into them.
    approved("5.00", "EUR", MON)
    project_all()
    assert sorted(int(t) for t in WeeklyIncomeHistory.objects.values_list("total_minor", flat=True)) == [1000, 1500]
    assert verify_weekly_income() == []


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
def test_a_checkpoint_ahead_of_the_log_is_rebuilt_from_the_log_as_it_is_instead_of_waiting_forever():
    # A log restored from an older backup: the checkpoint names positions that no longer exist.
    approved("10.00", "EUR", MON)
    project_all()
    ProjectionCheckpoint.objects.filter(name="weekly_income").update(position=eventstore.last_position() + 50)
    assert rebuild.rebuild_weekly_income() == eventstore.last_position()
    assert [int(t) for t in WeeklyIncome.objects.values_list("total_minor", flat=True)] == [1000]
    assert checkpoint() == eventstore.last_position()


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_reader_holding_the_tables_delays_the_swap_and_past_the_last_attempt_the_live_rows_stay():
    approved("10.00", "EUR", MON)
    project_all()
    WeeklyIncome.objects.update(total_minor=1)
    holding, release = threading.Event(), threading.Event()

    def long_report():
        try:
            with transaction.atomic():
                list(WeeklyIncome.objects.all())  # ACCESS SHARE until this transaction ends
                holding.set()
                release.wait(timeout=30)
        finally:
            holding.set()
            connections.close_all()

    reader = threading.Thread(target=long_report)
    reader.start()
    try:
        assert holding.wait(timeout=30)
        with pytest.raises(rebuild.SwapBlocked, match="through 2 waits of 50 ms"):
            rebuild.rebuild_weekly_income(swap_attempts=2, lock_timeout_ms=50)
        assert [int(t) for t in WeeklyIncome.objects.values_list("total_minor", flat=True)] == [1]
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s), to_regclass(%s)", [rebuild.SHADOW.history, rebuild.SHADOW.income])
            assert cursor.fetchone() == (None, None)
        # The reader finishes while the swap waits: the next attempt goes through.
        threading.Timer(0.3, release.set).start()
        rebuild.rebuild_weekly_income(swap_attempts=50, lock_timeout_ms=50)
    finally:
        release.set()
        reader.join(timeout=30)
    assert [int(t) for t in WeeklyIncome.objects.values_list("total_minor", flat=True)] == [1000]


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_second_rebuild_is_refused_while_one_runs_and_a_crashed_ones_leftovers_are_replaced():
    approved("10.00", "EUR", MON)
    project_all()
    with connection.cursor() as cursor:  # what a rebuild killed half-way leaves behind
        cursor.execute(f'CREATE TABLE "{rebuild.SHADOW.income}" (junk int)')
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute(f"SELECT pg_advisory_lock({rebuild._REBUILD_LOCK_SQL})")
        with pytest.raises(rebuild.RebuildRunning, match="another rebuild_projections is running"):
            rebuild.rebuild_weekly_income()
        with other.cursor() as cursor:  # released here: a closed connection's backend lets go a moment later
            cursor.execute(f"SELECT pg_advisory_unlock({rebuild._REBUILD_LOCK_SQL})")
    finally:
        other.close()
    assert rebuild.rebuild_weekly_income() == checkpoint()
    assert verify_weekly_income() == []


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
def test_approvals_committed_after_the_cut_are_caught_up_before_the_swap_and_counted_once(monkeypatch):
    with no_wake_up():
        for day in range(4):
            approved("10.00", "EUR", MON + timedelta(days=day))
    read_parallel = rebuild._read_parallel
    during = []

    def approve_meanwhile(**kwargs):
        # Another session approves (and commits) after the rebuild fixed its cut.
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
    assert during and through == during[0] == checkpoint()
    row = WeeklyIncome.objects.get()
    assert (row.count, int(row.total_minor)) == (5, 4500)
    project_all()  # nothing is left for the projector: counted once
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
    with append_held_open():
        with pytest.raises(rebuild.EventStoreBusy, match="appends kept core_event busy for 3 waits of 50 ms"):
            rebuild.rebuild_weekly_income()
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


# A log of `n` approved transactions (plus their submissions) written by SQL in one statement: enough rows
# that the rebuild's bulk phase takes a while, generated in milliseconds. Weeks before the test's own.
_FILL = """
INSERT INTO core_event (stream_id, version, type, data, metadata, recorded_at)
SELECT t.stream, v.version, CASE WHEN v.version = 1 THEN 'TransactionSubmitted' ELSE 'TransactionApproved' END,
       jsonb_build_object('transaction_id', t.stream::text, 'amount', t.amount, 'currency', t.currency,
                          'occurred_at', t.occurred, 'reference', 'FILL-' || t.i, 'description', '', 'reason', ''),
       '{"actor": "fill"}'::jsonb, now()
FROM (SELECT i, md5('fill' || i)::uuid AS stream, (ARRAY['EUR', 'USD', 'JPY'])[1 + i %% 3] AS currency,
             CASE WHEN i %% 3 = 2 THEN (100 + i %% 997)::text ELSE (i %% 9973)::text || '.' || lpad((i %% 100)::text, 2, '0') END AS amount,
             to_char(timestamptz '2026-01-05 00:00+00' + i * interval '7 minutes', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"') AS occurred
      FROM generate_series(1, %s) AS i) AS t
CROSS JOIN (VALUES (1), (2)) AS v(version)
ORDER BY t.i, v.version
"""
GROUP_BY = """SELECT currency, sum(amount), count(*) FROM (
    SELECT data->>'currency' AS currency, (data->>'amount')::numeric AS amount FROM core_event WHERE type = 'TransactionApproved'
) AS approvals GROUP BY 1"""


def totals_by_currency_from_the_log() -> dict:
    with connection.cursor() as cursor:
        cursor.execute(GROUP_BY)
        return {currency: (Decimal(total), count) for currency, total, count in cursor.fetchall()}


def totals_by_currency_from_the_rows() -> dict:
    from core.money import format_minor_units

    totals: dict = {}
    for currency, total, count in WeeklyIncome.objects.values_list("currency", "total_minor", "count"):
        before = totals.get(currency, (Decimal(0), 0))
        totals[currency] = (before[0] + Decimal(format_minor_units(int(total), currency)), before[1] + count)
    return totals


@pytest.mark.e2e
@pytest.mark.no_deadline
@pytest.mark.needs_postgres
@pytest.mark.needs_redis
@pytest.mark.timeout(240)
def test_it_rebuilds_online_while_approvals_flow_and_readers_and_an_open_dashboard_never_see_a_gap(live_stack):
    import json
    import time
    from websockets.sync.client import connect

    from analytics.selectors import projection_position
    from tests.stack import Browserless, create_live_user

    with connection.cursor() as cursor:
        cursor.execute(_FILL, [20_000])
    project_all()
    create_live_user("rebuilder", "rebuilder-password-123")
    create_live_user("clerk", "clerk-password-1234")
    browser = Browserless(live_stack.base_url).login("rebuilder", "rebuilder-password-123")
    # Nobody approves their own submission: a clerk submits, the rebuilder approves.
    clerk = Browserless(live_stack.base_url).login("clerk", "clerk-password-1234")
    today = datetime.now(timezone.utc).date()
    this_week = today - timedelta(days=today.weekday())
    stop, failures, reads, approvals, frames = threading.Event(), [], [], [], []

    def approve(client, submitter, currency):
        try:
            while not stop.is_set():
                created = submitter.post("/api/transactions/", {"amount": "1.25", "currency": currency})
                decided = client.post(f"/api/transactions/{created.json()['id']}/approve/", {"reason": "during"})
                if decided.status_code != 200:
                    failures.append(f"approve: {decided.status_code} {decided.text[:200]}")
                approvals.append((time.monotonic(), decided.json()["position"]))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            failures.append(f"approve: {exc!r}")

    def read(client):
        try:
            while not stop.is_set():
                answer = client.get("/api/analytics/weekly-income/", **{"from": "2026-01-05", "to": this_week.isoformat()})
                if answer.status_code != 200:
                    failures.append(f"read: {answer.status_code} {answer.text[:200]}")
                    continue
                body = answer.json()
                sums: dict = {}
                for row in body["results"]:
                    total, count = sums.get(row["currency"], (Decimal(0), 0))
                    sums[row["currency"]] = (total + Decimal(row["total"]), count + row["count"])
                reads.append((body["as_of"], sums))
        except Exception as exc:  # noqa: BLE001
            failures.append(f"read: {exc!r}")

    with connect(live_stack.ws_url, origin=live_stack.base_url, additional_headers={"Cookie": browser.cookie_header}) as ws:
        def listen():
            try:
                while True:
                    frames.append(json.loads(ws.recv()))
            except Exception:  # noqa: BLE001 - closed at the end
                pass

        threads = [threading.Thread(target=approve, args=(browser.clone(), clerk.clone(), currency)) for currency in ("EUR", "USD")]
        threads += [threading.Thread(target=read, args=(browser.clone(),)), threading.Thread(target=listen)]
        for thread in threads:
            thread.start()
        try:
            while len(approvals) < 4 and not failures:
                time.sleep(0.05)
            started = time.monotonic()
            rebuilt = live_stack.manage("rebuild_projections", timeout=120)
            ended = time.monotonic()
            count_at_end = len(approvals)
            while len(approvals) < count_at_end + 4 and not failures:
                time.sleep(0.05)
        finally:
            stop.set()
            for thread in threads[:3]:
                thread.join(timeout=30)
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert not failures, failures[:5]
        assert any(started < at < ended for at, _ in approvals), "no approval was committed while the rebuild ran"
        last = max(position for _, position in approvals)
        deadline = time.monotonic() + 30
        while projection_position() < last and time.monotonic() < deadline:
            time.sleep(0.1)
        expected = totals_by_currency_from_the_log()

        def dashboard_state():
            state, snapshots = None, 0
            for frame in list(frames):
                if frame["type"] == "snapshot":
                    snapshots += 1
                    state = {(r["week_start"], r["currency"]): Decimal(r["total"]) for r in frame["weekly_income"]}
                elif frame["type"] == "weekly_income.updated" and state is not None:
                    state[(frame["week_start"], frame["currency"])] = Decimal(frame["total"])
            return state, snapshots

        # This week's buckets hold exactly the approvals made over HTTP.
        during = {"EUR": Decimal(0), "USD": Decimal(0)}
        rows = WeeklyIncome.objects.filter(week_start=this_week)
        for row in rows:
            during[row.currency] = Decimal(int(row.total_minor)) / 100
        while time.monotonic() < deadline:
            state, snapshots = dashboard_state()
            if state and all(state.get((this_week.isoformat(), c)) == during[c] for c in during) and snapshots >= 2:
                break
            time.sleep(0.1)
        ws.close()
    state, snapshots = dashboard_state()
    assert snapshots >= 2, "the open dashboard was not resynced after the swap"
    assert {c: state.get((this_week.isoformat(), c)) for c in during} == during
    assert sum(during.values()) == Decimal("1.25") * len(approvals)

    # Readers never saw an error, an empty projection, or totals going backwards.
    assert len(reads) > 3
    for (as_of, sums), (later_as_of, later_sums) in zip(reads, reads[1:]):
        assert later_as_of >= as_of
        for currency, (total, count) in sums.items():
            assert later_sums[currency][0] >= total and later_sums[currency][1] >= count, (as_of, later_as_of, currency)
    assert all(sums.get("JPY", (0, 0))[1] > 0 for _, sums in reads)
    assert totals_by_currency_from_the_rows() == expected
    verified = live_stack.manage("verify_projections")
    assert verified.returncode == 0, verified.stderr
