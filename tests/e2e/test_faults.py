"""Fault injection on the real stack: broker outages, killed workers, duplicate and concurrent projector
runs, dropped websockets, and bursts. Each test runs on a redis-server of its own (scripts/faults.py),
so it can crash and freeze it without touching the shared Redis other test runs use."""
from __future__ import annotations

import io
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from analytics.wakeup import MIN_GAP_MS
from scripts.faults import (
    REDIS_SERVER,
    DashboardWatcher,
    Ledger,
    RedisServer,
    checkpoint_held,
    checkpoint_waiters,
    ensure_checkpoint_row,
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
    task_runs,
    unacked_deliveries,
    wait_caught_up,
)
from tests.services import require
from tests.e2e.small_batches import READY_LINE, SMALL_BATCH
from tests.stack import Browserless, LiveStack, Process, create_live_user, stack_env

# Seeding, several process boots and a burst of HTTP approvals: more than pytest.ini's 120 s on a busy machine.
pytestmark = [pytest.mark.e2e, pytest.mark.needs_postgres, pytest.mark.needs_redis, pytest.mark.timeout(300)]

PASSWORD = "fault-password-123"
BURST = 1000
# Approved payments in the backlog tests: 2 events each, so eight projector batches (small_batches).
BACKLOG = 2000
PROJECT = "analytics.project_weekly_income"


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own, on a free port: the one the faults are injected into."""
    require(REDIS_SERVER, os.access(REDIS_SERVER, os.X_OK))
    server = RedisServer(tmp_path)
    try:
        yield server.start()
    finally:
        server.close()


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


def start(stack: LiveStack, *workers: str, beat: bool = False) -> list[Process]:
    """uvicorn, the named workers and optionally beat, booting side by side while the test goes on
    (seeding, say); stack.wait_ready() on what it returns waits until they are ready."""
    processes = [stack.start_worker(name, wait=False) for name in workers]
    processes.append(stack.start_server(wait=False))
    if beat:
        stack.start_beat()
    return processes


def backlog_worker(stack: LiveStack, name: str, *, wait: bool = True) -> Process:
    """A worker whose projector takes the backlog in batches of SMALL_BATCH events (tests/e2e/small_batches.py);
    ready once its pool process has said so."""
    worker = stack.start_worker(name, app="tests.e2e.small_batches", wait=False)
    booted = worker.ready
    worker.ready = lambda: booted() and f"{READY_LINE} {SMALL_BATCH} events" in worker.output()
    if wait:
        stack.wait_ready(worker)
    return worker


def logged_in(stack: LiveStack, username: str = "fault-admin") -> Browserless:
    create_live_user(username, PASSWORD)
    return Browserless(stack.base_url).login(username, PASSWORD)


def same_session(client: Browserless) -> Browserless:
    """Another HTTP client (own connection pool, for another thread) on the same logged-in session."""
    return client.clone()


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


def assert_projection_exact(pg, ledger: Ledger) -> None:
    """Caught up, every approved amount counted exactly once, and verify_projections agrees."""
    checkpoint, last = positions(pg)
    assert checkpoint == last, f"checkpoint {checkpoint} != last event {last}"
    stored = stored_weekly_income(pg)
    expected = ledger.expected()
    assert stored == expected, f"stored {stored}\nexpected {expected}"
    assert sum(count for _, count in stored.values()) == ledger.count
    # The operators' command, run here rather than in a new process (which only adds a Django start-up).
    errors = io.StringIO()
    try:
        call_command("verify_projections", stdout=io.StringIO(), stderr=errors)
    except CommandError as exc:
        raise AssertionError(f"verify_projections: {exc}\n{errors.getvalue()}") from None


def timed_get(client: Browserless, path: str) -> tuple[int, float]:
    started = time.monotonic()
    response = client.get(path)
    return response.status_code, time.monotonic() - started


def wait_for(predicate, timeout: float, what: str, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s")


def ledger_of(payments) -> Ledger:
    ledger = Ledger()
    for p in payments:
        ledger.add(p.occurred_at, p.currency, p.amount)
    return ledger


def test_approvals_keep_succeeding_quickly_while_the_broker_is_down_and_the_projection_catches_up_by_itself(stack, own_redis, pg):
    booting = start(stack, "worker", beat=True)
    payments = random_payments(130, seed=1, days=10)
    pairs = list(zip(insert_transactions(payments, approve=False), payments))
    stack.wait_ready(*booting)
    admin = logged_in(stack)
    clients = [same_session(admin) for _ in range(4)]
    ledger = Ledger()
    assert approve_all(clients, pairs[:10], ledger) == {200: 10}
    wait_caught_up(pg, timeout=15)

    # 1. Crashed: connections to the broker and channel layer are refused.
    own_redis.stop()
    crashed: list[float] = []
    assert approve_all(clients, pairs[10:60], ledger, crashed) == {200: 50}
    ready_status, ready_time = timed_get(admin, "/readyz")
    assert ready_status == 503 and ready_time < 3, (ready_status, ready_time)

    # 2. Hung: connections are accepted by the kernel but never answered.
    own_redis.start()
    own_redis.freeze()
    hung: list[float] = []
    try:
        assert approve_all(clients, pairs[60:110], ledger, hung) == {200: 50}
        ready_status, hung_ready_time = timed_get(admin, "/readyz")
        assert ready_status == 503 and hung_ready_time < 4, (ready_status, hung_ready_time)
    finally:
        own_redis.thaw()
    # Nothing else wakes the projector: the worker and beat must reconnect and catch up on their own.
    catch_up = wait_caught_up(pg, timeout=45)
    print(f"\nbroker crashed: max approve {max(crashed):.3f} s; hung: max approve {max(hung):.3f} s, readyz {hung_ready_time:.2f} s; "
          f"caught up {catch_up:.1f} s after the broker came back")
    assert max(crashed) < 2, f"an approval took {max(crashed):.2f} s while the broker was down"
    assert max(hung) < 2, f"an approval took {max(hung):.2f} s while the broker hung"

    # And it keeps working afterwards: approvals are projected again.
    assert approve_all(clients, pairs[110:], ledger) == {200: 20}
    wait_caught_up(pg, timeout=15)
    as_of, rest = rest_weekly_income(admin)
    assert rest == ledger.expected()
    assert_projection_exact(pg, ledger)


def test_a_worker_killed_mid_projection_loses_nothing_and_projects_no_event_twice(stack, own_redis, pg):
    payments = random_payments(BACKLOG, seed=2, days=20)
    ledger = ledger_of(payments)
    worker = backlog_worker(stack, "worker", wait=False)  # boots while the backlog is written
    started = time.monotonic()
    insert_transactions(payments, approve=True)  # eight batches of events, no wake-up sent
    inserted = time.monotonic() - started
    _, last = positions(pg)
    stack.wait_ready(worker)
    send_task(own_redis.url(0), PROJECT)

    # Kill 1: kill -9 the pool process while its projector transaction is open.
    child = pool_children(worker)[0]
    sessions = wait_for(lambda: projector_sessions(pg), 20, "a projector transaction")
    os.kill(child, signal.SIGKILL)
    first_kill_at, _ = positions(pg)
    assert first_kill_at < last, f"the projection reached {first_kill_at}/{last} before the kill: make the backlog larger"
    wait_for(lambda: "SIGKILL" in worker.output(), 10, "the worker noticing its pool process was killed")
    # The master replaces its pool process; the task is acknowledged late and rejected on worker
    # loss, so the new pool process runs it again from the checkpoint.
    wait_for(lambda: positions(pg)[0] > first_kill_at, 30, "the replacement pool process projecting")
    # Kill 2: kill -9 the whole worker (master and pool) in the middle of the rerun. Holding the
    # checkpoint stops the rerun inside its next batch's transaction, so there is a middle to kill in.
    with checkpoint_held(connection.settings_dict):
        wait_for(lambda: checkpoint_waiters(pg), 10, "the rerun's next batch waiting for the checkpoint")
        second_kill_at, _ = positions(pg)
        assert first_kill_at < second_kill_at < last, f"the rerun is not in the middle: {first_kill_at} -> {second_kill_at}/{last}"
        kill_hard(worker)

    # A new worker; its wake-up is beat's periodic catch-up (the killed worker's message stays
    # unacknowledged in the broker until its visibility timeout).
    restarted = time.monotonic()
    stack.start_beat()
    backlog_worker(stack, "worker-2")
    catch_up = wait_caught_up(pg, timeout=40)
    print(f"\n{ledger.count} approvals inserted in {inserted:.1f} s; killed the pool process at checkpoint "
          f"{first_kill_at}/{last} (open transaction: {sessions[0][1]}, {sessions[0][3][:60]!r}), the worker at "
          f"{second_kill_at}/{last}; a new worker caught up {time.monotonic() - restarted:.1f} s after starting "
          f"({catch_up:.1f} s after it was ready)")
    assert_projection_exact(pg, ledger)


def test_the_projection_task_run_twice_at_the_same_time_in_two_workers_counts_every_event_once(stack, own_redis, pg):
    payments = random_payments(BACKLOG, seed=3, days=20)
    ledger = ledger_of(payments)
    first, second = backlog_worker(stack, "worker-a", wait=False), backlog_worker(stack, "worker-b", wait=False)
    insert_transactions(payments, approve=True)  # eight batches of events, no wake-up sent
    ensure_checkpoint_row(pg)  # both runs then queue on its row lock, as in a migrated database
    stack.wait_ready(first, second)

    # Both runs start while the checkpoint is held: each is then inside its first batch's
    # transaction at the same time, and once it is let go they take the batches in turns.
    with checkpoint_held(connection.settings_dict):
        send_task(own_redis.url(0), PROJECT, count=2)
        overlap = wait_for(lambda: len(checkpoint_waiters(pg)) >= 2 and checkpoint_waiters(pg), 20,
                           "both runs inside a projector transaction at once")
    catch_up = wait_caught_up(pg, timeout=40)
    runs = (task_runs(first.output()), task_runs(second.output()))
    print(f"\ntwo concurrent runs over {2 * BACKLOG} events caught up in {catch_up:.1f} s; runs per worker {runs}; "
          f"both in a transaction: {overlap}")
    assert runs[0] >= 1 and runs[1] >= 1, f"each worker should have run the task: {runs}"
    assert_projection_exact(pg, ledger)


def test_four_projection_tasks_interleaving_batch_by_batch_on_separate_connections_count_every_event_once(pg, monkeypatch):
    """The same guarantee with many more interleavings: the real task in four threads at once, each on its own
    database connection, with batches of 50 events, so every read and commit of one run falls between
    those of the others."""
    from django.db import connections

    from analytics import projection, tasks

    payments = random_payments(1200, seed=6, days=20)
    ledger = ledger_of(payments)
    # 2,400 events: 48 batches of 50, more than two runs' worth (20 batches), so runs hand over too.
    insert_transactions(payments, approve=True)  # no wake-up sent
    ensure_checkpoint_row(pg)
    monkeypatch.setitem(projection.project_next_batch.__kwdefaults__, "batch_size", 50)
    start = threading.Barrier(4)
    failures: list[BaseException] = []

    def run():
        try:
            start.wait()
            tasks.project_weekly_income()  # its hand-over to a fresh run executes in this thread (eager)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    print(f"\nfour concurrent runs over 2,400 events in batches of 50: {time.monotonic() - started:.1f} s")
    assert not [thread for thread in threads if thread.is_alive()], "a projection run did not finish within 60 s"
    assert not failures, failures
    checkpoint, last = positions(pg)
    assert checkpoint == last
    stored = stored_weekly_income(pg)
    assert stored == ledger.expected()
    assert sum(count for _, count in stored.values()) == ledger.count


def test_a_dashboard_dropped_in_the_middle_of_a_burst_resumes_to_the_exact_rest_totals_and_never_sees_a_total_go_backwards(stack, pg):
    # Two workers, so batches can finish (and publish) out of order.
    booting = start(stack, "worker-a", "worker-b")
    payments = random_payments(300, seed=4, days=20)
    pairs = list(zip(insert_transactions(payments, approve=False), payments))
    stack.wait_ready(*booting)
    admin = logged_in(stack)
    watcher = DashboardWatcher(stack, admin.cookie_header).connect()
    ledger = Ledger()
    try:
        with ThreadPoolExecutor(1) as pool:
            burst = pool.submit(approve_all, [same_session(admin) for _ in range(4)], pairs, ledger)
            wait_for(lambda: ledger.count >= 100 or burst.done(), 30, "100 approvals")
            watcher.drop()
            dropped_at = (ledger.count, watcher.seq())
            wait_for(lambda: ledger.count >= 200 or burst.done(), 30, "200 approvals")
            watcher.reconnect()
            resumed_at = ledger.count
            assert burst.result() == {200: 300}
        wait_caught_up(pg, timeout=20)
        as_of, rest = rest_weekly_income(admin)
        expected = {key: total for key, (total, _) in rest.items()}
        wait_for(lambda: watcher.totals() == expected, 10, "the dashboard converging", interval=0.05)
        print(f"\ndropped after {dropped_at[0]} approvals at seq {dropped_at[1]}, resumed after {resumed_at}; "
              f"{watcher.messages} messages, {watcher.snapshots} snapshots, {len(expected)} (week, currency) totals")
        assert 0 < dropped_at[0] < resumed_at < 300, "the drop was not in the middle of the burst"
        assert rest == ledger.expected()
        assert watcher.totals() == expected
        assert not watcher.backwards, watcher.backwards
        assert not watcher.errors, watcher.errors
        assert watcher.seq() == as_of
    finally:
        watcher.close()


def test_a_burst_of_1000_approvals_is_projected_by_far_fewer_task_runs_and_the_last_push_equals_rest(stack, pg):
    booting = start(stack, "worker")
    payments = random_payments(BURST, seed=5, currencies=("EUR", "USD"), days=6)
    ids = insert_transactions(payments, approve=False)
    stack.wait_ready(*booting)
    admin = logged_in(stack)
    watcher = DashboardWatcher(stack, admin.cookie_header).connect()
    try:
        ledger = Ledger()
        started = time.monotonic()
        statuses = approve_all([same_session(admin) for _ in range(8)], zip(ids, payments), ledger)
        elapsed = time.monotonic() - started
        assert statuses == {200: BURST}, statuses
        catch_up = wait_caught_up(pg, timeout=30)
        as_of, rest = rest_weekly_income(admin)
        # The dashboard's totals, {(week, currency): minor units}, not REST's (total, count) pairs: compared with
        # `rest` itself, the wait never ended early and always took its full 10 s.
        rest_totals = {key: total for key, (total, _) in rest.items()}
        deadline = time.monotonic() + 10
        while watcher.totals() != rest_totals and time.monotonic() < deadline:
            time.sleep(0.05)
        runs = task_runs(stack.processes["worker"].output())
        print(f"\n{BURST} approvals over HTTP in {elapsed:.1f} s ({BURST / elapsed:.0f}/s), caught up {catch_up:.2f} s later; "
              f"{runs} projection task runs")
        # Runs start at least MIN_GAP_MS apart however many commits wake the projector, so their number is
        # bounded by how long the burst lasted, not by its approvals (a fixed share of BURST assumed a fast
        # machine: at 123 approvals/s, 206 runs took about 5 approvals each). The slack covers runs the
        # at-least-once fallback enqueues.
        spaced = (elapsed + catch_up) / (MIN_GAP_MS / 1000)
        assert runs <= spaced + 10, f"{runs} task runs in {elapsed + catch_up:.1f} s: runs are not spaced {MIN_GAP_MS} ms apart"
        assert runs < BURST / 2, f"{runs} task runs for {BURST} approvals: wake-ups are not coalesced"
        assert runs >= 1
        assert rest == ledger.expected()
        last_pushed = {key: message["total"] for key, message in watcher.last_updates.items()}
        assert last_pushed == {key: money(total, key[1]) for key, (total, _) in rest.items()}
        assert watcher.totals() == rest_totals
        assert not watcher.backwards, watcher.backwards
        assert_projection_exact(pg, ledger)
    finally:
        watcher.close()


def test_a_dashboard_open_through_a_redis_restart_stays_open_and_converges_without_reconnecting(stack, own_redis, pg):
    stack.wait_ready(*start(stack, "worker", beat=True))
    admin = logged_in(stack)
    payments = random_payments(20, seed=7, currencies=("EUR",), days=3)
    pairs = list(zip(insert_transactions(payments, approve=False), payments))
    ledger = Ledger()
    watcher = DashboardWatcher(stack, admin.cookie_header).connect()
    try:
        assert approve_all([admin], pairs[:10], ledger) == {200: 10}
        wait_caught_up(pg, timeout=15)
        expected = {key: total for key, (total, _) in ledger.expected().items()}
        wait_for(lambda: watcher.totals() == expected, 10, "updates before the restart", interval=0.05)

        # Everything in Redis is lost. Each web process's hub subscribes again and resyncs its own
        # sockets (realtime/hub.py), so the page keeps its socket: nothing per socket lived in Redis.
        own_redis.restart(down_for=2)
        assert approve_all([admin], pairs[10:], ledger) == {200: 10}
        wait_caught_up(pg, timeout=30)
        as_of, rest = rest_weekly_income(admin)
        assert rest == ledger.expected()
        expected = {key: total for key, (total, _) in rest.items()}
        wait_for(lambda: watcher.totals() == expected, 15, "the open dashboard converging after the restart", interval=0.05)
        assert watcher.alive, "the server closed a socket whose updates it could have resynced"
        assert not watcher.backwards, watcher.backwards
    finally:
        watcher.close()


def open_dashboard(stack: LiveStack, cookie: str, attempts: int = 5) -> DashboardWatcher:
    """Connect as a dashboard page would, retrying a handshake that does not complete within 3 s."""
    for attempt in range(attempts):
        try:
            return DashboardWatcher(stack, cookie).connect(timeout=3)
        except TimeoutError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def test_the_first_approval_after_a_redis_restart_reaches_an_open_dashboard(stack, own_redis, pg):
    stack.wait_ready(*start(stack, "worker", beat=True))
    admin = logged_in(stack)
    payments = random_payments(6, seed=8, currencies=("USD",), days=3)
    pairs = list(zip(insert_transactions(payments, approve=False), payments))
    ledger = Ledger()
    assert approve_all([admin], pairs[:5], ledger) == {200: 5}  # the worker has published to the channel layer
    wait_caught_up(pg, timeout=15)

    own_redis.restart(down_for=2)
    watcher = open_dashboard(stack, admin.cookie_header)  # a page opened after the restart
    try:
        assert watcher.totals() == {key: total for key, (total, _) in ledger.expected().items()}
        # One more approval, then quiet: nothing later would reveal a lost push to the dashboard.
        assert approve_all([admin], pairs[5:], ledger) == {200: 1}
        wait_caught_up(pg, timeout=15)
        as_of, rest = rest_weekly_income(admin)
        assert rest == ledger.expected()
        expected = {key: total for key, (total, _) in rest.items()}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and watcher.totals() != expected:
            time.sleep(0.05)
        published_failures = [line for line in stack.processes["worker"].output().splitlines() if "publishing a dashboard" in line]
        assert watcher.totals() == expected, (
            f"the dashboard still shows {watcher.totals()} 10 s after the projection reached {expected} "
            f"(as_of {as_of}, dashboard at seq {watcher.seq()}); worker: {published_failures}"
        )
    finally:
        watcher.close()


def test_a_visibility_timeout_shorter_than_the_projection_redelivers_it_and_totals_stay_exact(transactional_db, tmp_path, own_redis, pg):
    """acks_late with a 1 s visibility timeout: a task still running after 1 s counts as lost, and the
    next worker to look (kombu scans on its first poll) runs it again, overlapping the first run on the
    same backlog. The checkpoint lock keeps every count single.

    The first run is kept running by holding the checkpoint (it waits inside its first batch), and
    the second worker starts once the broker's own record says the delivery is past the timeout:
    conditions, not sleeps, so no timer is raced."""
    live = LiveStack(
        env=stack_env(REDIS_URL=own_redis.url(0), DATABASE_POOL="true", CELERY_VISIBILITY_TIMEOUT="1"), log_dir=tmp_path
    )
    payments = random_payments(BACKLOG, seed=11, days=20)
    ledger = ledger_of(payments)
    try:
        first = backlog_worker(live, "worker-a", wait=False)  # boots while the backlog is written
        insert_transactions(payments, approve=True)  # no wake-up sent
        ensure_checkpoint_row(pg)
        live.wait_ready(first)
        with checkpoint_held(connection.settings_dict):
            send_task(own_redis.url(0), PROJECT)
            wait_for(lambda: checkpoint_waiters(pg), 20, "worker-a's run inside its first batch")
            wait_for(lambda: any(age > 1.2 for age in unacked_deliveries(own_redis.url(0))), 10,
                     "the delivery to worker-a passing the 1 s visibility timeout")
            second = backlog_worker(live, "worker-b")
            wait_for(lambda: task_runs(second.output()) >= 1, 30, "worker-b receiving the task worker-a is still running")
            runs_while_held = (task_runs(first.output()), task_runs(second.output()))
            waiting = wait_for(lambda: len(checkpoint_waiters(pg)) >= 2 and checkpoint_waiters(pg), 10,
                               "both runs inside a projector transaction at once")
        catch_up = wait_caught_up(pg, timeout=60)
        runs = (task_runs(first.output()), task_runs(second.output()))
        print(f"\none task over {2 * BACKLOG} events with a 1 s visibility timeout: runs per worker {runs_while_held} "
              f"while worker-a's first run was held, {runs} in the end; caught up in {catch_up:.1f} s; waiting: {waiting}")
        assert runs_while_held == (1, 1), (
            f"runs per worker while worker-a's first run was still going: {runs_while_held}, expected (1, 1): "
            "the running task was redelivered to worker-b exactly once and worker-a received it once"
        )
        assert_projection_exact(pg, ledger)
    finally:
        live.stop()
