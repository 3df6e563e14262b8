"""Read-side queries over the transaction read model."""
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tests.database import rows_read
from tests.factories import approved, submit
from transactions.models import Transaction
from transactions.selectors import transactions_by_id

pytestmark = pytest.mark.django_db
TABLE = "transactions_transaction"


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


@pytest.fixture
def a_big_table():
    """40,000 transactions straight into the read model: 20,000 undecided (the backlog), 20,000 decided."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO transactions_transaction (id, amount, currency, occurred_at, reference, description, status, version, "
            "created_at, decided_by, decision_reason, last_position, submitted_by, first_approved_by) "
            "SELECT gen_random_uuid(), 1, 'EUR', now() - g * interval '1 minute', 'INV-' || g, '', "
            "CASE WHEN g % 2 = 0 THEN 'pending' WHEN g % 4 = 1 THEN 'approved' ELSE 'rejected' END, 1, "
            "now() - g * interval '1 second', '', '', 0, 'clerk', '' FROM generate_series(1, 40000) g"
        )
        cursor.execute("ANALYZE transactions_transaction")


@pytest.mark.needs_postgres
def test_the_newest_of_a_large_backlog_are_read_from_an_index_in_order_not_sorted(a_big_table):
    import json

    from transactions.models import UNDECIDED
    from transactions.selectors import pending_transactions

    count, latest = pending_transactions(limit=20)
    assert count == 20_000 and len(latest) == 20 and all(t.status == "pending" for t in latest)
    assert [t.created_at for t in latest] == sorted((t.created_at for t in latest), reverse=True)
    newest = Transaction.objects.filter(status__in=UNDECIDED).order_by("-created_at", "-id")[:20]
    plan = json.loads(newest.explain(format="json", analyze=True))[0]["Plan"]
    assert rows_read(plan, TABLE) == 20, json.dumps(plan)[:2000]


@pytest.mark.needs_postgres
def test_a_reference_that_is_not_there_is_answered_from_an_index(a_big_table):
    import json

    from transactions.selectors import transaction_list

    for reference in ("INV-nope", "INV-17"):
        page = transaction_list().filter(reference=reference).order_by("-created_at", "-id")[:51]
        plan = json.loads(page.explain(format="json", analyze=True))[0]["Plan"]
        assert rows_read(plan, TABLE) <= 1, (reference, json.dumps(plan)[:2000])
