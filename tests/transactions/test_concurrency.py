"""Concurrent writers on PostgreSQL: one decision wins (409 for the rest), and a locked event table is a retryable 503."""
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from threading import Barrier

import psycopg
import pytest
from django.db import connection, connections

from core import eventstore
from core.errors import Conflict
from core.models import IdempotencyRecord
from transactions import services
from transactions.models import Transaction
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


def test_concurrent_approvals_through_the_api_give_one_200_and_409s_never_a_500(admin_user, client_for):
    txn = submit()
    path = f"/api/transactions/{txn.id}/approve/"
    barrier = Barrier(6)

    def approve(i):
        client = client_for(admin_user)
        headers = {"HTTP_IDEMPOTENCY_KEY": f"race-{i}"} if i % 2 else {}
        barrier.wait()
        try:
            return client.post(path, {"reason": "race"}, format="json", **headers).status_code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(approve, range(6)))
    assert statuses == [200, 409, 409, 409, 409, 409]
    assert [e.type for e in eventstore.read_stream(txn.id)] == ["TransactionSubmitted", "TransactionApproved"]


@contextmanager
def holding_the_append_lock():
    """Another session (an operator's LOCK TABLE, a TRUNCATE) holds a lock on the event table that appends must wait for."""
    params = connection.settings_dict
    with psycopg.connect(
        host=params["HOST"], port=params["PORT"] or 5432, user=params["USER"], password=params["PASSWORD"] or None, dbname=params["NAME"]
    ) as holder:
        holder.execute("LOCK TABLE core_event IN EXCLUSIVE MODE")
        # A safety net: without the lock timeout the request would wait here forever; now it fails.
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = '5s'")
        try:
            yield
        finally:
            holder.rollback()
            with connection.cursor() as cursor:
                cursor.execute("RESET statement_timeout")


@pytest.mark.parametrize("key", [None, "approve-1"])
def test_an_approval_that_cannot_get_the_append_lock_is_a_503_problem_and_writes_nothing(api, settings, key):
    settings.EVENT_STORE_LOCK_TIMEOUT_MS = 200
    txn = submit()
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    path = f"/api/transactions/{txn.id}/approve/"

    with holding_the_append_lock():
        response = api.post(path, {"reason": "checked"}, format="json", **headers)

    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response["Retry-After"] == "1"
    assert response.json()["code"] == "event_store_busy"
    assert [e.type for e in eventstore.read_stream(txn.id)] == ["TransactionSubmitted"]
    assert Transaction.objects.get(pk=txn.id).status == "pending"
    assert not IdempotencyRecord.objects.exists()  # the key was released: retry at once

    retry = api.post(path, {"reason": "checked"}, format="json", **headers)
    assert retry.status_code == 200 and not retry.has_header("Idempotent-Replayed")
    assert [e.type for e in eventstore.read_stream(txn.id)] == ["TransactionSubmitted", "TransactionApproved"]


def test_a_submission_that_cannot_get_the_append_lock_is_a_503_problem_and_writes_nothing(api, settings):
    settings.EVENT_STORE_LOCK_TIMEOUT_MS = 200
    with holding_the_append_lock():
        response = api.post("/api/transactions/", {"amount": "1.00", "currency": "EUR"}, format="json")
    assert response.status_code == 503 and response.json()["code"] == "event_store_busy"
    assert eventstore.read_all() == [] and not Transaction.objects.exists()


def race_as(txn_id, command, actors):
    """`command` by each of `actors` at once; 'ok', 'conflict' (409) or 'forbidden' (403) for each."""
    from core.errors import Forbidden

    barrier = Barrier(len(actors))

    def decide(actor):
        barrier.wait()
        try:
            command(transaction_id=txn_id, actor=actor, reason="race")
            return "ok"
        except Conflict:
            return "conflict"
        except Forbidden:
            return "forbidden"
        finally:
            connections.close_all()

    with ThreadPoolExecutor(len(actors)) as pool:
        return list(pool.map(decide, actors))


@pytest.fixture
def dual_control(settings):
    from decimal import Decimal

    settings.APPROVAL_DUAL_CONTROL = {"EUR": Decimal("100.00")}


def test_two_second_approvals_by_different_users_racing_approve_once_and_the_other_is_a_conflict(dual_control):
    txn = submit("500.00")
    services.transaction_approve(transaction_id=txn.id, actor="first", reason="one")
    outcomes = race_as(txn.id, services.transaction_approve, ["second", "third"])
    assert sorted(outcomes) == ["conflict", "ok"]
    assert [e.type for e in eventstore.read_stream(txn.id)] == ["TransactionSubmitted", "TransactionApprovalRecorded", "TransactionApproved"]
    row = Transaction.objects.get(pk=txn.id)
    assert (row.status, row.version, row.first_approved_by) == ("approved", 3, "first")
    assert row.decided_by == ["second", "third"][outcomes.index("ok")]


def test_approvals_by_many_users_racing_append_at_most_two_approvals_by_two_different_users(dual_control):
    # A request that reads the row after another's first approval committed is, rightly, the second approval.
    txn = submit("500.00")
    outcomes = race_as(txn.id, services.transaction_approve, [f"admin{i}" for i in range(6)])
    stream = eventstore.read_stream(txn.id)
    assert [e.type for e in stream] == ["TransactionSubmitted", "TransactionApprovalRecorded", "TransactionApproved"][: len(stream)]
    assert outcomes.count("ok") == len(stream) - 1 >= 1 and outcomes.count("conflict") == 6 - outcomes.count("ok")
    assert len({e.metadata["actor"] for e in stream[1:]}) == len(stream) - 1
    assert Transaction.objects.get(pk=txn.id).status == ("awaiting_second_approval" if len(stream) == 2 else "approved")


def test_a_reversal_racing_reversals_reverses_once():
    from tests.factories import approved

    txn = approved().transaction
    outcomes = race_as(txn.id, services.transaction_reverse, [f"admin{i}" for i in range(6)])
    assert outcomes.count("ok") == 1 and outcomes.count("conflict") == 5
    assert [e.type for e in eventstore.read_stream(txn.id)][-1] == "TransactionReversed"
    assert len(eventstore.read_stream(txn.id)) == 3
