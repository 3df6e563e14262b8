"""Read-side queries over the transaction read model."""
from django.db.models import QuerySet

from transactions.models import Transaction, TransactionStatus
from transactions.services import TransactionNotFound


def transaction_list() -> QuerySet[Transaction]:
    return Transaction.objects.all()


def transaction_get(*, transaction_id) -> Transaction:
    txn = Transaction.objects.filter(pk=transaction_id).first()
    if txn is None:
        raise TransactionNotFound(f"no transaction {transaction_id}")
    return txn


def pending_transactions(*, limit: int = 20) -> tuple[int, list[Transaction]]:
    pending = Transaction.objects.filter(status=TransactionStatus.PENDING)
    return pending.count(), list(pending.order_by("-created_at", "-id")[:limit])
