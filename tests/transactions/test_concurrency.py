"""Concurrent decisions on PostgreSQL: exactly one wins, the rest are conflicts, one event."""
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest
from django.db import connections

from core import eventstore
from core.errors import Conflict
from transactions import services
from tests.factories import submit

pytestmark = [pytest.mark.needs_postgres, pytest.mark.django_db(transaction=True)]


def race(txn_id, deciders):
    barrier = Barrier(len(deciders))

    def decide(decider):
        barrier.wait()
        try:
            decider(transaction_id=txn_id, actor="racer", reason="race")
            return "ok"
        except Conflict:
            return "conflict"
        finally:
            connections.close_all()

    with ThreadPoolExecutor(len(deciders)) as pool:
        return list(pool.map(decide, deciders))


def test_fifty_concurrent_approvals_give_one_success_and_forty_nine_conflicts():
    txn = submit()
    outcomes = race(txn.id, [services.transaction_approve] * 50)
    assert outcomes.count("ok") == 1 and outcomes.count("conflict") == 49
    assert [e.type for e in eventstore.read_stream(txn.id)] == ["TransactionSubmitted", "TransactionApproved"]


def test_approve_racing_reject_decides_once():
    txn = submit()
    outcomes = race(txn.id, [services.transaction_approve, services.transaction_reject] * 10)
    assert outcomes.count("ok") == 1
    assert len(eventstore.read_stream(txn.id)) == 2
