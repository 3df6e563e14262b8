"""Realtime messages for transaction events: `transaction.submitted|approved|rejected` with their seq."""
from core.eventstore import RecordedEvent
from transactions import events
from transactions.models import Transaction
from transactions.serializers import transaction_payload

MESSAGE_TYPES = {
    events.SUBMITTED: "transaction.submitted",
    events.APPROVED: "transaction.approved",
    events.REJECTED: "transaction.rejected",
}


def transaction_messages(batch: list[RecordedEvent]) -> list[dict]:
    """One message per transaction event in the batch, in position order, with one query.

    Decisions are final, so after a decision event the read model row is exactly
    the state that event produced. A submission may have been decided since, so
    its message shows the row as it stood then: pending, at version 1.
    """
    relevant = [e for e in batch if e.type in MESSAGE_TYPES]
    if not relevant:
        return []
    rows = Transaction.objects.in_bulk({e.stream_id for e in relevant})
    messages = []
    for event in relevant:
        row = rows.get(event.stream_id)
        if row is None:
            continue
        # A plain function, not a DRF serializer, inside the projector's locked transaction:
        # the same JSON (TransactionOutput, as the REST API sends it) without the framework's cost.
        body = transaction_payload(row)
        if event.type == events.SUBMITTED:
            body.update(status="pending", version=event.version, decided_at=None, decided_by="", decision_reason="")
        messages.append({"type": MESSAGE_TYPES[event.type], "seq": event.position, "transaction": body})
    return messages
