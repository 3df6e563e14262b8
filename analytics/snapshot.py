"""The dashboard snapshot: what a websocket client (or GET /api/dashboard/snapshot/) starts from."""
from analytics.selectors import weekly_income
from core.db import consistent_read
from transactions.selectors import pending_transactions
from transactions.serializers import TransactionOutput

PENDING_LATEST = 20


def dashboard_snapshot() -> dict:
    # One consistent read: `seq` is exactly the position the weekly rows reflect.
    with consistent_read():
        report = weekly_income()
        pending_count, latest = pending_transactions(limit=PENDING_LATEST)
    return {
        "type": "snapshot",
        "seq": report.as_of,
        "time_zone": report.time_zone,
        "week_start_day": report.week_start_day,
        "weekly_income": report.rows,
        "pending": {"count": pending_count, "latest": TransactionOutput(latest, many=True).data},
    }
