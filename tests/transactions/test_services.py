"""Commands: each appends the right event and updates the read model in the same transaction."""
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.db import transaction

from core import eventstore
from core.db import NestedCommandError, unit_of_work
from core.errors import InvalidInput
from transactions import services
from transactions.models import ReadModelWriteRefused, Transaction
from transactions.services import StaleVersion, TransactionNotFound, TransactionNotPending

pytestmark = pytest.mark.django_db
WHEN = datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc)


def submit(**overrides):
    args = {"amount": Decimal("12.50"), "currency": "EUR", "occurred_at": WHEN, "actor": "ana", "reference": "INV-1"}
    args.update(overrides)
    return services.transaction_submit(**args)


def test_submitting_appends_transaction_submitted_and_creates_a_pending_row():
    txn = submit(request_id="req-1")
    [event] = eventstore.read_stream(txn.id)
    assert event.type == "TransactionSubmitted"
    assert event.version == 1
    assert event.data == {
        "transaction_id": str(txn.id),
        "amount": "12.50",
        "currency": "EUR",
        "occurred_at": "2026-11-18T09:30:00+00:00",
        "reference": "INV-1",
        "description": "",
    }
    assert event.metadata == {"actor": "ana", "request_id": "req-1"}
    row = Transaction.objects.get(pk=txn.id)
    assert (row.status, row.version, row.amount, row.last_position) == ("pending", 1, Decimal("12.50"), event.position)


def test_approving_appends_transaction_approved_with_the_amount_and_decides_the_row():
    txn = submit(amount=Decimal("1200"), currency="JPY")
    decision = services.transaction_approve(transaction_id=txn.id, actor="bo", reason="looks right")
    events = eventstore.read_stream(txn.id)
    assert [e.type for e in events] == ["TransactionSubmitted", "TransactionApproved"]
    assert events[1].data == {
        "transaction_id": str(txn.id),
        "amount": "1200",
        "currency": "JPY",
        "occurred_at": "2026-11-18T09:30:00+00:00",
        "reason": "looks right",
    }
    assert decision.position == events[1].position
    row = Transaction.objects.get(pk=txn.id)
    assert (row.status, row.version, row.decided_by, row.decision_reason) == ("approved", 2, "bo", "looks right")
    assert row.decided_at == events[1].recorded_at


def test_rejecting_appends_transaction_rejected_with_the_reason():
    txn = submit()
    services.transaction_reject(transaction_id=txn.id, actor="bo", reason="duplicate")
    events = eventstore.read_stream(txn.id)
    assert events[-1].type == "TransactionRejected"
    assert events[-1].data == {"transaction_id": str(txn.id), "reason": "duplicate"}
    assert Transaction.objects.get(pk=txn.id).status == "rejected"


@pytest.mark.parametrize("blank", ["", "   "])
def test_rejecting_without_a_reason_is_refused_and_appends_nothing(blank):
    txn = submit()
    with pytest.raises(InvalidInput):
        services.transaction_reject(transaction_id=txn.id, actor="bo", reason=blank)
    assert len(eventstore.read_stream(txn.id)) == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (services.transaction_approve, services.transaction_approve),
        (services.transaction_approve, services.transaction_reject),
        (services.transaction_reject, services.transaction_approve),
    ],
)
def test_deciding_twice_is_a_conflict_and_appends_nothing(first, second):
    txn = submit()
    first(transaction_id=txn.id, actor="bo", reason="first")
    with pytest.raises(TransactionNotPending):
        second(transaction_id=txn.id, actor="cy", reason="second")
    assert len(eventstore.read_stream(txn.id)) == 2


def test_approving_at_a_stale_expected_version_is_a_conflict():
    txn = submit()
    with pytest.raises(StaleVersion):
        services.transaction_approve(transaction_id=txn.id, actor="bo", expected_version=2)
    assert Transaction.objects.get(pk=txn.id).status == "pending"


def test_approving_an_unknown_transaction_is_not_found():
    with pytest.raises(TransactionNotFound):
        services.transaction_approve(transaction_id=uuid.uuid4(), actor="bo")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"amount": Decimal("0")}, "amount"),
        ({"amount": Decimal("-5")}, "amount"),
        ({"amount": Decimal("1.005")}, "amount"),
        ({"amount": Decimal("1.5"), "currency": "JPY"}, "amount"),
        ({"currency": "ZZZ"}, "currency"),
        ({"occurred_at": datetime(2026, 11, 18, 9, 30)}, "occurred_at"),
        ({"occurred_at": datetime(1, 1, 1, tzinfo=timezone.utc)}, "occurred_at"),
        ({"occurred_at": datetime.now(timezone.utc) + timedelta(days=3653)}, "occurred_at"),
        ({"reference": "x" * 141}, "reference"),
        ({"reference": "INV\u202efdp.exe"}, "reference"),  # displays as "INVexe.pdf"
        ({"reference": "INV-1\nINV-2"}, "reference"),  # a line break in a single-line field
        ({"reference": "INV\x00"}, "reference"),
        ({"description": "paid \x1b[31min red"}, "description"),
        ({"description": "x" * 1001}, "description"),
    ],
)
def test_submitting_bad_input_is_refused_and_stores_nothing(overrides, field):
    with pytest.raises(InvalidInput) as caught:
        submit(**overrides)
    assert caught.value.field == field
    assert not Transaction.objects.exists()
    assert eventstore.read_all() == []


def test_occurred_at_defaults_to_now():
    before = datetime.now(timezone.utc)
    txn = services.transaction_submit(amount=Decimal("1.00"), currency="USD", actor="ana")
    assert before <= txn.occurred_at <= datetime.now(timezone.utc) + timedelta(seconds=1)


def test_a_description_may_span_lines():
    txn = submit(description="line one\nline two\tindented")
    assert eventstore.read_stream(txn.id)[0].data["description"] == "line one\nline two\tindented"


@pytest.mark.parametrize("command", [services.transaction_approve, services.transaction_reject])
@pytest.mark.parametrize("reason", ["ok\u2066hidden", "ok\x07", "x" * 1001])
def test_a_decision_reason_is_checked_like_any_free_text(command, reason):
    txn = submit()
    with pytest.raises(InvalidInput) as caught:
        command(transaction_id=txn.id, actor="bo", reason=reason)
    assert caught.value.field == "reason"
    assert len(eventstore.read_stream(txn.id)) == 1


def test_a_decision_reason_may_span_lines():
    txn = submit()
    services.transaction_reject(transaction_id=txn.id, actor="bo", reason="duplicate of INV-1\nsee ticket 7")
    assert Transaction.objects.get(pk=txn.id).decision_reason == "duplicate of INV-1\nsee ticket 7"


# --- commands run in their own transaction ------------------------------------------------


@pytest.mark.parametrize("command", ["submit", "approve", "reject"])
def test_a_command_inside_someone_elses_transaction_is_refused_and_appends_nothing(command):
    txn = submit()
    run = {
        "submit": lambda: submit(),
        "approve": lambda: services.transaction_approve(transaction_id=txn.id, actor="bo"),
        "reject": lambda: services.transaction_reject(transaction_id=txn.id, actor="bo", reason="no"),
    }[command]
    with transaction.atomic():
        # Its events would stay uncommitted until this block ends, holding every log reader back.
        with pytest.raises(NestedCommandError, match="transaction_"):
            run()
    assert len(eventstore.read_all()) == 1
    assert Transaction.objects.get().status == "pending"


def test_one_command_may_run_in_a_unit_of_work_and_commits_with_it():
    with unit_of_work():
        txn = submit()
        with pytest.raises(NestedCommandError):
            submit(reference="second")
    assert [e.stream_id for e in eventstore.read_all()] == [txn.id]


def test_a_command_inside_a_unit_of_work_is_a_savepoint_so_its_refusal_leaves_the_unit_usable():
    txn = submit()
    services.transaction_approve(transaction_id=txn.id, actor="bo")
    with unit_of_work():
        with pytest.raises(TransactionNotPending):
            services.transaction_reject(transaction_id=txn.id, actor="cy", reason="late")
        assert Transaction.objects.get(pk=txn.id).status == "approved"  # the unit still runs queries
    assert len(eventstore.read_stream(txn.id)) == 2


def test_a_command_nested_in_a_transaction_inside_a_unit_of_work_is_refused():
    with unit_of_work(), transaction.atomic():
        with pytest.raises(NestedCommandError):
            submit()
    assert eventstore.read_all() == []


# --- the read model is written by the commands only -----------------------------------------


def test_the_read_model_cannot_be_saved_updated_or_deleted_outside_the_commands():
    txn = submit()
    row = Transaction.objects.get(pk=txn.id)
    row.status = "approved"
    with pytest.raises(ReadModelWriteRefused):
        row.save()
    with pytest.raises(ReadModelWriteRefused):
        Transaction.objects.filter(pk=txn.id).update(status="approved")
    with pytest.raises(ReadModelWriteRefused):
        Transaction.objects.bulk_update([row], ["status"])
    with pytest.raises(ReadModelWriteRefused):
        row.delete()
    with pytest.raises(ReadModelWriteRefused):
        Transaction.objects.all().delete()
    with pytest.raises(ReadModelWriteRefused):
        Transaction.objects.create(amount=Decimal("1.00"), currency="EUR", occurred_at=WHEN, version=1, created_at=WHEN, last_position=0)
    assert list(Transaction.objects.values_list("status", "version")) == [("pending", 1)]


# --- outside any transaction (the usual request): read, then append + read model in one round trip --------


def _statements_of(call):
    """`call()`'s result and the SQL it sent until its events were committed (then subscribers, such
    as the projector in eager mode, run statements of their own)."""
    from django.db import connection

    from core.signals import events_committed

    statements, committed_after = [], []

    def heard(sender, **kwargs):
        committed_after.append(len(statements))

    events_committed.connect(heard)
    try:
        with connection.execute_wrapper(lambda execute, sql, *args: statements.append(sql) or execute(sql, *args)):
            result = call()
    finally:
        events_committed.disconnect(heard)
    assert len(committed_after) == 1
    return result, statements[: committed_after[0]]


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_decision_outside_any_transaction_takes_two_round_trips_and_keeps_row_and_log_in_step(monkeypatch):
    txn = submit()
    monkeypatch.setattr("analytics.tasks.project_weekly_income.delay", lambda: None)  # no eager projection to count
    decision, statements = _statements_of(
        lambda: services.transaction_approve(transaction_id=txn.id, actor="bo", reason="ok", request_id="req-9")
    )
    assert len(statements) == 2, statements  # the read, then the append with the row's update: no BEGIN/COMMIT
    [_, event] = eventstore.read_stream(txn.id)
    assert (event.type, event.version, event.metadata) == ("TransactionApproved", 2, {"actor": "bo", "request_id": "req-9"})
    row = Transaction.objects.get(pk=txn.id)
    assert (row.status, row.version, row.decided_by, row.decision_reason) == ("approved", 2, "bo", "ok")
    assert (row.decided_at, row.last_position) == (event.recorded_at, event.position) == (decision.transaction.decided_at, decision.position)
    assert decision.transaction.version == 2 and decision.transaction.status == "approved"


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("expected_version", "refusal"), [(None, TransactionNotPending), (1, StaleVersion)]
)
def test_a_decision_that_loses_the_race_after_its_read_is_refused_and_changes_nothing(monkeypatch, expected_version, refusal):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    txn = submit()
    read_row = services._read_row

    def read_then_lose(transaction_id, *, lock):
        row = read_row(transaction_id, lock=lock)  # pending, version 1
        monkeypatch.setattr(services, "_read_row", read_row)

        def reject():
            try:
                services.transaction_reject(transaction_id=transaction_id, actor="cy", reason="faster")
            finally:
                connections.close_all()

        with ThreadPoolExecutor(1) as other:  # another request, on its own connection, decides first
            other.submit(reject).result()
        return row

    monkeypatch.setattr(services, "_read_row", read_then_lose)
    with pytest.raises(refusal):
        services.transaction_approve(transaction_id=txn.id, actor="bo", expected_version=expected_version)
    assert [e.type for e in eventstore.read_stream(txn.id)] == ["TransactionSubmitted", "TransactionRejected"]
    row = Transaction.objects.get(pk=txn.id)
    assert (row.status, row.version, row.decided_by) == ("rejected", 2, "cy")


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_refusals_are_the_same_and_append_nothing():
    txn = submit()
    with pytest.raises(TransactionNotFound):
        services.transaction_approve(transaction_id=uuid.uuid4(), actor="bo")
    with pytest.raises(StaleVersion):
        services.transaction_approve(transaction_id=txn.id, actor="bo", expected_version=2)
    services.transaction_reject(transaction_id=txn.id, actor="bo", reason="no")
    with pytest.raises(TransactionNotPending):
        services.transaction_approve(transaction_id=txn.id, actor="bo")
    assert len(eventstore.read_stream(txn.id)) == 2
