"""Read-side queries over the transaction read model."""
from django.db.models import QuerySet

from transactions.models import UNDECIDED, Transaction
from transactions.services import TransactionNotFound


def transaction_list() -> QuerySet[Transaction]:
    return Transaction.objects.all()


def transaction_get(*, transaction_id) -> Transaction:
    txn = Transaction.objects.filter(pk=transaction_id).first()
    if txn is None:
        raise TransactionNotFound(f"no transaction {transaction_id}")
    return txn


def pending_transactions(*, limit: int = 20) -> tuple[int, list[Transaction]]:
    """The queue still waiting for a decision: pending, and (dual control) awaiting a second approval."""
    pending = Transaction.objects.filter(status__in=UNDECIDED)
    return pending.count(), list(pending.order_by("-created_at", "-id")[:limit])
