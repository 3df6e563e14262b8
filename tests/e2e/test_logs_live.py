"""Logs of the real processes (the Procfile's web line, a Celery worker): an approval's request id followed from the
response to its event and to the worker's line for the batch that projected it; every line once; no secret anywhere."""
import json
import time

import pytest
import requests
from websockets.sync.client import connect

from core.models import StoredEvent
from tests.stack import Browserless, create_live_user

pytestmark = [pytest.mark.e2e, pytest.mark.no_deadline, pytest.mark.needs_postgres, pytest.mark.needs_redis, pytest.mark.timeout(180)]

PASSWORD = "Live-logs-Passw0rd-not-in-any-line"


def json_lines(text):
    """The JSON objects among a process's output (Celery's start-up banner and uvicorn's master print plain text)."""
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))  # a line that starts like an object must be one whole object
    return lines


def lines_until(process, predicate, timeout=10.0):
    """The process's JSON lines once one matches `predicate` (its log is written as it goes; fails after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = json_lines(process.output())
        if any(predicate(line) for line in lines):
            return lines
        assert time.monotonic() < deadline, process.output()[-4000:]
        time.sleep(0.05)


def receive_until(ws, predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if predicate(message):
            return message


def test_an_approvals_request_id_is_in_its_event_and_the_workers_batch_line_and_no_secret_is_logged(live_stack):
    create_live_user("logs-admin", PASSWORD)
    browser = Browserless(live_stack.base_url).login("logs-admin", PASSWORD)
    # Another user submits: nobody approves their own submission.
    create_live_user("logs-clerk", PASSWORD)
    clerk = Browserless(live_stack.base_url).login("logs-clerk", PASSWORD)
    tokens = requests.post(f"{live_stack.base_url}/api/auth/token/", json={"username": "logs-admin", "password": PASSWORD}, timeout=30)
    assert tokens.status_code == 200, tokens.text
    access = tokens.json()["access"]
    ticket = requests.post(
        f"{live_stack.base_url}/api/realtime/tickets/", headers={"Authorization": f"Bearer {access}"}, timeout=15
    ).json()["ticket"]
    missing = browser.get("/api/transactions/00000000-0000-0000-0000-000000000000/")
    assert missing.status_code == 404

    with connect(f"{live_stack.ws_url}?ticket={ticket}", open_timeout=15) as ws:
        assert json.loads(ws.recv(timeout=15))["type"] == "snapshot"
        created = clerk.post("/api/transactions/", {"amount": "12.34", "currency": "EUR"})
        assert created.status_code == 201, created.text
        approved = browser.post(f"/api/transactions/{created.json()['id']}/approve/", {"reason": "logs"})
        assert approved.status_code == 200, approved.text
        position = approved.json()["position"]
        # The worker writes its batch line before it publishes the batch: once the socket has it, the line is written.
        receive_until(ws, lambda m: m["type"] == "transaction.approved" and m["seq"] == position)

    request_id = approved.headers["X-Request-ID"]
    assert StoredEvent.objects.get(position=position).metadata["request_id"] == request_id

    # The broadcast's line is written right after the send returns, so possibly after the socket got it.
    worker_lines = lines_until(
        live_stack.processes["worker"], lambda line: line["event"] == "published a dashboard batch" and line["through"] >= position
    )
    worker = live_stack.processes["worker"].output()
    batches = [
        line for line in worker_lines
        if line["event"] == "projected a weekly income batch" and line["after"] < position <= line["through"]
    ]
    assert len(batches) == 1, worker[-4000:]
    [batch] = batches
    assert request_id in batch["request_ids"] and batch["logger"] == "analytics.tasks" and batch["level"] == "info"
    assert batch["process"] == "worker" and batch["task"] == "analytics.project_weekly_income" and batch["task_id"]
    assert batch["timestamp"].endswith("Z")
    published = [line for line in worker_lines if line["event"] == "published a dashboard batch" and line["through"] == batch["through"]]
    assert len(published) == 1 and request_id in published[0]["request_ids"]

    web = live_stack.processes["uvicorn"].output()
    web_lines = json_lines(web)
    # Django's 404 warning, written once (it was written twice under DEBUG), with its request's id bound.
    not_found = [line for line in web_lines if line["logger"] == "django.request" and line["event"].startswith("Not Found: /api/transactions/0000")]
    assert len(not_found) == 1 and not_found[0]["request_id"] == missing.headers["X-Request-ID"] and not_found[0]["process"] == "web"
    # uvicorn's websocket line is ours too, as JSON, with the ticket taken out.
    assert any("WebSocket /ws/dashboard/?ticket=[redacted]" in line["event"] for line in web_lines), web[-4000:]

    for name, text in (("web", web), ("worker", worker)):
        for secret in (PASSWORD, ticket, access, tokens.json()["refresh"], browser.http.cookies["sessionid"], browser.csrf_token):
            assert secret not in text, f"{name} logged a secret"
        # Every record once: no two lines alike but for their time.
        seen = [json.dumps({k: v for k, v in line.items() if k != "timestamp"}, sort_keys=True) for line in json_lines(text)]
        duplicates = {line for line in seen if seen.count(line) > 1}
        assert not duplicates, (name, duplicates)
