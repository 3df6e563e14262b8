"""/metrics on the real stack: the Procfile's web line with two processes and a real Celery worker, after an approval."""
import glob
import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from scripts.faults import send_task
from tests.stack import Browserless, create_live_user

pytestmark = [pytest.mark.e2e, pytest.mark.no_deadline, pytest.mark.needs_postgres, pytest.mark.needs_redis, pytest.mark.timeout(300)]

APPROVE = {"route": "api/transactions/<uuid:transaction_id>/approve/", "method": "POST", "status": "200"}
WEEKLY = {"projection": "weekly_income"}


class Scrape(dict):
    def value(self, name: str, **labels) -> float | None:
        return self.get((name, frozenset(labels.items())))


def scrape(base_url: str) -> Scrape:
    """One GET /metrics on a new connection (so either web process may answer)."""
    response = requests.get(f"{base_url}/metrics", timeout=15, headers={"Connection": "close"})
    assert response.status_code == 200, response.text[:500]
    return Scrape({
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text) for s in family.samples
    })


def wait_for(base_url: str, predicate, timeout: float = 20.0) -> Scrape:
    deadline = time.monotonic() + timeout
    while True:
        series = scrape(base_url)
        if predicate(series) or time.monotonic() > deadline:
            return series
        time.sleep(0.1)  # polling a counter another process bumps: there is no event to await here


def scrapes_served_per_process(metrics_dir: Path) -> Counter:
    """How many /metrics requests each web process counted in its own file (its pid -> count)."""
    served = Counter()
    for path in glob.glob(str(metrics_dir / "web-*" / "counter_*.db")):
        pid = int(os.path.basename(path).split("_")[1].split(".")[0])
        for family in MultiProcessCollector.merge([path]):
            for s in family.samples:
                if s.name == "ledgerpulse_http_requests_total" and s.labels.get("route") == "metrics":
                    served[pid] += s.value
    return served


def test_metrics_shows_every_series_with_real_values_summed_over_both_web_processes_and_the_worker(live_stack):
    base = live_stack.base_url
    metrics_dir = live_stack.log_dir / "metrics"
    create_live_user("metrics-admin", "metrics-password-123")
    browser = Browserless(base).login("metrics-admin", "metrics-password-123")
    # Another user submits: nobody approves their own submission.
    create_live_user("metrics-clerk", "metrics-password-123")
    clerk = Browserless(base).login("metrics-clerk", "metrics-password-123")
    created = clerk.post("/api/transactions/", {"amount": "12.34", "currency": "EUR", "occurred_at": "2026-11-18T09:30:00+00:00"})
    assert created.status_code == 201, created.text

    with connect(live_stack.ws_url, origin=base, additional_headers={"Cookie": browser.cookie_header}) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
        ws.send('{"type":"ping"}')
        assert json.loads(ws.recv(timeout=5)) == {"type": "pong"}
        open_now = scrape(base)
        assert open_now.value("ledgerpulse_websocket_connections") == 1

        decided = browser.post(f"/api/transactions/{created.json()['id']}/approve/", {"reason": "metrics"})
        assert decided.status_code == 200, decided.text
        position = decided.json()["position"]
        while True:  # the projected batch reaching this socket: the worker has run and published
            message = json.loads(ws.recv(timeout=15))
            if message["type"] == "weekly_income.updated" and message["seq"] >= position:
                break

    # The run that published the batch is counted when it ends, a moment after the frame was sent.
    after = wait_for(base, lambda s: s.value("ledgerpulse_websocket_closes_total", code="1000", by="client") == 1
                     and (s.value("ledgerpulse_projection_lag_events", **WEEKLY) == 0)
                     and (s.value("ledgerpulse_projection_runs_total", **WEEKLY, outcome="caught_up") or 0) >= 1)
    assert after.value("ledgerpulse_http_requests_total", **APPROVE) == 1
    assert after.value("ledgerpulse_http_request_duration_seconds_count", route=APPROVE["route"], method="POST") == 1
    assert after.value("ledgerpulse_http_request_duration_seconds_sum", route=APPROVE["route"], method="POST") > 0
    assert after.value("ledgerpulse_transaction_approvals_total") == 1
    assert after.value("ledgerpulse_transaction_rejections_total") == 0
    assert after.value("ledgerpulse_events_appended_total", type="TransactionApproved") == 1
    assert after.value("ledgerpulse_projection_lag_events", **WEEKLY) == 0
    assert after.value("ledgerpulse_projection_lag_seconds", **WEEKLY) == 0
    assert after.value("ledgerpulse_projection_runs_total", **WEEKLY, outcome="caught_up") >= 1
    assert after.value("ledgerpulse_projection_batch_events_sum", **WEEKLY) >= 2  # submitted + approved
    assert after.value("ledgerpulse_projection_batch_duration_seconds_count", **WEEKLY) >= 1
    assert after.value("ledgerpulse_projection_run_duration_seconds_count", **WEEKLY) >= 1
    assert after.value("ledgerpulse_commit_to_publish_seconds_count") >= 1
    assert 0 < after.value("ledgerpulse_commit_to_publish_seconds_sum") < 60
    assert after.value("ledgerpulse_websocket_connections") == 0
    assert after.value("ledgerpulse_websocket_messages_sent_total", kind="snapshot") >= 1
    assert after.value("ledgerpulse_websocket_messages_sent_total", kind="reply") == 1
    assert after.value("ledgerpulse_websocket_messages_sent_total", kind="update") >= 2  # the approval and the weekly total
    assert after.value("ledgerpulse_websocket_closes_total", code="1000", by="client") == 1
    # That idle approval was projected by the worker's fast lane, not by a Celery task. The task series are
    # shown with a run Celery does start (as the periodic catch-up does), sent here as another process would.
    task = {"task": "analytics.project_weekly_income", "state": "SUCCESS"}
    before = after.value("ledgerpulse_celery_task_duration_seconds_count", **task) or 0
    send_task(live_stack.env["REDIS_URL"], task["task"])
    after = wait_for(base, lambda s: (s.value("ledgerpulse_celery_task_duration_seconds_count", **task) or 0) > before)
    assert after.value("ledgerpulse_celery_task_duration_seconds_count", **task) == before + 1
    assert after.value("ledgerpulse_celery_task_duration_seconds_sum", **task) > 0
    assert after.value("ledgerpulse_celery_task_failures_total", task="analytics.project_weekly_income") is None

    # Every scrape counts the ones before it, whichever process served them: the totals are the stack's.
    counted = [scrape(base).value("ledgerpulse_http_requests_total", route="metrics", method="GET", status="200")]
    while len(scrapes_served_per_process(metrics_dir)) < 2 and len(counted) < 200:
        counted.append(scrape(base).value("ledgerpulse_http_requests_total", route="metrics", method="GET", status="200"))
    served = scrapes_served_per_process(metrics_dir)
    assert len(served) == 2, f"one web process answered all {len(counted)} scrapes: {served}"
    assert counted == [counted[0] + n for n in range(len(counted))]
    final = scrape(base)
    assert final.value("ledgerpulse_http_requests_total", route="metrics", method="GET", status="200") == sum(served.values())
    assert final.value("ledgerpulse_transaction_approvals_total") == 1

    # A stopped worker: the lag is read at scrape time, so it shows the event the projector has not applied.
    live_stack.processes["worker"].stop()
    second = browser.post("/api/transactions/", {"amount": "1.00", "currency": "EUR", "occurred_at": "2026-11-18T09:30:00+00:00"})
    assert second.status_code == 201, second.text
    behind = wait_for(base, lambda s: (s.value("ledgerpulse_projection_lag_seconds", **WEEKLY) or 0) > 0)
    assert behind.value("ledgerpulse_projection_lag_events", **WEEKLY) == 1
    assert behind.value("ledgerpulse_projection_lag_seconds", **WEEKLY) > 0
    # The worker's counters outlive it (its directory stays until its group starts again).
    assert behind.value("ledgerpulse_celery_task_duration_seconds_count", **task) >= 1
