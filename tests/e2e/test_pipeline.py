"""End to end on the real stack: approve over HTTP -> event -> Celery worker -> Redis group -> websocket."""
import io
import json
import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from django.core.management import call_command
from websockets.sync.client import connect

from tests.stack import Browserless, create_live_user

pytestmark = [pytest.mark.e2e, pytest.mark.needs_postgres, pytest.mark.needs_redis]


def receive_until(ws, predicate, timeout=10.0):
    """Messages until one matches; returns (match, everything seen)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        seen.append(message)
        if predicate(message):
            return message, seen
    raise AssertionError(f"no matching message within {timeout} s; saw {seen}")


def verify_projections() -> None:
    """The operators' check (manage.py verify_projections: stored totals = totals from the log), run in this process
    on the stack's database rather than in a new one, which would only add a Django start-up. Raises CommandError
    naming what differs."""
    call_command("verify_projections", stdout=io.StringIO(), stderr=io.StringIO())


def this_week_total(snapshot, week, currency):
    for row in snapshot["weekly_income"]:
        if row["week_start"] == week and row["currency"] == currency:
            return Decimal(row["total"])
    return Decimal(0)


def test_an_approval_over_http_reaches_a_logged_in_websocket_client_with_the_exact_new_total(live_stack):
    create_live_user("e2e-admin", "e2e-password-123")
    browser = Browserless(live_stack.base_url).login("e2e-admin", "e2e-password-123")
    # Another user submits: nobody approves their own submission.
    create_live_user("e2e-clerk", "e2e-password-123")
    clerk = Browserless(live_stack.base_url).login("e2e-clerk", "e2e-password-123")
    now = datetime.now(timezone.utc)

    with connect(live_stack.ws_url, origin=live_stack.base_url, additional_headers={"Cookie": browser.cookie_header}) as ws:
        snapshot = json.loads(ws.recv(timeout=10))
        assert snapshot["type"] == "snapshot"
        week = snapshot["weekly_income"][-1]["week_start"] if snapshot["weekly_income"] else None

        # Idle longer than channels-redis blocks on Redis (5 s): the socket must survive it.
        time.sleep(7)
        ws.send('{"type":"ping"}')
        assert json.loads(ws.recv(timeout=5)) == {"type": "pong"}

        running_total = Decimal(0)
        # Two approvals: the second task runs in the same worker process as the
        # first, where a per-call event loop would hit "Event loop is closed".
        for amount in ("12.34", "7.66"):
            created = clerk.post("/api/transactions/", {"amount": amount, "currency": "EUR", "occurred_at": now.isoformat()})
            assert created.status_code == 201, created.text
            decided = browser.post(f"/api/transactions/{created.json()['id']}/approve/", {"reason": "e2e"})
            assert decided.status_code == 200, decided.text
            position = decided.json()["position"]
            running_total += Decimal(amount)

            update, seen = receive_until(
                ws, lambda m: m["type"] == "weekly_income.updated" and m["currency"] == "EUR" and m["seq"] >= position
            )
            week = week or update["week_start"]
            assert update["week_start"] == week
            assert Decimal(update["total"]) == this_week_total(snapshot, week, "EUR") + running_total
            assert update["total"] == str(this_week_total(snapshot, week, "EUR") + running_total)
            assert "transaction.approved" in {m["type"] for m in seen}

    worker_log = live_stack.processes["worker"].output()
    assert "Event loop is closed" not in worker_log
    assert "publishing" not in worker_log  # broadcast failures are logged as "publishing ... failed"

    verify_projections()


def test_an_event_whose_wake_up_was_lost_is_projected_by_the_periodic_catch_up(live_stack):
    from analytics.selectors import projection_position
    from core import eventstore
    from core.signals import events_committed
    from tests.factories import approved

    live_stack.start_beat()
    receivers, events_committed.receivers = events_committed.receivers, []
    try:
        approved("42.00", "USD")  # committed here, with no wake-up sent to the worker
    finally:
        events_committed.receivers = receivers
    target = eventstore.last_position()
    deadline = time.monotonic() + 15
    while projection_position() < target and time.monotonic() < deadline:
        time.sleep(0.2)
    assert projection_position() == target
    verify_projections()


def test_fifty_concurrent_approvals_and_rejections_over_http_give_one_200_and_forty_nine_409s(live_stack):
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from core import eventstore

    create_live_user("racer", "racer-password-123")
    # One login (a deliberately slow password hash), then ten clients with their own connections on that session.
    racer = Browserless(live_stack.base_url).login("racer", "racer-password-123")
    clients = [racer.clone() for _ in range(10)]
    # Submitted by another user: the submitter's approvals would be 403 (nobody approves their own submission).
    create_live_user("race-clerk", "racer-password-123")
    clerk = Browserless(live_stack.base_url).login("race-clerk", "racer-password-123")
    txn_id = clerk.post("/api/transactions/", {"amount": "5.00", "currency": "EUR"}).json()["id"]
    barrier = Barrier(50)

    def approve(n):
        barrier.wait()
        decider = "approve" if n % 2 == 0 else "reject"
        return clients[n % 10].post(f"/api/transactions/{txn_id}/{decider}/", {"reason": f"racer {n}"}).status_code

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(approve, range(50)))
    assert sorted(statuses) == [200] + [409] * 49
    assert len(eventstore.read_stream(txn_id)) == 2


def test_an_idle_approval_reaches_the_dashboard_through_the_workers_fast_lane_without_a_celery_task(live_stack):
    create_live_user("lane-admin", "lane-password-123")
    browser = Browserless(live_stack.base_url).login("lane-admin", "lane-password-123")
    create_live_user("lane-clerk", "lane-password-123")
    clerk = Browserless(live_stack.base_url).login("lane-clerk", "lane-password-123")
    with connect(live_stack.ws_url, origin=live_stack.base_url, additional_headers={"Cookie": browser.cookie_header}) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
        created = clerk.post("/api/transactions/", {"amount": "3.21", "currency": "EUR"})
        assert created.status_code == 201, created.text
        receive_until(ws, lambda m: m["type"] == "transaction.submitted" and m["transaction"]["id"] == created.json()["id"])
        received_before = live_stack.processes["worker"].output().count("Task analytics.project_weekly_income[")
        decided = browser.post(f"/api/transactions/{created.json()['id']}/approve/", {})
        assert decided.status_code == 200, decided.text
        position = decided.json()["position"]
        receive_until(ws, lambda m: m["type"] == "weekly_income.updated" and m["seq"] >= position)
    # The listener ran it: no task was enqueued for this wake-up, nor by its fallback check a second later.
    time.sleep(1.5)
    worker_log = live_stack.processes["worker"].output()
    assert worker_log.count("Task analytics.project_weekly_income[") == received_before
    assert "fast lane" not in worker_log  # neither lost Redis nor failed a run
