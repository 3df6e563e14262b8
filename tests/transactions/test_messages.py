"""Realtime messages for transaction events: each shows the transaction as its own event left it."""
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from core import eventstore
from transactions import services
from transactions.messages import transaction_messages
from transactions.models import Transaction
from transactions.serializers import transaction_payload

pytestmark = pytest.mark.django_db
WHEN = datetime(2026, 11, 18, 9, 30, tzinfo=timezone.utc)


def submit(amount="12.50"):
    return services.transaction_submit(amount=Decimal(amount), currency="EUR", occurred_at=WHEN, actor="ana", reference="INV-1")


def test_an_approval_followed_by_a_reversal_in_one_batch_gives_each_message_its_own_state():
    txn = submit()
    services.transaction_approve(transaction_id=txn.id, actor="bo", reason="checked")
    services.transaction_reverse(transaction_id=txn.id, actor="cy", reason="refunded")
    batch = eventstore.read_all()
    submitted, approved, reversed_ = transaction_messages(batch)

    assert [m["type"] for m in (submitted, approved, reversed_)] == ["transaction.submitted", "transaction.approved", "transaction.reversed"]
    assert [m["seq"] for m in (submitted, approved, reversed_)] == [e.position for e in batch]
    seen = [(m["transaction"]["status"], m["transaction"]["version"], m["transaction"]["decided_by"], m["transaction"]["decision_reason"])
            for m in (submitted, approved, reversed_)]
    assert seen == [("pending", 1, "", ""), ("approved", 2, "bo", "checked"), ("reversed", 3, "cy", "refunded")]
    assert submitted["transaction"]["decided_at"] is None
    assert approved["transaction"]["decided_at"] != reversed_["transaction"]["decided_at"]
    # The last event's message is exactly what the REST API answers for the row now.
    assert reversed_["transaction"] == transaction_payload(Transaction.objects.get(pk=txn.id))
    assert {m["transaction"]["submitted_by"] for m in (submitted, approved, reversed_)} == {"ana"}


def test_an_approvals_message_matches_what_the_api_answered_for_it_even_after_a_later_reversal():
    txn = submit()
    approval = services.transaction_approve(transaction_id=txn.id, actor="bo", reason="checked")
    answered = transaction_payload(approval.transaction)
    services.transaction_reverse(transaction_id=txn.id, actor="cy", reason="refunded")
    [_, approved, _] = transaction_messages(eventstore.read_all())
    assert approved["transaction"] == answered


def test_dual_control_gives_approval_recorded_then_approved(settings):
    settings.APPROVAL_DUAL_CONTROL = {"EUR": Decimal("100.00")}
    txn = submit(amount="500.00")
    first = services.transaction_approve(transaction_id=txn.id, actor="bo", reason="one")
    recorded_answer = transaction_payload(first.transaction)
    services.transaction_approve(transaction_id=txn.id, actor="cy", reason="two")
    [_, recorded, approved] = transaction_messages(eventstore.read_all())

    assert recorded["type"] == "transaction.approval_recorded"
    assert recorded["transaction"] == recorded_answer
    body = recorded["transaction"]
    assert (body["status"], body["version"], body["first_approved_by"], body["decided_by"], body["decided_at"]) == (
        "awaiting_second_approval", 2, "bo", "", None)
    assert approved["type"] == "transaction.approved"
    assert (approved["transaction"]["status"], approved["transaction"]["first_approved_by"], approved["transaction"]["decided_by"]) == (
        "approved", "bo", "cy")
    assert approved["transaction"] == transaction_payload(Transaction.objects.get(pk=txn.id))


def test_a_rejection_while_awaiting_keeps_who_approved_first(settings):
    settings.APPROVAL_DUAL_CONTROL = {"EUR": Decimal("100.00")}
    txn = submit(amount="500.00")
    services.transaction_approve(transaction_id=txn.id, actor="bo", reason="one")
    services.transaction_reject(transaction_id=txn.id, actor="cy", reason="wrong payee")
    [submitted, _, rejected] = transaction_messages(eventstore.read_all())
    assert submitted["transaction"]["first_approved_by"] == ""
    assert (rejected["type"], rejected["transaction"]["status"], rejected["transaction"]["first_approved_by"]) == (
        "transaction.rejected", "rejected", "bo")
