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
from transactions.services import (
    OwnSubmission,
    SecondApproverRequired,
    StaleVersion,
    TransactionNotApproved,
    TransactionNotFound,
    TransactionNotPending,
)

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


@pytest.mark.parametrize("command", [services.transaction_approve, services.transaction_reject, services.transaction_reverse])
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


@pytest.mark.parametrize("command", ["submit", "approve", "reject", "reverse"])
def test_a_command_inside_someone_elses_transaction_is_refused_and_appends_nothing(command):
    txn = submit()
    run = {
        "submit": lambda: submit(),
        "approve": lambda: services.transaction_approve(transaction_id=txn.id, actor="bo"),
        "reject": lambda: services.transaction_reject(transaction_id=txn.id, actor="bo", reason="no"),
        "reverse": lambda: services.transaction_reverse(transaction_id=txn.id, actor="bo", reason="no"),
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
def test_it_reads_the_decided_row_with_a_statement_the_connection_prepared_once(monkeypatch):
    from django.db import connection

    from core.db import prepared_name

    monkeypatch.setattr("analytics.tasks.project_weekly_income.delay", lambda: None)
    first, second = submit(), submit()

    def prepared_reads():
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE %s", [prepared_name(services._sql("read")) + "%"])
            return cursor.fetchone()[0]

    services.transaction_approve(transaction_id=first.id, actor="bo")
    assert prepared_reads() == 1  # PostgreSQL keeps its plan on this connection
    decision = services.transaction_reject(transaction_id=second.id, actor="bo", reason="no")
    assert prepared_reads() == 1  # the next decision binds it again: not prepared twice
    row = Transaction.objects.get(pk=second.id)
    assert (decision.transaction.amount, decision.transaction.occurred_at, decision.transaction.status) == (row.amount, row.occurred_at, "rejected")


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


# --- reversals -------------------------------------------------------------------------------


def approve(txn, actor="bo", reason="ok"):
    return services.transaction_approve(transaction_id=txn.id, actor=actor, reason=reason)


def test_reversing_an_approved_transaction_appends_transaction_reversed_with_its_money_and_reverses_the_row():
    txn = submit(amount=Decimal("1200"), currency="JPY")
    approve(txn)
    decision = services.transaction_reverse(transaction_id=txn.id, actor="cy", reason="refunded", request_id="req-3")
    events = eventstore.read_stream(txn.id)
    assert [e.type for e in events] == ["TransactionSubmitted", "TransactionApproved", "TransactionReversed"]
    assert events[2].data == {"transaction_id": str(txn.id), "amount": "1200", "currency": "JPY", "reason": "refunded"}
    assert events[2].metadata == {"actor": "cy", "request_id": "req-3"}
    row = Transaction.objects.get(pk=txn.id)
    assert (row.status, row.version, row.decided_by, row.decision_reason) == ("reversed", 3, "cy", "refunded")
    assert (row.decided_at, row.last_position) == (events[2].recorded_at, events[2].position) == (decision.transaction.decided_at, decision.position)
    assert (row.submitted_by, row.first_approved_by) == ("ana", "")


@pytest.mark.parametrize("state", ["pending", "rejected", "reversed"])
def test_reversing_what_is_not_approved_is_a_conflict_and_appends_nothing(state):
    txn = submit()
    if state == "rejected":
        services.transaction_reject(transaction_id=txn.id, actor="bo", reason="no")
    elif state == "reversed":
        approve(txn)
        services.transaction_reverse(transaction_id=txn.id, actor="bo", reason="refund")
    before = len(eventstore.read_stream(txn.id))
    with pytest.raises(TransactionNotApproved) as refused:
        services.transaction_reverse(transaction_id=txn.id, actor="cy", reason="again")
    assert refused.value.code == "transaction_not_approved" and refused.value.status_code == 409
    assert len(eventstore.read_stream(txn.id)) == before
    assert Transaction.objects.get(pk=txn.id).status == state


@pytest.mark.parametrize("blank", ["", "  \n"])
def test_reversing_needs_a_reason(blank):
    txn = submit()
    approve(txn)
    with pytest.raises(InvalidInput) as refused:
        services.transaction_reverse(transaction_id=txn.id, actor="bo", reason=blank)
    assert refused.value.field == "reason"
    assert Transaction.objects.get(pk=txn.id).status == "approved"


def test_reversing_at_a_stale_expected_version_is_a_conflict():
    txn = submit()
    approve(txn)
    with pytest.raises(StaleVersion):
        services.transaction_reverse(transaction_id=txn.id, actor="bo", reason="refund", expected_version=1)
    services.transaction_reverse(transaction_id=txn.id, actor="bo", reason="refund", expected_version=2)
    assert Transaction.objects.get(pk=txn.id).status == "reversed"


def test_reversing_an_unknown_transaction_is_not_found():
    with pytest.raises(TransactionNotFound):
        services.transaction_reverse(transaction_id=uuid.uuid4(), actor="bo", reason="refund")


def test_a_reversed_transaction_cannot_be_approved_or_rejected_again():
    txn = submit()
    approve(txn)
    services.transaction_reverse(transaction_id=txn.id, actor="bo", reason="refund")
    for command in (services.transaction_approve, services.transaction_reject):
        with pytest.raises(TransactionNotPending):
            command(transaction_id=txn.id, actor="cy", reason="late")
    assert len(eventstore.read_stream(txn.id)) == 3


# --- four eyes: nobody approves their own submission ------------------------------------------


def test_the_submitter_cannot_approve_their_own_transaction():
    txn = submit(actor="ana")
    assert txn.submitted_by == "ana" and Transaction.objects.get(pk=txn.id).submitted_by == "ana"
    with pytest.raises(OwnSubmission) as refused:
        services.transaction_approve(transaction_id=txn.id, actor="ana", reason="mine")
    assert (refused.value.status_code, refused.value.code) == (403, "own_submission")
    assert len(eventstore.read_stream(txn.id)) == 1
    assert Transaction.objects.get(pk=txn.id).status == "pending"


def test_the_submitter_may_still_reject_their_own_transaction():
    txn = submit(actor="ana")
    services.transaction_reject(transaction_id=txn.id, actor="ana", reason="withdrawn: entered twice")
    row = Transaction.objects.get(pk=txn.id)
    assert (row.status, row.decided_by, row.submitted_by) == ("rejected", "ana", "ana")


def test_a_stale_version_is_reported_before_the_own_submission_rule():
    txn = submit(actor="ana")
    with pytest.raises(StaleVersion):
        services.transaction_approve(transaction_id=txn.id, actor="ana", expected_version=3)


# --- four eyes: dual control above a threshold ----------------------------------------------


@pytest.fixture
def dual_control(settings):
    settings.APPROVAL_DUAL_CONTROL = {"EUR": Decimal("10000.00"), "JPY": Decimal("1000000")}
    return settings


def test_under_dual_control_the_first_approval_is_recorded_and_leaves_the_transaction_awaiting(dual_control):
    txn = submit(amount=Decimal("25000.00"))
    decision = services.transaction_approve(transaction_id=txn.id, actor="bo", reason="invoice checked", request_id="req-1")
    [_, event] = eventstore.read_stream(txn.id)
    assert event.type == "TransactionApprovalRecorded"
    assert event.data == {"transaction_id": str(txn.id), "amount": "25000.00", "currency": "EUR", "reason": "invoice checked",
                          "threshold": "10000.00"}
    assert event.metadata == {"actor": "bo", "request_id": "req-1"}
    row = Transaction.objects.get(pk=txn.id)
    assert (row.status, row.version, row.first_approved_by, row.last_position) == ("awaiting_second_approval", 2, "bo", event.position)
    # Not a decision yet.
    assert (row.decided_at, row.decided_by, row.decision_reason) == (None, "", "")
    fields = [field.attname for field in Transaction._meta.concrete_fields]
    assert {f: getattr(decision.transaction, f) for f in fields} == {f: getattr(row, f) for f in fields}
    assert decision.position == event.position


def test_under_dual_control_a_second_different_approver_approves(dual_control):
    txn = submit(amount=Decimal("25000.00"))
    services.transaction_approve(transaction_id=txn.id, actor="bo", reason="first look")
    decision = services.transaction_approve(transaction_id=txn.id, actor="cy", reason="second look")
    events = eventstore.read_stream(txn.id)
    assert [e.type for e in events] == ["TransactionSubmitted", "TransactionApprovalRecorded", "TransactionApproved"]
    assert events[2].data["amount"] == "25000.00" and events[2].metadata["actor"] == "cy"
    row = Transaction.objects.get(pk=txn.id)
    assert (row.status, row.version, row.decided_by, row.decision_reason, row.first_approved_by) == (
        "approved", 3, "cy", "second look", "bo")
    assert row.decided_at == events[2].recorded_at and decision.transaction.status == "approved"


def test_under_dual_control_the_first_approver_cannot_give_the_second_approval(dual_control):
    txn = submit(amount=Decimal("25000.00"))
    services.transaction_approve(transaction_id=txn.id, actor="bo")
    with pytest.raises(SecondApproverRequired) as refused:
        services.transaction_approve(transaction_id=txn.id, actor="bo")
    assert (refused.value.status_code, refused.value.code) == (403, "second_approver_required")
    assert len(eventstore.read_stream(txn.id)) == 2
    assert Transaction.objects.get(pk=txn.id).status == "awaiting_second_approval"


def test_under_dual_control_the_submitter_cannot_give_the_second_approval_either(dual_control):
    txn = submit(amount=Decimal("25000.00"), actor="ana")
    services.transaction_approve(transaction_id=txn.id, actor="bo")
    with pytest.raises(OwnSubmission):
        services.transaction_approve(transaction_id=txn.id, actor="ana")


@pytest.mark.parametrize(
    ("amount", "currency", "first_event"),
    [
        (Decimal("9999.99"), "EUR", "TransactionApproved"),
        (Decimal("10000.00"), "EUR", "TransactionApprovalRecorded"),  # exactly at the threshold needs two
        (Decimal("10000.01"), "EUR", "TransactionApprovalRecorded"),
        (Decimal("999999"), "JPY", "TransactionApproved"),
        (Decimal("1000000"), "JPY", "TransactionApprovalRecorded"),
        (Decimal("9000000.00"), "USD", "TransactionApproved"),  # no threshold for USD: one approver
    ],
)
def test_dual_control_applies_at_and_above_the_currencys_threshold_only(dual_control, amount, currency, first_event):
    txn = submit(amount=amount, currency=currency)
    services.transaction_approve(transaction_id=txn.id, actor="bo")
    assert eventstore.read_stream(txn.id)[-1].type == first_event


def test_without_the_setting_every_amount_needs_one_approver(settings):
    settings.APPROVAL_DUAL_CONTROL = {}
    txn = submit(amount=Decimal("9999999999.00"))
    services.transaction_approve(transaction_id=txn.id, actor="bo")
    assert Transaction.objects.get(pk=txn.id).status == "approved"


@pytest.mark.parametrize("rejecter", ["bo", "cy", "ana"])
def test_a_transaction_awaiting_its_second_approval_may_be_rejected_by_anyone(dual_control, rejecter):
    txn = submit(amount=Decimal("25000.00"), actor="ana")
    services.transaction_approve(transaction_id=txn.id, actor="bo")
    services.transaction_reject(transaction_id=txn.id, actor=rejecter, reason="not ours")
    row = Transaction.objects.get(pk=txn.id)
    assert (row.status, row.version, row.decided_by, row.first_approved_by) == ("rejected", 3, rejecter, "bo")
    with pytest.raises(TransactionNotPending):
        services.transaction_approve(transaction_id=txn.id, actor="cy")


def test_a_first_approval_still_needs_a_second_after_the_threshold_is_lifted(dual_control):
    txn = submit(amount=Decimal("25000.00"))
    services.transaction_approve(transaction_id=txn.id, actor="bo")
    dual_control.APPROVAL_DUAL_CONTROL = {}
    with pytest.raises(SecondApproverRequired):
        services.transaction_approve(transaction_id=txn.id, actor="bo")
    services.transaction_approve(transaction_id=txn.id, actor="cy")
    assert Transaction.objects.get(pk=txn.id).status == "approved"


def test_a_transaction_approved_by_two_can_be_reversed(dual_control):
    txn = submit(amount=Decimal("25000.00"))
    services.transaction_approve(transaction_id=txn.id, actor="bo")
    with pytest.raises(TransactionNotApproved):
        services.transaction_reverse(transaction_id=txn.id, actor="cy", reason="not yet approved")
    services.transaction_approve(transaction_id=txn.id, actor="cy")
    services.transaction_reverse(transaction_id=txn.id, actor="dee", reason="chargeback")
    row = Transaction.objects.get(pk=txn.id)
    assert (row.status, row.version, row.decided_by, row.first_approved_by) == ("reversed", 4, "dee", "bo")


# --- every decision outside any transaction: two round trips, the row's UPDATE rides along --------


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("step", ["first approval", "second approval", "reversal"])
def test_each_new_decision_outside_any_transaction_takes_two_round_trips_and_writes_its_columns(monkeypatch, settings, step):
    settings.APPROVAL_DUAL_CONTROL = {"EUR": Decimal("100.00")}
    txn = submit(amount=Decimal("500.00"))
    if step != "first approval":
        services.transaction_approve(transaction_id=txn.id, actor="bo", reason="first")
    if step == "reversal":
        services.transaction_approve(transaction_id=txn.id, actor="cy", reason="second")
    before = Transaction.objects.get(pk=txn.id)
    monkeypatch.setattr("analytics.tasks.project_weekly_income.delay", lambda: None)  # no eager projection to count
    command = {
        "first approval": lambda: services.transaction_approve(transaction_id=txn.id, actor="bo", reason="first"),
        "second approval": lambda: services.transaction_approve(transaction_id=txn.id, actor="cy", reason="second"),
        "reversal": lambda: services.transaction_reverse(transaction_id=txn.id, actor="dee", reason="refund"),
    }[step]
    decision, statements = _statements_of(command)
    assert len(statements) == 2, statements
    event = eventstore.read_stream(txn.id)[-1]
    row = Transaction.objects.get(pk=txn.id)
    expected = {
        "first approval": ("awaiting_second_approval", "bo", None, "", ""),
        "second approval": ("approved", "bo", event.recorded_at, "cy", "second"),
        "reversal": ("reversed", "bo", event.recorded_at, "dee", "refund"),
    }[step]
    assert (row.status, row.first_approved_by, row.decided_at, row.decided_by, row.decision_reason) == expected
    assert (row.version, row.last_position) == (before.version + 1, event.position) == (decision.transaction.version, decision.position)
    assert (row.amount, row.submitted_by, row.created_at) == (before.amount, before.submitted_by, before.created_at)
    fields = [field.attname for field in Transaction._meta.concrete_fields]
    assert {f: getattr(decision.transaction, f) for f in fields} == {f: getattr(row, f) for f in fields}


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_four_eyes_refusals_are_the_same_and_append_nothing(settings):
    settings.APPROVAL_DUAL_CONTROL = {"EUR": Decimal("100.00")}
    txn = submit(amount=Decimal("500.00"), actor="ana")
    with pytest.raises(OwnSubmission):
        services.transaction_approve(transaction_id=txn.id, actor="ana")
    services.transaction_approve(transaction_id=txn.id, actor="bo")
    with pytest.raises(SecondApproverRequired):
        services.transaction_approve(transaction_id=txn.id, actor="bo")
    with pytest.raises(TransactionNotApproved):
        services.transaction_reverse(transaction_id=txn.id, actor="bo", reason="refund")
    assert len(eventstore.read_stream(txn.id)) == 2


@pytest.mark.needs_postgres
def test_a_deadlock_while_waiting_for_the_row_lock_is_a_conflict_not_a_server_error():
    # The cycle (a locked read in a unit of work, decisions outside any transaction whose UPDATE waits
    # after their INSERT) is rare and timing-bound; PostgreSQL's answer to it is what is simulated here.
    from django.db import OperationalError, connection

    from core.db import prepared_name
    from core.errors import Conflict

    class Deadlock(Exception):
        sqlstate = "40P01"

    locked_read = prepared_name(services._sql("lock"))  # once prepared, only its name is sent

    def deadlock_on_locked_read(execute, sql, params, many, context):
        if "FOR UPDATE" in sql or locked_read in sql:
            raise OperationalError("deadlock detected") from Deadlock()
        return execute(sql, params, many, context)

    txn = submit()
    with connection.execute_wrapper(deadlock_on_locked_read), pytest.raises(Conflict) as refused:
        with unit_of_work():
            services.transaction_approve(transaction_id=txn.id, actor="bo")
    assert refused.value.code == "conflict" and refused.value.status_code == 409
    assert len(eventstore.read_stream(txn.id)) == 1


def test_it_refuses_the_submitters_first_approval_under_dual_control_and_records_nothing(dual_control):
    # Had the threshold been checked first, the submitter would count as one of the two approvers.
    txn = submit(amount=Decimal("25000.00"), actor="ana")
    with pytest.raises(OwnSubmission) as refused:
        services.transaction_approve(transaction_id=txn.id, actor="ana")
    assert (refused.value.status_code, refused.value.code) == (403, "own_submission")
    assert [e.type for e in eventstore.read_stream(txn.id)] == ["TransactionSubmitted"]
    row = Transaction.objects.get(pk=txn.id)
    assert (row.status, row.first_approved_by) == ("pending", "")
