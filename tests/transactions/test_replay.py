"""rebuild_transactions: the transaction list replayed from the log equals what the commands wrote, every column."""
import json
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from core import eventstore
from transactions import events, replay, services
from transactions.replay import ReplayRefused

pytestmark = [pytest.mark.needs_postgres, pytest.mark.django_db(transaction=True)]
WHEN = datetime(2026, 11, 16, 9, 30, 15, 123456, tzinfo=timezone.utc)


def some_transactions() -> dict[str, uuid.UUID]:
    """Pending, approved and rejected ones in three currencies, with references, descriptions and reasons."""
    made = {}
    for n, (amount, currency) in enumerate([("12.50", "EUR"), ("1200", "JPY"), ("0.01", "USD"), ("99.99", "EUR"),
                                            ("1.2345", "CLF"), ("7.00", "USD"), ("3.10", "EUR")]):
        txn = services.transaction_submit(
            amount=Decimal(amount), currency=currency, occurred_at=WHEN + timedelta(days=n), actor=f"clerk{n}",
            reference=f"INV-{n}", description=f"line one\nline {n}",
        )
        made[f"t{n}"] = txn.id
    services.transaction_approve(transaction_id=made["t0"], actor="ana", reason="looks right")
    services.transaction_reject(transaction_id=made["t1"], actor="bo", reason="duplicate")
    services.transaction_approve(transaction_id=made["t3"], actor="bo", reason="")
    services.transaction_approve(transaction_id=made["t4"], actor="ana", reason="ok")
    services.transaction_reject(transaction_id=made["t5"], actor="ana", reason="wrong\naccount")
    return made  # t2 and t6 stay pending


def table() -> list[tuple]:
    """Every column of every row, as stored."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, amount, currency, occurred_at, reference, description, status, version, created_at, "
                       "decided_at, decided_by, decision_reason, last_position, submitted_by, first_approved_by "
                       "FROM transactions_transaction ORDER BY id")
        return cursor.fetchall()


def sql(statement: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def raw_event(stream, version: int, kind: str, data: dict, actor="legacy") -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO core_event (stream_id, version, type, data, metadata, recorded_at) "
            "VALUES (%s, %s, %s, %s::jsonb, %s::jsonb, now()) RETURNING position",
            [stream, version, kind, json.dumps(data), json.dumps({"actor": actor})],
        )
        return cursor.fetchone()[0]


def test_it_rebuilds_an_emptied_table_equal_to_what_the_commands_wrote_column_by_column():
    some_transactions()
    written = table()
    assert len(written) == 7
    sql("DELETE FROM transactions_transaction")
    # Batches of 3: decisions land in other batches than their submissions.
    result = replay.replay(batch_size=3)
    assert table() == written
    assert (result.events, result.transactions, result.inserted, result.updated, result.deleted) == (12, 7, 7, 0, 0)
    assert result.cut == eventstore.last_position()


def test_running_it_twice_changes_nothing():
    some_transactions()
    written = table()
    first = replay.replay(batch_size=4)
    second = replay.replay()
    assert (first.inserted, first.updated, first.deleted) == (0, 0, 0)  # the commands' rows already say what the log says
    assert (second.inserted, second.updated, second.deleted) == (0, 0, 0)
    assert table() == written


def test_check_lists_a_tampered_a_missing_and_an_extra_row_and_writes_nothing_and_the_rebuild_repairs_them():
    made = some_transactions()
    written = table()
    sql("UPDATE transactions_transaction SET amount = 1000, status = 'approved' WHERE id = %s", [made["t2"]])
    sql("UPDATE transactions_transaction SET decided_by = 'mallory', version = 9 WHERE id = %s", [made["t0"]])
    sql("DELETE FROM transactions_transaction WHERE id = %s", [made["t1"]])
    stray = uuid.uuid4()
    sql("INSERT INTO transactions_transaction (id, amount, currency, occurred_at, reference, description, status, version, "
        "created_at, decided_by, decision_reason, last_position) VALUES (%s, 5, 'EUR', now(), '', '', 'pending', 1, now(), '', '', 1)",
        [stray])
    tampered = table()

    result = replay.replay(check=True, batch_size=5)
    assert sorted(result.problems) == sorted([
        f"transaction {made['t2']}: amount: stored 1000.0000, log says 0.01",
        f"transaction {made['t2']}: status: stored 'approved', log says 'pending'",
        f"transaction {made['t0']}: version: stored 9, log says 2",
        f"transaction {made['t0']}: decided_by: stored 'mallory', log says 'ana'",
        f"transaction {made['t1']}: missing; the log has it rejected at version 2",
        f"transaction {stray}: stored, but the log has no event of it",
    ])
    assert table() == tampered

    repaired = replay.replay(batch_size=5)
    assert (repaired.inserted, repaired.updated, repaired.deleted) == (1, 2, 1)
    assert table() == written
    assert replay.replay(check=True).problems == []


def test_it_keeps_a_row_a_command_decided_after_its_cut(monkeypatch):
    txn = services.transaction_submit(amount=Decimal("5.00"), currency="EUR", occurred_at=WHEN, actor="ana")
    cut = eventstore.last_position()
    services.transaction_approve(transaction_id=txn.id, actor="bo", reason="ok")
    written = table()
    # As if the approval had committed while the replay ran: the replay's cut is before it.
    monkeypatch.setattr(replay, "_cut", lambda: cut)
    result = replay.replay()
    assert (result.cut, result.transactions, result.updated) == (cut, 1, 0)
    assert table() == written
    assert replay.replay(check=True).problems == []


@pytest.mark.parametrize("case", ["never-submitted", "decided-twice", "unknown-type", "not-money"])
def test_it_refuses_an_event_it_cannot_apply_and_names_its_position(case):
    txn = services.transaction_submit(amount=Decimal("5.00"), currency="EUR", occurred_at=WHEN, actor="ana")
    stream = uuid.uuid4()
    approval = events.approved(transaction_id=stream, amount=Decimal("5.00"), currency="EUR", occurred_at=WHEN, reason="")
    if case == "never-submitted":
        position, message = raw_event(stream, 1, events.APPROVED, approval.data), f"TransactionApproved of stream {stream}, which was never submitted"
    elif case == "decided-twice":
        services.transaction_reject(transaction_id=txn.id, actor="bo", reason="no")
        position = raw_event(txn.id, 3, events.APPROVED, approval.data | {"transaction_id": str(txn.id)})
        message = f"TransactionApproved of stream {txn.id}, which is already rejected"
    elif case == "unknown-type":
        position, message = raw_event(stream, 1, "TransactionAmended", {}), "event type 'TransactionAmended'"
    else:
        submitted = events.submitted(transaction_id=stream, amount=Decimal("1"), currency="EUR", occurred_at=WHEN, reference="",
                                     description="")
        position = raw_event(stream, 1, events.SUBMITTED, submitted.data | {"amount": 1.5})
        message = f"TransactionSubmitted of stream {stream}: data.amount missing or not text"
    with pytest.raises(ReplayRefused, match=f"^position {position}: {message}") as refused:
        replay.replay()
    assert refused.value.position == position


def test_the_command_rebuilds_and_its_check_exits_1_with_the_differences():
    made = some_transactions()
    written = table()
    sql("DELETE FROM transactions_transaction")
    out = StringIO()
    call_command("rebuild_transactions", "--batch-size", "2", stdout=out)
    assert f"transactions rebuilt from 12 events through position {eventstore.last_position()}, 7 transactions: " \
           "7 inserted, 0 updated, 0 deleted (not in the log)" in out.getvalue()
    assert table() == written

    out = StringIO()
    call_command("rebuild_transactions", "--check", stdout=out)
    assert "transactions match the event log" in out.getvalue()

    sql("UPDATE transactions_transaction SET decision_reason = 'edited' WHERE id = %s", [made["t0"]])
    err = StringIO()
    with pytest.raises(CommandError, match=r"transactions: 1 difference\(s\) from the event log"):
        call_command("rebuild_transactions", "--check", stdout=StringIO(), stderr=err)
    assert f"transaction {made['t0']}: decision_reason: stored 'edited', log says 'looks right'" in err.getvalue()

    raw_event(uuid.uuid4(), 1, "Mystery", {})
    with pytest.raises(CommandError, match=r"position \d+: event type 'Mystery'.*nothing from this event on was written"):
        call_command("rebuild_transactions", stdout=StringIO())


def corrections_and_four_eyes(settings) -> dict[str, uuid.UUID]:
    """Reversed, awaiting a second approval, approved by two, rejected while awaiting, and one without a submitter."""
    settings.APPROVAL_DUAL_CONTROL = {"EUR": Decimal("100.00")}
    made = {}
    for name, amount in [("reversed", "50.00"), ("awaiting", "500.00"), ("two", "700.00"), ("withdrawn", "900.00"),
                         ("two-reversed", "300.00")]:
        made[name] = services.transaction_submit(amount=Decimal(amount), currency="EUR", occurred_at=WHEN, actor="clerk").id
    services.transaction_approve(transaction_id=made["reversed"], actor="ana", reason="ok")
    services.transaction_reverse(transaction_id=made["reversed"], actor="bo", reason="refund")
    services.transaction_approve(transaction_id=made["awaiting"], actor="ana", reason="first")
    for name in ("two", "two-reversed"):
        services.transaction_approve(transaction_id=made[name], actor="ana", reason="first")
        services.transaction_approve(transaction_id=made[name], actor="bo", reason="second")
    services.transaction_reverse(transaction_id=made["two-reversed"], actor="cy", reason="chargeback")
    services.transaction_approve(transaction_id=made["withdrawn"], actor="ana", reason="first")
    services.transaction_reject(transaction_id=made["withdrawn"], actor="clerk", reason="withdrawn")
    return made


def test_it_rebuilds_reversals_and_dual_control_equal_to_what_the_commands_wrote(settings):
    made = corrections_and_four_eyes(settings)
    written = table()
    sql("DELETE FROM transactions_transaction")
    result = replay.replay(batch_size=2)  # a stream's events spread over several batches
    assert table() == written
    assert (result.events, result.transactions, result.inserted) == (15, 5, 5)
    rows = {row[0]: row for row in table()}
    status, submitted_by, first_approved_by = 6, 13, 14
    assert [(rows[made[n]][status], rows[made[n]][first_approved_by]) for n in ("reversed", "awaiting", "two", "withdrawn", "two-reversed")] == [
        ("reversed", ""), ("awaiting_second_approval", "ana"), ("approved", "ana"), ("rejected", "ana"), ("reversed", "ana")]
    assert {row[submitted_by] for row in rows.values()} == {"clerk"}
    assert replay.replay(check=True).problems == []


def test_check_names_a_wrong_submitter_or_first_approver(settings):
    made = corrections_and_four_eyes(settings)
    sql("UPDATE transactions_transaction SET submitted_by = 'mallory', first_approved_by = '' WHERE id = %s", [made["two"]])
    assert sorted(replay.replay(check=True).problems) == sorted([
        f"transaction {made['two']}: submitted_by: stored 'mallory', log says 'clerk'",
        f"transaction {made['two']}: first_approved_by: stored '', log says 'ana'",
    ])


@pytest.mark.parametrize("metadata", [{}, {"actor": None}, {"actor": 7}, {"actor": ""}])
def test_a_submission_whose_event_names_no_actor_has_no_submitter_and_anyone_may_approve_it(metadata):
    # What an imported log may hold: the submitter is unknown (""), which blocks nobody.
    stream = uuid.uuid4()
    submitted = events.submitted(transaction_id=stream, amount=Decimal("5.00"), currency="EUR", occurred_at=WHEN, reference="",
                                 description="")
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO core_event (stream_id, version, type, data, metadata, recorded_at) "
                       "VALUES (%s, 1, %s, %s::jsonb, %s::jsonb, now())", [stream, events.SUBMITTED, json.dumps(submitted.data), json.dumps(metadata)])
    replay.replay()
    assert services.transaction_approve(transaction_id=stream, actor="anyone").transaction.submitted_by == ""
    assert replay.replay(check=True).problems == []


def test_a_submission_by_system_keeps_system_as_its_submitter():
    stream = uuid.uuid4()
    submitted = events.submitted(transaction_id=stream, amount=Decimal("5.00"), currency="EUR", occurred_at=WHEN, reference="",
                                 description="")
    raw_event(stream, 1, events.SUBMITTED, submitted.data, actor="system")
    replay.replay()
    from transactions.models import Transaction
    from transactions.services import OwnSubmission

    assert Transaction.objects.get(pk=stream).submitted_by == "system"
    with pytest.raises(OwnSubmission):  # a user named "system" did not submit it, but the log says so
        services.transaction_approve(transaction_id=stream, actor="system")
    services.transaction_approve(transaction_id=stream, actor="ana")


@pytest.mark.parametrize("case", ["reversal-of-pending", "reversal-of-rejected", "first-approval-twice", "recorded-other-amount"])
def test_it_refuses_a_correction_or_first_approval_that_cannot_follow(case):
    txn = services.transaction_submit(amount=Decimal("5.00"), currency="EUR", occurred_at=WHEN, actor="clerk")
    reversal = events.reversed_(transaction_id=txn.id, amount=Decimal("5.00"), currency="EUR", reason="refund")
    recorded = events.approval_recorded(transaction_id=txn.id, amount=Decimal("5.00"), currency="EUR", reason="",
                                        threshold=Decimal("1.00"))
    if case == "reversal-of-pending":
        position, message = raw_event(txn.id, 2, events.REVERSED, reversal.data), f"TransactionReversed of stream {txn.id}, which is pending"
    elif case == "reversal-of-rejected":
        services.transaction_reject(transaction_id=txn.id, actor="bo", reason="no")
        position = raw_event(txn.id, 3, events.REVERSED, reversal.data)
        message = f"TransactionReversed of stream {txn.id}, which is already rejected"
    elif case == "first-approval-twice":
        raw_event(txn.id, 2, events.APPROVAL_RECORDED, recorded.data)
        position = raw_event(txn.id, 3, events.APPROVAL_RECORDED, recorded.data)
        message = f"TransactionApprovalRecorded of stream {txn.id}, which is awaiting_second_approval"
    else:
        position = raw_event(txn.id, 2, events.APPROVAL_RECORDED, recorded.data | {"amount": "6.00"})
        message = f"TransactionApprovalRecorded of stream {txn.id}: amount '6.00' differs from the submitted 5.00"
    with pytest.raises(ReplayRefused, match=f"^position {position}: {message}"):
        replay.replay()
