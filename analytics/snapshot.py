"""The dashboard snapshot: what a websocket client (or GET /api/dashboard/snapshot/) starts from."""
from analytics.review_queue_selectors import review_queue_snapshot
from analytics.selectors import weekly_income
from core import eventstore
from core.db import consistent_read
from transactions.selectors import pending_transactions
from transactions.serializers import transaction_payload

PENDING_LATEST = 20


def dashboard_snapshot() -> dict:
    # One consistent read: `seq` is exactly the position the weekly rows reflect.
    with consistent_read():
        report = weekly_income()
        pending_count, latest = pending_transactions(limit=PENDING_LATEST)
        # The read model is written with its events, so it can be ahead of `seq` (the
        # projection's position): this says exactly which events the pending list reflects.
        # Not last_position(): appends commit out of order, and an event still in flight below
        # the newest one is not in this snapshot, so its message must still be sent after it.
        pending_as_of = eventstore.contiguous_through(report.as_of)
        queue = review_queue_snapshot()
    return {
        "type": "snapshot",
        "seq": report.as_of,
        "time_zone": report.time_zone,
        "week_start_day": report.week_start_day,
        "weekly_income": report.rows,
        "pending": {"count": pending_count, "latest": [transaction_payload(txn) for txn in latest], "as_of": pending_as_of},
        "review_queue": queue,
    }
