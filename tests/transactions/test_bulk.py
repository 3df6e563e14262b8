"""The bulk decision command: each item its own command, refusals kept per item, one announcement per batch."""
import uuid

import pytest
from django.db import transaction
from prometheus_client import REGISTRY

from core import eventstore
from core.db import NestedCommandError, unit_of_work
from core.errors import InvalidInput
from core.signals import coalesced_commits, events_committed
from transactions import bulk, services
from transactions.bulk import transaction_bulk_decide
from transactions.models import Transaction
from tests.factories import submit

pytestmark = pytest.mark.django_db


def decide(*decisions, actor="bo", **kwargs):
    """decide((id, "approve"), (id, "reject", {"reason": "no"}), ...)"""
    items = [{"id": item[0], "action": item[1], **(item[2] if len(item) > 2 else {})} for item in decisions]
    return transaction_bulk_decide(decisions=items, actor=actor, **kwargs)


@pytest.fixture
def sends():
    """Every events_committed send, as (last_position, [event types])."""
    heard = []

    def listener(sender, last_position, events, **kwargs):
        heard.append((last_position, [event.type for event in events]))

    events_committed.connect(listener)
    yield heard
    events_committed.disconnect(listener)


def test_it_decides_each_item_in_order_and_answers_the_highest_position():
    first, second = submit(), submit()
    outcome = decide((first.id, "approve", {"reason": "checked"}), (second.id, "reject", {"reason": "duplicate"}))
    assert [(item.id, item.action, item.error) for item in outcome.items] == [(first.id, "approve", None), (second.id, "reject", None)]
    approved, rejected = (item.decision for item in outcome.items)
    assert approved.transaction.status == "approved" and rejected.transaction.status == "rejected"
    assert approved.position < rejected.position == outcome.position
    assert [e.type for e in eventstore.read_stream(first.id)] == ["TransactionSubmitted", "TransactionApproved"]
    assert eventstore.read_stream(second.id)[-1].data["reason"] == "duplicate"
    assert Transaction.objects.get(pk=first.id).decided_by == "bo"


def test_it_keeps_deciding_after_refused_items_and_each_refusal_appends_nothing():
    good, decided, stale, reasonless, later = (submit() for _ in range(5))
    services.transaction_reject(transaction_id=decided.id, actor="bo", reason="earlier")
    log_before = eventstore.last_position()
    outcome = decide(
        (good.id, "approve"),
        (uuid.uuid4(), "approve"),
        (decided.id, "approve"),
        (stale.id, "approve", {"expected_version": 7}),
        (reasonless.id, "reject", {"reason": "   "}),
        (later.id, "reject", {"reason": "wrong payee"}),
    )
    codes = [(type(item.error).__name__, item.error.code) if item.error else None for item in outcome.items]
    assert codes == [
        None,
        ("TransactionNotFound", "transaction_not_found"),
        ("TransactionNotPending", "transaction_not_pending"),
        ("StaleVersion", "stale_version"),
        ("InvalidInput", "invalid_request"),
        None,
    ]
    assert outcome.items[4].error.field == "reason"
    appended = eventstore.read_all(after=log_before)
    assert [(e.stream_id, e.type) for e in appended] == [(good.id, "TransactionApproved"), (later.id, "TransactionRejected")]
    assert outcome.position == appended[-1].position
    assert Transaction.objects.get(pk=stale.id).status == Transaction.objects.get(pk=reasonless.id).status == "pending"


def test_it_runs_a_second_decision_on_the_same_id_against_what_the_first_one_did():
    txn = submit()
    outcome = decide((txn.id, "approve"), (txn.id, "reject", {"reason": "changed my mind"}))
    assert outcome.items[0].decision.transaction.status == "approved"
    assert outcome.items[1].error.code == "transaction_not_pending"
    assert [e.type for e in eventstore.read_stream(txn.id)] == ["TransactionSubmitted", "TransactionApproved"]


def test_it_answers_no_position_when_no_item_was_decided():
    outcome = decide((uuid.uuid4(), "approve"), (uuid.uuid4(), "reject", {"reason": "x"}))
    assert outcome.position is None
    assert [item.error.status_code for item in outcome.items] == [404, 404]


@pytest.mark.parametrize(
    ("decisions", "field"),
    [
        ([], "decisions"),
        ([{"id": uuid.uuid4(), "action": "approve"}] * (bulk.MAX_DECISIONS + 1), "decisions"),
        (["approve"], "decisions[0]"),
        ([{"id": "not-a-uuid", "action": "approve"}], "decisions[0].id"),
        ([{"id": uuid.uuid4(), "action": "approve"}, {"id": uuid.uuid4(), "action": "delete"}], "decisions[1].action"),
    ],
)
def test_it_refuses_a_malformed_batch_whole_and_decides_nothing(decisions, field):
    txn = submit()
    decisions = [dict(item, id=txn.id) if isinstance(item, dict) and isinstance(item["id"], uuid.UUID) else item for item in decisions]
    with pytest.raises(InvalidInput) as refused:
        transaction_bulk_decide(decisions=decisions, actor="bo")
    assert refused.value.field == field
    assert Transaction.objects.get(pk=txn.id).status == "pending"


def test_it_refuses_to_run_inside_a_callers_transaction():
    txn = submit()
    with pytest.raises(NestedCommandError), transaction.atomic():
        decide((txn.id, "approve"))


def test_it_runs_every_item_as_a_savepoint_of_a_unit_of_work_so_a_refusal_undoes_only_itself():
    first, second = submit(), submit()
    with unit_of_work():
        outcome = decide((first.id, "approve"), (second.id, "approve", {"expected_version": 9}), (second.id, "approve"))
    assert [item.error.code if item.error else "ok" for item in outcome.items] == ["ok", "stale_version", "ok"]
    assert {row.status for row in Transaction.objects.filter(pk__in=[first.id, second.id])} == {"approved"}


# --- one announcement for the batch (commits are real here: on_commit runs) -----------------------------


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_it_announces_a_batch_of_n_commits_once_and_the_projector_then_has_every_one(sends):
    from analytics import selectors

    txns = [submit(amount="2.50") for _ in range(12)]
    sends.clear()
    outcome = decide(*[(txn.id, "approve") for txn in txns[:10]], (txns[10].id, "reject", {"reason": "no"}), (uuid.uuid4(), "approve"))
    assert sends == [(outcome.position, ["TransactionApproved"] * 10 + ["TransactionRejected"])]
    # Celery runs eagerly in unit tests: the one wake-up ran the projector over the whole batch.
    report = selectors.weekly_income(currency="EUR")
    assert report.as_of >= outcome.position
    assert sum(row["count"] for row in report.rows) == 10


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_it_counts_every_event_of_the_one_announcement_in_the_metrics(sends):
    def approvals() -> float:
        return REGISTRY.get_sample_value("ledgerpulse_events_appended_total", {"type": "TransactionApproved"}) or 0.0

    txns = [submit() for _ in range(7)]
    before = approvals()
    decide(*[(txn.id, "approve") for txn in txns])
    assert approvals() - before == 7
    assert len(sends) == 7 + 1  # the seven submissions one by one, then the batch once


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_it_still_announces_what_committed_when_an_item_fails_midway(sends, monkeypatch):
    txns = [submit() for _ in range(4)]
    sends.clear()
    approve = services.transaction_approve

    def approve_until_the_third(*, transaction_id, **kwargs):
        if transaction_id == txns[2].id:
            raise RuntimeError("the database went away")
        return approve(transaction_id=transaction_id, **kwargs)

    monkeypatch.setitem(bulk.COMMANDS, "approve", approve_until_the_third)
    with pytest.raises(RuntimeError):
        decide(*[(txn.id, "approve") for txn in txns])
    assert [types for _, types in sends] == [["TransactionApproved"] * 2]
    assert sends[0][0] == Transaction.objects.get(pk=txns[1].id).last_position
    assert [Transaction.objects.get(pk=txn.id).status for txn in txns] == ["approved", "approved", "pending", "pending"]


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_it_announces_a_batch_in_a_unit_of_work_once_when_the_unit_commits_and_never_if_it_rolls_back(sends):
    txns = [submit() for _ in range(3)]
    sends.clear()
    with unit_of_work():
        outcome = decide(*[(txn.id, "approve") for txn in txns[:2]])
        assert sends == []  # still in flight
    assert sends == [(outcome.position, ["TransactionApproved"] * 2)]

    class Failed(Exception):
        pass

    sends.clear()
    with pytest.raises(Failed), unit_of_work():
        decide((txns[2].id, "approve"))
        raise Failed
    assert sends == []
    assert Transaction.objects.get(pk=txns[2].id).status == "pending"


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_it_adds_a_nested_block_to_the_outer_one_and_announces_an_empty_block_not_at_all(sends):
    first, second = submit(), submit()
    sends.clear()
    with coalesced_commits():
        with coalesced_commits():
            services.transaction_approve(transaction_id=first.id, actor="bo")
        assert sends == []
        services.transaction_approve(transaction_id=second.id, actor="bo")
    assert [types for _, types in sends] == [["TransactionApproved"] * 2]
    sends.clear()
    with coalesced_commits():
        pass
    assert sends == []


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
def test_it_answers_409_for_an_item_that_deadlocks_with_another_batch_and_keeps_the_rest(monkeypatch):
    import threading
    import time

    from django.db import connection

    first, second = submit(), submit()
    rows_taken, main_waits, done = threading.Event(), threading.Event(), threading.Event()

    def other_batch():
        # Another unit of work holding `second` that then wants `first`, as a batch in the other order would.
        try:
            with transaction.atomic():
                list(Transaction.objects.select_for_update().filter(pk=second.id))
                rows_taken.set()
                main_waits.wait(10)
                time.sleep(0.3)  # the main batch waits longer, so its deadlock check runs first: it is the victim
                list(Transaction.objects.select_for_update().filter(pk=first.id))
        finally:
            connection.close()
            done.set()

    approve = services.transaction_approve

    def approve_signalling(*, transaction_id, **kwargs):
        if transaction_id == second.id:
            main_waits.set()
        return approve(transaction_id=transaction_id, **kwargs)

    monkeypatch.setitem(bulk.COMMANDS, "approve", approve_signalling)
    thread = threading.Thread(target=other_batch)
    thread.start()
    assert rows_taken.wait(10)
    with unit_of_work():
        outcome = decide((first.id, "approve"), (second.id, "approve"))
    assert done.wait(20)
    thread.join()
    assert [item.error.code if item.error else "ok" for item in outcome.items] == ["ok", "conflict"]
    assert outcome.items[1].error.status_code == 409
    assert [Transaction.objects.get(pk=txn.id).status for txn in (first, second)] == ["approved", "pending"]
