"""Commands: one function per use case; each is one durable transaction that appends events
and updates the read model, and everything else (projection, pushes) happens after commit."""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from core import eventstore
from core.db import command_transaction
from core.errors import Conflict, InvalidInput, NotFound
from core.money import MoneyError, normalize_currency, parse_amount
from core.validation import check_occurred_at, clean_text
from transactions import events
from transactions.models import Transaction, TransactionStatus, read_model_writes_allowed

MAX_REFERENCE = 140
MAX_DESCRIPTION = 1000
MAX_REASON = 1000


class TransactionNotFound(NotFound):
    code = "transaction_not_found"


class TransactionNotPending(Conflict):
    code = "transaction_not_pending"


class StaleVersion(Conflict):
    code = "stale_version"


@dataclass(frozen=True)
class Decision:
    transaction: Transaction
    position: int


def _metadata(actor: str, request_id: str | None, client_request_id: str | None) -> dict:
    metadata = {"actor": actor, "request_id": request_id}
    if client_request_id:
        # The caller's own id (validated at the edge) is kept apart: request_id is always ours.
        metadata["client_request_id"] = client_request_id
    return metadata


@contextmanager
def _command(name: str):
    """A command's transaction (durable: see core.db.command_transaction), the only place
    where the Transaction read model may be written."""
    with command_transaction(name):
        token = read_model_writes_allowed.set(True)
        try:
            yield
        finally:
            read_model_writes_allowed.reset(token)


def transaction_submit(
    *,
    amount: Decimal | str,
    currency: str,
    actor: str,
    occurred_at: datetime | None = None,
    reference: str = "",
    description: str = "",
    request_id: str | None = None,
    client_request_id: str | None = None,
) -> Transaction:
    try:
        currency = normalize_currency(currency)
    except MoneyError as exc:
        raise InvalidInput("currency", str(exc)) from None
    try:
        amount = parse_amount(amount, currency)
    except MoneyError as exc:
        raise InvalidInput("amount", str(exc)) from None
    occurred_at = timezone.now() if occurred_at is None else check_occurred_at(occurred_at)
    reference = clean_text(reference, field="reference", max_length=MAX_REFERENCE)
    description = clean_text(description, field="description", max_length=MAX_DESCRIPTION, multiline=True)

    transaction_id = uuid.uuid4()
    with _command("transaction_submit"):
        [event] = eventstore.append(
            stream_id=transaction_id,
            expected_version=0,
            events=[
                events.submitted(
                    transaction_id=transaction_id,
                    amount=amount,
                    currency=currency,
                    occurred_at=occurred_at,
                    reference=reference,
                    description=description,
                )
            ],
            metadata=_metadata(actor, request_id, client_request_id),
        )
        return Transaction.objects.create(
            id=transaction_id,
            amount=amount,
            currency=currency,
            occurred_at=occurred_at,
            reference=reference,
            description=description,
            status=TransactionStatus.PENDING,
            version=event.version,
            created_at=event.recorded_at,
            last_position=event.position,
        )


def transaction_approve(
    *, transaction_id, actor: str, reason: str = "", expected_version: int | None = None, request_id: str | None = None,
    client_request_id: str | None = None,
) -> Decision:
    return _decide(
        transaction_id=transaction_id,
        actor=actor,
        reason=reason,
        expected_version=expected_version,
        request_id=request_id,
        client_request_id=client_request_id,
        status=TransactionStatus.APPROVED,
    )


def transaction_reject(
    *, transaction_id, actor: str, reason: str, expected_version: int | None = None, request_id: str | None = None,
    client_request_id: str | None = None,
) -> Decision:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput("reason", "a reason is required to reject a transaction")
    return _decide(
        transaction_id=transaction_id,
        actor=actor,
        reason=reason,
        expected_version=expected_version,
        request_id=request_id,
        client_request_id=client_request_id,
        status=TransactionStatus.REJECTED,
    )


def _decide(*, transaction_id, actor, reason, expected_version, request_id, client_request_id, status) -> Decision:
    reason = clean_text(reason, field="reason", max_length=MAX_REASON, multiline=True)
    command = "transaction_approve" if status == TransactionStatus.APPROVED else "transaction_reject"
    with _command(command):
        # The row lock makes concurrent decisions on one transaction queue up:
        # the first wins, the rest then see a decided transaction and get 409.
        txn = _lock_row(transaction_id)
        if txn is None:
            raise TransactionNotFound(f"no transaction {transaction_id}")
        if expected_version is not None and expected_version != txn.version:
            raise StaleVersion(f"transaction {txn.id} is at version {txn.version}, not {expected_version}")
        if txn.status != TransactionStatus.PENDING:
            raise TransactionNotPending(f"transaction {txn.id} is already {txn.status}")
        if status == TransactionStatus.APPROVED:
            event = events.approved(
                transaction_id=txn.id, amount=txn.amount, currency=txn.currency, occurred_at=txn.occurred_at, reason=reason
            )
        else:
            event = events.rejected(transaction_id=txn.id, reason=reason)
        [recorded] = eventstore.append(
            stream_id=txn.id, expected_version=txn.version, events=[event], metadata=_metadata(actor, request_id, client_request_id)
        )
        decided = {
            "status": status,
            "version": recorded.version,
            "decided_at": recorded.recorded_at,
            "decided_by": actor,
            "decision_reason": reason,
            "last_position": recorded.position,
        }
        _write_decision(txn.pk, decided)
        for field, value in decided.items():
            setattr(txn, field, value)
    return Decision(transaction=txn, position=recorded.position)


# The two statements of a decision on the read model, in SQL built once from the model: the ORM's
# query compilation cost about 1.2 ms of CPU per approval for these two (2.0 vs 0.8 ms measured),
# a fifth of the request. Only _decide() runs them, inside its command (read_model_writes_allowed).
_FIELDS = Transaction._meta.concrete_fields
_DECIDED = ("status", "version", "decided_at", "decided_by", "decision_reason", "last_position")


def _sql(statement: str) -> str:
    quote = connection.ops.quote_name
    table = quote(Transaction._meta.db_table)
    columns = ", ".join(quote(field.column) for field in _FIELDS)
    assignments = ", ".join(f"{quote(Transaction._meta.get_field(name).column)} = %s" for name in _DECIDED)
    pk = quote(Transaction._meta.pk.column)
    if statement == "lock":
        return f"SELECT {columns} FROM {table} WHERE {pk} = %s FOR UPDATE"
    return f"UPDATE {table} SET {assignments} WHERE {pk} = %s"


def _lock_row(transaction_id) -> Transaction | None:
    """The transaction, its row locked until the command ends (SELECT ... FOR UPDATE), or None."""
    if connection.vendor != "postgresql":
        # SQLite (embedded mode) needs Django's value converters (decimals, datetimes) and has no
        # row locks (its IMMEDIATE transaction admits one writer): the ORM it is.
        return Transaction.objects.filter(pk=transaction_id).first()
    pk = Transaction._meta.pk.to_python(transaction_id)  # a malformed id fails as the ORM's lookup would
    with connection.cursor() as cursor:
        cursor.execute(_sql("lock"), [pk])
        row = cursor.fetchone()
    if row is None:
        return None
    return Transaction.from_db(connection.alias, [field.attname for field in _FIELDS], list(row))


def _write_decision(pk, decided: dict) -> None:
    if connection.vendor != "postgresql":
        Transaction.objects.filter(pk=pk).update(**decided)  # SQLite: Django adapts the values (uuid as hex)
        return
    with connection.cursor() as cursor:
        cursor.execute(_sql("update"), [decided[name] for name in _DECIDED] + [pk])
