"""Realtime messages for transaction events: `transaction.<what happened>` with their seq."""
import copy

from core.eventstore import RecordedEvent
from transactions import events
from transactions.models import Transaction, TransactionStatus
from transactions.selectors import transactions_by_id
from transactions.serializers import transaction_payload

MESSAGE_TYPES = {
    events.SUBMITTED: "transaction.submitted",
    events.APPROVAL_RECORDED: "transaction.approval_recorded",
    events.APPROVED: "transaction.approved",
    events.REJECTED: "transaction.rejected",
    events.REVERSED: "transaction.reversed",
}

# The status each event leaves the transaction in.
_STATUS = {
    events.SUBMITTED: TransactionStatus.PENDING,
    events.APPROVAL_RECORDED: TransactionStatus.AWAITING_SECOND_APPROVAL,
    events.APPROVED: TransactionStatus.APPROVED,
    events.REJECTED: TransactionStatus.REJECTED,
    events.REVERSED: TransactionStatus.REVERSED,
}
_DECISIONS = (events.APPROVED, events.REJECTED, events.REVERSED)


def transaction_messages(batch: list[RecordedEvent]) -> list[dict]:
    """One message per transaction event in the batch, in position order, with one query.

    Each message shows the transaction as its event left it, not as the row is now: an approval
    may be followed by a reversal in the same batch (or committed since), and a submission by
    its decisions. So the fields a later event may change (status, version, decided_*,
    first_approved_by) come from the event; the rest (amount, currency, dates, submitter) never
    change after the submission and come from the row.
    """
    relevant = [e for e in batch if e.type in MESSAGE_TYPES]
    if not relevant:
        return []
    rows = transactions_by_id(transaction_ids={e.stream_id for e in relevant})
    messages = []
    for event in relevant:
        row = rows.get(event.stream_id)
        if row is None:
            continue
        # A plain function, not a DRF serializer, inside the projector's locked transaction:
        # the same JSON (TransactionOutput, as the REST API sends it) without the framework's cost.
        body = transaction_payload(as_left_by(row, event))
        messages.append({"type": MESSAGE_TYPES[event.type], "seq": event.position, "transaction": body})
    return messages


def as_left_by(row: Transaction, event: RecordedEvent) -> Transaction:
    """A copy of `row` as it stood right after `event` (one of its stream's events, at or before the row)."""
    state = copy.copy(row)
    state.status, state.version, state.last_position = _STATUS[event.type].value, event.version, event.position
    actor = event.metadata.get("actor") if isinstance(event.metadata, dict) else None
    actor = actor if isinstance(actor, str) else ""
    if event.type in _DECISIONS:
        # The latest decision is this one. first_approved_by, when set, was set by an earlier
        # event (a first approval is only recorded on a pending transaction), so the row's holds.
        state.decided_at, state.decided_by, state.decision_reason = event.recorded_at, actor, event.data.get("reason", "")
        return state
    state.decided_at, state.decided_by, state.decision_reason = None, "", ""
    state.first_approved_by = actor if event.type == events.APPROVAL_RECORDED else ""
    return state
