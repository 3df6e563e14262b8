"""Fault injection on the real stack: broker outages, killed workers, duplicate and concurrent projector
runs, dropped websockets, and bursts. Each test runs on a redis-server of its own (tests/e2e/faults.py),
so it can crash and freeze it without touching the shared Redis other test runs use."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from tests.e2e.faults import (
    DashboardWatcher,
    Ledger,
    RedisServer,
    insert_transactions,
    kill_hard,
    money,
    pg_connect,
    pool_children,
    positions,
    projector_sessions,
    random_payments,
    rest_weekly_income,
    send_task,
    stored_weekly_income,
    submit_over_http,
    task_runs,
    wait_caught_up,
)
from tests.services import redis_available, require
from tests.stack import Browserless, LiveStack, create_live_user, stack_env

pytestmark = [pytest.mark.e2e, pytest.mark.needs_postgres, pytest.mark.needs_redis]

PASSWORD = "fault-password-123"
PROJECT = "analytics.project_weekly_income"


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own, on a free port: the one the faults are injected into."""
    require("redis-server", redis_available())
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stack(transactional_db, tmp_path, own_redis):
    """A LiveStack (nothing started yet) whose broker and channel layer are `own_redis`."""
    require("PostgreSQL", connection.vendor == "postgresql")
    live = LiveStack(env=stack_env(REDIS_URL=own_redis.url(0), DATABASE_POOL="true"), log_dir=tmp_path)
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def pg(transactional_db):
    """A separate autocommit connection for watching the database while processes work on it."""
    conn = pg_connect(connection.settings_dict)
    try:
        yield conn
    finally:
        conn.close()


def logged_in(stack: LiveStack, username: str = "fault-admin") -> Browserless:
    create_live_user(username, PASSWORD)
    return Browserless(stack.base_url).login(username, PASSWORD)


def same_session(client: Browserless) -> Browserless:
    """Another HTTP client (own connection pool, for another thread) on the same logged-in session."""
    clone = Browserless(client.base_url)
    clone.http.cookies.update(client.http.cookies)
    return clone


def approve_all(clients: list[Browserless], ids_and_payments, ledger: Ledger, latencies: list | None = None) -> dict:
    """Approve over HTTP from one thread per client; every 200 goes into the ledger. Returns status counts."""
    work = list(ids_and_payments)
    lock = threading.Lock()
    statuses: dict[int, int] = {}

    def run(client):
        while True:
            with lock:
                if not work:
                    return
                txn_id, payment = work.pop()
            started = time.monotonic()
            response = client.post(f"/api/transactions/{txn_id}/approve/", {"reason": "fault test"})
            elapsed = time.monotonic() - started
            with lock:
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if latencies is not None:
                    latencies.append(elapsed)
            if response.status_code == 200:
                ledger.add(payment.occurred_at, payment.currency, payment.amount)

    with ThreadPoolExecutor(len(clients)) as pool:
        for future in [pool.submit(run, c) for c in clients]:
            future.result()
    return statuses


def assert_projection_exact(stack: LiveStack, pg, ledger: Ledger) -> None:
    """Caught up, every approved amount counted exactly once, and verify_projections agrees."""
    checkpoint, last = positions(pg)
    assert checkpoint == last, f"checkpoint {checkpoint} != last event {last}"
    stored = stored_weekly_income(pg)
    expected = ledger.expected()
    assert stored == expected, f"stored {stored}\nexpected {expected}"
    assert sum(count for _, count in stored.values()) == ledger.count
    verified = stack.manage("verify_projections")
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.needs_postgres
@pytest.mark.needs_redis
@pytest.mark.e2e
def test_a_burst_of_2000_approvals_is_projected_by_far_fewer_task_runs_and_the_last_push_equals_rest(stack, pg):
    stack.start_worker()
    stack.start_server()
    admin = logged_in(stack)
    payments = random_payments(2000, seed=5, currencies=("EUR", "USD"), days=6)
    ids = insert_transactions(payments, approve=False)
    watcher = DashboardWatcher(stack, admin.cookie_header).connect()
    try:
        ledger = Ledger()
        started = time.monotonic()
        statuses = approve_all([same_session(admin) for _ in range(8)], zip(ids, payments), ledger)
        elapsed = time.monotonic() - started
        assert statuses == {200: 2000}, statuses
        catch_up = wait_caught_up(pg, timeout=30)
        as_of, rest = rest_weekly_income(admin)
        deadline = time.monotonic() + 10
        while watcher.totals() != rest and time.monotonic() < deadline:
            time.sleep(0.1)
        runs = task_runs(stack.processes["worker"].output())
        print(f"\n2000 approvals over HTTP in {elapsed:.1f} s ({2000 / elapsed:.0f}/s), caught up {catch_up:.2f} s later; "
              f"{runs} projection task runs")
        assert runs < 2000 / 5, f"{runs} task runs for 2000 approvals: wake-ups are not coalesced"
        assert runs >= 1
        assert rest == ledger.expected()
        last_pushed = {key: message["total"] for key, message in watcher.last_updates.items()}
        assert last_pushed == {key: money(total, key[1]) for key, (total, _) in rest.items()}
        assert watcher.totals() == {key: total for key, (total, _) in rest.items()}
        assert not watcher.backwards, watcher.backwards
        assert_projection_exact(stack, pg, ledger)
    finally:
        watcher.close()
