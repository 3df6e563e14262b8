"""The worker's own metrics endpoint (METRICS_PORT) on a real Procfile worker: its series after an approval, the access rule, off by default."""
import json
import os
import time
from pathlib import Path

import pytest
import requests
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from scripts.faults import send_task
from tests.services import redis_available, require
from tests.stack import Browserless, LiveStack, create_live_user, flush_test_redis, group_members, stack_env

pytestmark = [pytest.mark.e2e, pytest.mark.no_deadline, pytest.mark.needs_postgres, pytest.mark.needs_redis, pytest.mark.timeout(300), pytest.mark.django_db(transaction=True)]

TOKEN = "w" * 40
WEEKLY = {"projection": "weekly_income"}
TASK = {"task": "analytics.project_weekly_income", "state": "SUCCESS"}


def worker_directory(stack, process) -> Path:
    """The worker group's multiprocess directory (core/metrics_dir.py: METRICS_DIR/worker-<leader pid>)."""
    return stack.log_dir / "metrics" / f"worker-{process.pid}"


def listening_ports(pgid: int) -> set[int]:
    """TCP ports some process of group `pgid` listens on (Linux /proc: the group's socket inodes in LISTEN state)."""
    inodes = set()
    for pid in group_members(pgid):
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            for fd in fd_dir.iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:["):-1])
        except OSError:
            continue
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def get(port: int, path: str = "/metrics", token: str | None = TOKEN, method: str = "GET") -> requests.Response:
    headers = {"Connection": "close", **({"Authorization": f"Bearer {token}"} if token else {})}
    return requests.request(method, f"http://127.0.0.1:{port}{path}", headers=headers, timeout=15)


def series(port: int) -> dict:
    response = get(port)
    assert response.status_code == 200, response.text[:500]
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text) for s in family.samples
    }


def value(scraped: dict, name: str, **labels) -> float | None:
    return scraped.get((name, frozenset(labels.items())))


@pytest.fixture
def token_stack(tmp_path):
    """web + one worker with the worker endpoint on (METRICS_PORT=0: the kernel picks the port), opened by the token only."""
    require("PostgreSQL", connection.vendor == "postgresql")
    require("Redis", redis_available())
    flush_test_redis()
    stack = LiveStack(env=stack_env(METRICS_PORT="0", METRICS_ALLOWED_NETWORKS="", METRICS_TOKEN=TOKEN), log_dir=tmp_path)
    try:
        stack.wait_ready(stack.start_worker(wait=False), stack.start_server(wait=False), timeout=60)
        yield stack
    finally:
        stack.stop()
        flush_test_redis()


def test_it_serves_the_workers_projection_and_task_series_after_an_approval_and_refuses_other_clients(token_stack):
    stack = token_stack
    worker = stack.processes["worker"]
    # Written before Celery logs " ready.", which start_worker waited for.
    port = int((worker_directory(stack, worker) / "metrics-port").read_text())
    assert port in listening_ports(worker.pid)
    assert f"worker metrics endpoint listening on 0.0.0.0 port {port}" in worker.output()

    create_live_user("wmetrics-admin", "wmetrics-password-123")
    browser = Browserless(stack.base_url).login("wmetrics-admin", "wmetrics-password-123")
    # Another user submits: nobody approves their own submission.
    create_live_user("wmetrics-clerk", "wmetrics-password-123")
    clerk = Browserless(stack.base_url).login("wmetrics-clerk", "wmetrics-password-123")
    created = clerk.post("/api/transactions/", {"amount": "12.34", "currency": "EUR", "occurred_at": "2026-11-18T09:30:00+00:00"})
    assert created.status_code == 201, created.text
    decided = browser.post(f"/api/transactions/{created.json()['id']}/approve/", {"reason": "worker metrics"})
    assert decided.status_code == 200, decided.text
    # Read-your-writes: this answers once the worker has projected the approval.
    projected = browser.get("/api/analytics/weekly-income/", min_position=decided.json()["position"])
    assert projected.status_code == 200, projected.text

    # That idle approval was projected by the worker's fast lane; a run Celery starts (as the periodic catch-up
    # does), sent here as another process would, shows the task series too.
    send_task(stack.env["REDIS_URL"], TASK["task"])
    deadline = time.monotonic() + 20
    while True:  # the task's duration is recorded just after the run: poll the worker's counter
        after = series(port)
        if (value(after, "ledgerpulse_celery_task_duration_seconds_count", **TASK) or 0) >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert value(after, "ledgerpulse_projection_runs_total", **WEEKLY, outcome="caught_up") >= 1
    assert value(after, "ledgerpulse_projection_batch_events_sum", **WEEKLY) >= 2  # submitted + approved
    assert value(after, "ledgerpulse_projection_run_duration_seconds_count", **WEEKLY) >= 1
    assert value(after, "ledgerpulse_commit_to_publish_seconds_count") >= 1
    assert 0 < value(after, "ledgerpulse_commit_to_publish_seconds_sum") < 60
    assert value(after, "ledgerpulse_celery_task_duration_seconds_count", **TASK) >= 1
    assert value(after, "ledgerpulse_celery_task_duration_seconds_sum", **TASK) > 0
    # Only its own group: the web's requests and approvals are the web's /metrics' business.
    assert not value(after, "ledgerpulse_transaction_approvals_total")  # 0: unlabelled series exist in every process
    assert not any(name == "ledgerpulse_http_requests_total" for name, _ in after)

    # The web's access rule: no token, or a wrong one, gets the same 404 as a path that does not exist.
    for refused in (get(port, token=None), get(port, token="x" * 40), get(port, "/", token=None)):
        assert refused.status_code == 404
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert json.loads(refused.text)["code"] == "not_found"
        assert "ledgerpulse_" not in refused.text  # no series
    assert get(port, "/other").status_code == 404
    posted = get(port, method="POST")
    assert posted.status_code == 405 and posted.headers["Allow"] == "GET, HEAD"
    head = get(port, method="HEAD")
    assert head.status_code == 200 and head.content == b""

    # A clean stop removes the port file and frees the port.
    worker.stop()
    assert not (worker_directory(stack, worker) / "metrics-port").exists()
    with pytest.raises(requests.ConnectionError):
        get(port)


@pytest.fixture
def default_worker(tmp_path):
    """One worker with the default settings (METRICS_PORT unset) and no web line: nothing else to boot."""
    require("PostgreSQL", connection.vendor == "postgresql")
    require("Redis", redis_available())
    flush_test_redis()
    stack = LiveStack(env=stack_env(), log_dir=tmp_path)
    try:
        stack.start_worker()
        yield stack
    finally:
        stack.stop()
        flush_test_redis()


def test_it_listens_on_nothing_when_metrics_port_is_unset(default_worker):
    worker = default_worker.processes["worker"]
    directory = worker_directory(default_worker, worker)
    assert directory.is_dir()
    assert not (directory / "metrics-port").exists()
    assert listening_ports(worker.pid) == set()
    assert "worker metrics endpoint" not in worker.output()
