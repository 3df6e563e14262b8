"""Builders for test data that go through the real commands, so events are always appended."""
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal

from transactions import services


def submit(amount="10.00", currency="EUR", occurred_at: datetime | None = None, actor="tester", **extra):
    return services.transaction_submit(amount=Decimal(amount), currency=currency, occurred_at=occurred_at, actor=actor, **extra)


def approved(amount="10.00", currency="EUR", occurred_at: datetime | None = None, actor="tester"):
    txn = submit(amount, currency, occurred_at, actor)
    return services.transaction_approve(transaction_id=txn.id, actor=actor, reason="ok")


def project_all():
    """Run the projector until it is caught up (what the Celery task does after a commit)."""
    from analytics.projection import project_next_batch

    while project_next_batch():
        pass


@contextmanager
def no_wake_up():
    """Commits inside this block wake no projector: events_committed has no receivers meanwhile."""
    from core.signals import events_committed

    receivers = events_committed.receivers
    events_committed.receivers = []
    try:
        yield
    finally:
        events_committed.receivers = receivers
