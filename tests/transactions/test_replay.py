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
