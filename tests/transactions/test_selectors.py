"""Read-side queries over the transaction read model."""
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tests.factories import approved, submit
from transactions.models import Transaction
from transactions.selectors import transactions_by_id

pytestmark = pytest.mark.django_db


def fields_of(txn: Transaction) -> dict:
    return {field.attname: getattr(txn, field.attname) for field in Transaction._meta.concrete_fields}


def test_it_reads_the_transactions_asked_for_exactly_as_the_orm_does_and_leaves_out_unknown_ids():
    decided = approved(amount="9999999999999.99", currency="EUR").transaction
    other = submit(amount="5", currency="JPY", occurred_at=datetime(2026, 3, 29, 1, 30, tzinfo=timezone.utc),
                   description="Überweisung – 東京 ✓", reference="INV-\u00e9")
    submit()  # not asked for

    rows = transactions_by_id(transaction_ids=[decided.id, str(other.id), uuid.uuid4()])

    assert set(rows) == {decided.id, other.id}
    for txn in (decided, other):
        assert fields_of(rows[txn.id]) == fields_of(Transaction.objects.get(pk=txn.id))
    assert rows[decided.id].amount == Decimal("9999999999999.99") and rows[decided.id].decided_at.tzinfo is not None


def test_it_answers_no_rows_for_no_ids():
    assert transactions_by_id(transaction_ids=[]) == {}
