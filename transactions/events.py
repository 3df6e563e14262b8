"""The transaction stream's events (past tense) and their payloads."""
from datetime import datetime
from decimal import Decimal

from core.eventstore import NewEvent
from core.money import format_amount

SUBMITTED = "TransactionSubmitted"
APPROVED = "TransactionApproved"
REJECTED = "TransactionRejected"


def submitted(*, transaction_id, amount: Decimal, currency: str, occurred_at: datetime, reference: str, description: str) -> NewEvent:
    return NewEvent(
        SUBMITTED,
        {
            "transaction_id": str(transaction_id),
            "amount": format_amount(amount, currency),
            "currency": currency,
            "occurred_at": occurred_at.isoformat(),
            "reference": reference,
            "description": description,
        },
    )


def approved(*, transaction_id, amount: Decimal, currency: str, occurred_at: datetime, reason: str) -> NewEvent:
    return NewEvent(
        APPROVED,
        {
            "transaction_id": str(transaction_id),
            "amount": format_amount(amount, currency),
            "currency": currency,
            "occurred_at": occurred_at.isoformat(),
            "reason": reason,
        },
    )


def rejected(*, transaction_id, reason: str) -> NewEvent:
    return NewEvent(REJECTED, {"transaction_id": str(transaction_id), "reason": reason})
