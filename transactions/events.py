"""The transaction stream's events (past tense) and their payloads."""
from datetime import datetime
from decimal import Decimal

from core.eventstore import NewEvent
from core.money import format_amount

SUBMITTED = "TransactionSubmitted"
APPROVED = "TransactionApproved"
REJECTED = "TransactionRejected"
# The first of two approvals under dual control (core.settings.APPROVAL_DUAL_CONTROL): no income yet.
APPROVAL_RECORDED = "TransactionApprovalRecorded"
# A correction of an approved transaction: counts against income in the week it happened (recorded_at).
REVERSED = "TransactionReversed"


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


def approval_recorded(*, transaction_id, amount: Decimal, currency: str, reason: str, threshold: Decimal) -> NewEvent:
    return NewEvent(
        APPROVAL_RECORDED,
        {
            "transaction_id": str(transaction_id),
            "amount": format_amount(amount, currency),
            "currency": currency,
            "reason": reason,
            # The threshold in force when it was recorded: the reason a second approver was needed.
            "threshold": format_amount(threshold, currency),
        },
    )


def reversed_(*, transaction_id, amount: Decimal, currency: str, reason: str) -> NewEvent:
    # The money is repeated so that a reader of the log (weekly income) needs no other event.
    return NewEvent(
        REVERSED,
        {"transaction_id": str(transaction_id), "amount": format_amount(amount, currency), "currency": currency, "reason": reason},
    )
