"""Helpers for the analytics tests: expected weekly income rows, and reversals appended to the log as they were recorded."""
from datetime import datetime
from unittest import mock

from django.db import transaction

from core import eventstore
from core.models import StoredEvent

REVERSED = "TransactionReversed"


def income(week_start: str, currency: str, total: str, count: int, *, reversed_: str | None = None, reversed_count: int = 0,
           gross: str | None = None) -> dict:
    """A row as the API shows it; by default a week with approvals only (gross = total, nothing reversed)."""
    zero = "0" if "." not in total else "0." + "0" * len(total.split(".")[1])
    return {
        "week_start": week_start, "currency": currency, "total": total, "count": count,
        "gross": gross if gross is not None else total, "reversed": reversed_ or zero, "reversed_count": reversed_count, "net": total,
    }


def reverse(approval_position: int, *, at: datetime, amount: str | None = None, **data_changes) -> int:
    """Append a TransactionReversed for the approval at `approval_position`, recorded at `at`; its position.

    Through the event store, not the reverse command: the projection reads only the log, and this
    also writes what a hand-edited import could hold (`data_changes`).
    """
    approval = StoredEvent.objects.get(position=approval_position)
    version = StoredEvent.objects.filter(stream_id=approval.stream_id).order_by("-version").values_list("version", flat=True)[0]
    data = {"transaction_id": str(approval.stream_id), "amount": amount or approval.data["amount"],
            "currency": approval.data["currency"], "reason": "refund", **data_changes}
    with mock.patch("core.eventstore.timezone.now", return_value=at), transaction.atomic():
        [recorded] = eventstore.append(stream_id=approval.stream_id, expected_version=version,
                                       events=[eventstore.NewEvent(REVERSED, data)], metadata={"actor": "reverser"})
    return recorded.position
