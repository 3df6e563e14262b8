"""Builders for test data that go through the real commands, so events are always appended."""
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal

from transactions import services


def submit(amount="10.00", currency="EUR", occurred_at: datetime | None = None, actor="tester", **extra):
    return services.transaction_submit(amount=Decimal(amount), currency=currency, occurred_at=occurred_at, actor=actor, **extra)


def approved(amount="10.00", currency="EUR", occurred_at: datetime | None = None, actor="tester", submitter=None):
    """Submitted by `submitter` (default: a clerk who is not `actor`) and approved by `actor`: nobody
    approves their own submission."""
    submitter = submitter or ("clerk" if actor != "clerk" else "other-clerk")
    txn = submit(amount, currency, occurred_at, submitter)
    return services.transaction_approve(transaction_id=txn.id, actor=actor, reason="ok")


def reversed_(amount="10.00", currency="EUR", occurred_at: datetime | None = None, actor="tester", reason="refund"):
    """Approved by `actor` (submitted by a clerk), then reversed by `actor`: the reversal's Decision."""
    decision = approved(amount, currency, occurred_at, actor)
    return services.transaction_reverse(transaction_id=decision.transaction.id, actor=actor, reason=reason)


def project_all():
    """Run the projector until it is caught up (what the Celery task does after a commit)."""
    from analytics.projection import project_next_batch

    while project_next_batch():
        pass


@contextmanager
def append_held_open():
    """An append in flight for the length of the block: a submission appended in another thread's transaction,
    which is rolled back when the block ends (its position then becomes a hole that never fills)."""
    import threading
    import uuid

    from django.db import connections, transaction

    from core import eventstore
    from transactions import events

    appended, release = threading.Event(), threading.Event()

    class RollBack(Exception):
        pass

    def append_and_hold():
        try:
            with transaction.atomic():
                stream = uuid.uuid4()
                event = events.submitted(transaction_id=stream, amount=Decimal("1.00"), currency="EUR",
                                         occurred_at=datetime.now().astimezone(), reference="", description="")
                eventstore.append(stream_id=stream, expected_version=0, events=[event], metadata={"actor": "slow"})
                appended.set()
                release.wait(timeout=30)
                raise RollBack
        except RollBack:
            pass
        finally:
            appended.set()
            connections.close_all()

    holder = threading.Thread(target=append_and_hold)
    holder.start()
    try:
        assert appended.wait(timeout=30)
        yield
    finally:
        release.set()
        holder.join(timeout=30)
