"""Read-side queries over the transaction read model."""
from django.db import connection
from django.db.models import QuerySet

from core.db import execute_prepared

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


_BY_ID_SQL: list[str] = []


def transactions_by_id(*, transaction_ids) -> dict:
    """These transactions' rows by id (missing ones left out), in one statement.

    The projector reads them for every batch's messages: on PostgreSQL the statement is prepared and
    the rows built without the ORM's query compiler, which cost more CPU than the query (0.4 ms
    against under 0.1 ms per batch).
    """
    ids = sorted({Transaction._meta.pk.to_python(tid) for tid in transaction_ids})
    if connection.vendor != "postgresql" or not ids:
        # SQLite (embedded mode) needs Django's value converters (decimals, datetimes).
        return Transaction.objects.in_bulk(ids) if ids else {}
    fields = Transaction._meta.concrete_fields
    if not _BY_ID_SQL:
        quote = connection.ops.quote_name
        columns = ", ".join(quote(field.column) for field in fields)
        _BY_ID_SQL.append(
            f"SELECT {columns} FROM {quote(Transaction._meta.db_table)} WHERE {quote(Transaction._meta.pk.column)} = ANY(%s::uuid[])"
        )
    with connection.cursor() as cursor:
        execute_prepared(cursor, _BY_ID_SQL[0], [ids])
        rows = cursor.fetchall()
    attnames = [field.attname for field in fields]
    return {txn.pk: txn for txn in (Transaction.from_db(connection.alias, attnames, list(row)) for row in rows)}
