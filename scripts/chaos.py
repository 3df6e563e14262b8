"""make chaos: a bounded soak of the whole stack under faults, on loopback only.

Recreates its own database (ledgerpulse_chaos) and starts its own redis-server on a free port (the
machine's shared Redis and PostgreSQL servers are never stopped), then the Procfile's web line, two
Celery workers and Celery beat (scripts/stack.py). ~16 logged-in HTTP clients approve transactions while a dashboard
websocket keeps per-(week, currency) totals (reconnecting and resuming whenever it is dropped), and
faults are injected on a schedule: kill -9 a worker (and start a new one), restart the redis-server
(down 2 s), and a broker outage (down ~5 s). When the traffic stops and the projection has caught up,
the accepted approvals, the event log, the projection, the REST API and the dashboard must all agree.

    .venv/bin/python scripts/chaos.py [--approvals N] [--seconds S] [--short] [--clients C]

Progress goes to stderr; stdout gets one line:

    chaos: approvals_accepted=<n> events_stored=<n> projected_total=<...> log_total=<...> dashboard_total=<...> lost=<n> doubled=<n> result=PASS|FAIL

The exit status is 0 on PASS, 1 on FAIL, 2 when the run could not be carried out.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = os.environ.get("CHAOS_DB", "ledgerpulse_chaos")
PG = os.environ.get("CHAOS_PG", "postgres://postgres@127.0.0.1:5432")
PASSWORD = "chaos-password-123"
STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[chaos {time.monotonic() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--approvals", type=int, default=None, help="approve at least this many (default 10000; 600 with --short)")
    parser.add_argument("--seconds", type=float, default=None, help="stop driving traffic after this long (default 900; 240 with --short)")
    parser.add_argument("--short", action="store_true", help="CI size: 600 approvals and one fault of each kind")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients (default 16)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    if args.approvals is None:
        args.approvals = 600 if args.short else 10_000
    if args.seconds is None:
        args.seconds = 240.0 if args.short else 900.0
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 30)
    return args


FAULT_KINDS = ("kill_worker", "restart_redis", "broker_outage")
MIN_CALM_SECONDS = 3.0


def fault_schedule(approvals: int, short: bool) -> list[tuple[int, str]]:
    """(approvals accepted before it starts, fault): one of each kind for --short, else one every tenth."""
    if short:
        return [(approvals * (i + 1) // 4, kind) for i, kind in enumerate(FAULT_KINDS)]
    return [(approvals * i // 10, FAULT_KINDS[(i - 1) % 3]) for i in range(1, 10)]


def recreate_database(env: dict) -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)


class Chaos:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.stop = threading.Event()  # traffic and faults
        self.dashboard_stop = threading.Event()
        self.lock = threading.Lock()
        self.log_dir = Path(tempfile.mkdtemp(prefix="ledgerpulse-chaos-"))
        self.redis = None
        self.stack = None
        self.watcher = None
        self.workers: list = []
        self.injector: threading.Thread | None = None
        self.worker_serial = 0
        self.faults_done: list[str] = []
        self.faults_finished = threading.Event()
        self.statuses: dict[str, int] = defaultdict(int)
        self.latencies: list[float] = []
        self.http_submitted: list[str] = []
        self.reconciled = 0
        self.ws_failed_handshakes = 0
        self.ws_reconnects = 0

    # --- setup -------------------------------------------------------------------------------
    def start(self) -> None:
        from scripts.faults import RedisServer

        from scripts.stack import stack_env

        self.redis = RedisServer(self.log_dir).start()
        base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_POOL", "WEB_CONCURRENCY"}}
        env = stack_env(
            database_url=f"{PG}/{DB_NAME}", redis_url=self.redis.url(0), base=base,
            secret="chaos-only-secret-key-0123456789abcdef0123456789", prefix=f"lp-chaos-{uuid.uuid4().hex[:6]}",
            LOG_LEVEL="WARNING", PROJECTION_CATCH_UP_SECONDS="2",
        )
        os.environ.clear()
        os.environ.update(env)
        log(f"database {DB_NAME}, redis-server on port {self.redis.port}, logs in {self.log_dir}, seed {self.args.seed}")
        recreate_database(env)

        import django

        django.setup()
        from scripts.stack import Stack, create_live_user

        create_live_user("chaos", PASSWORD)
        create_live_user("chaos-clerk", PASSWORD)  # submits over HTTP: nobody approves their own submission
        self.stack = Stack(env=dict(os.environ), log_dir=self.log_dir)
        self.stack.start_server()
        self.start_worker()
        self.start_worker()
        self.stack.start_beat()

    def start_worker(self):
        self.worker_serial += 1
        worker = self.stack.start_worker(f"worker-{self.worker_serial}")
        self.workers.append(worker)
        return worker

    # --- the dashboard ----------------------------------------------------------------------
    def keep_dashboard(self, cookie: str) -> None:
        """Reconnect (and resume) whenever the socket is dropped, as the dashboard page does."""
        from scripts.faults import DashboardWatcher

        self.watcher = DashboardWatcher(self.stack, cookie)
        connected = False
        while not self.dashboard_stop.is_set():
            if not self.watcher.alive:
                try:
                    if connected:
                        self.watcher.reconnect(timeout=5)
                        self.ws_reconnects += 1
                    else:
                        self.watcher.connect(timeout=5)
                        connected = True
                except Exception as exc:  # noqa: BLE001 - the server or Redis is down: try again
                    self.ws_failed_handshakes += 1
                    log(f"dashboard: connecting failed ({exc.__class__.__name__}: {exc}); retrying")
                    time.sleep(0.5)
                    continue
            time.sleep(0.2)

    # --- traffic ----------------------------------------------------------------------------
    def approve(self, client, txn_id: str) -> bool:
        """Approve over HTTP; True when the transaction ended up approved by this request."""
        started = time.monotonic()
        try:
            response = client.post(f"/api/transactions/{txn_id}/approve/", {"reason": "chaos"})
            status = str(response.status_code)
        except Exception as exc:  # noqa: BLE001 - the outcome is settled below
            status = exc.__class__.__name__
        elapsed = time.monotonic() - started
        with self.lock:
            self.statuses[status] += 1
            self.latencies.append(elapsed)
        if status == "200":
            return True
        # Unknown outcome (an error, a timeout): ask the server what happened.
        for _ in range(20):
            try:
                state = client.get(f"/api/transactions/{txn_id}/").json()["status"]
            except Exception:  # noqa: BLE001
                time.sleep(0.5)
                continue
            if state == "approved":
                with self.lock:
                    self.reconciled += 1
                return True
            if state == "pending":
                return self.approve(client, txn_id)
            return False
        return False

    def submit(self, client, payment) -> str | None:
        """Submit over HTTP with an Idempotency-Key, retried until it has a definite answer (as the client's clerk:
        the approving user would get 403 own_submission for it)."""
        client = client.clerk
        key = uuid.uuid4().hex
        body = {"amount": payment.amount, "currency": payment.currency, "occurred_at": payment.occurred_at.isoformat()}
        for _ in range(20):
            try:
                response = client.http.post(
                    f"{client.base_url}/api/transactions/", json=body, timeout=15,
                    headers={"X-CSRFToken": client.http.cookies["csrftoken"], "Idempotency-Key": key},
                )
                if response.status_code == 201:
                    return response.json()["id"]
                if response.status_code < 500 and response.status_code != 409:
                    log(f"submit refused: {response.status_code} {response.text[:200]}")
                    return None
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.5)
        return None

    def drive(self, clients, pending: list, ledger) -> None:
        from scripts.faults import random_payments

        deadline = STARTED + self.args.seconds
        queue = list(pending)
        self.rng.shuffle(queue)

        def next_work():
            with self.lock:
                enough = ledger.count >= self.args.approvals and self.faults_finished.is_set()
                if self.stop.is_set() or enough or time.monotonic() > deadline:
                    return None
                # One approval in ten is of a transaction submitted over HTTP just before it.
                if queue and self.rng.random() >= 0.1:
                    return queue.pop()
                return ("http", self.rng.randrange(1 << 30))

        def run(client):
            while (work := next_work()) is not None:
                if isinstance(work, tuple) and work[0] == "http":
                    payment = random_payments(1, seed=work[1], days=20)[0]
                    txn_id = self.submit(client, payment)
                    if txn_id is None:
                        continue
                    with self.lock:
                        self.http_submitted.append(txn_id)
                else:
                    txn_id, payment = work
                if self.approve(client, txn_id):
                    ledger.add(payment.occurred_at, payment.currency, payment.amount)

        with ThreadPoolExecutor(len(clients)) as pool:
            futures = [pool.submit(run, c) for c in clients]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                self.stop.set()  # Ctrl-C or a failed client: let the others finish their request and stop
                raise

    # --- faults -----------------------------------------------------------------------------
    def inject(self, ledger) -> None:
        from scripts.faults import kill_hard

        calm_until = time.monotonic() + MIN_CALM_SECONDS
        try:
            for at, kind in fault_schedule(self.args.approvals, self.args.short):
                # Each fault starts at its point in the traffic, and after a few calm seconds in
                # which the stack has recovered from the previous one.
                while (ledger.count < at or time.monotonic() < calm_until) and not self.stop.is_set():
                    time.sleep(0.05)
                if self.stop.is_set():
                    return
                started, count = time.monotonic(), ledger.count
                if kind == "kill_worker":
                    alive = [w for w in self.workers if w.popen.poll() is None]
                    victim = self.rng.choice(alive)
                    kill_hard(victim)
                    self.workers.remove(victim)
                    replacement = self.start_worker()
                    detail = f"kill -9 {victim.name}, started {replacement.name}"
                elif kind == "restart_redis":
                    self.redis.restart(down_for=2)
                    detail = "redis-server down 2 s"
                else:
                    self.redis.stop()
                    time.sleep(5)
                    self.redis.start()
                    detail = "broker outage 5 s"
                line = f"{kind} at {count} approvals: {detail} ({time.monotonic() - started:.1f} s)"
                calm_until = time.monotonic() + MIN_CALM_SECONDS
                self.faults_done.append(line)
                log(line)
        except Exception as exc:  # noqa: BLE001 - reported as a missing fault
            log(f"injecting a fault failed: {exc.__class__.__name__}: {exc}")
        finally:
            self.faults_finished.set()

    # --- the end ----------------------------------------------------------------------------
    def wait_caught_up(self, client, timeout: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                body = client.get("/readyz").json()
                lag = body["projection_lag"]["weekly_income"]
                if body["status"] == "ok" and lag["behind"] == 0:
                    return time.monotonic() - started
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the projection did not catch up within {timeout} s")

    def run(self) -> int:
        from scripts.faults import (
            Ledger, insert_transactions, money, pg_connect, random_payments, rest_weekly_income, stored_weekly_income,
        )
        from scripts.stack import Browserless

        self.start()
        with ThreadPoolExecutor(4) as pool:  # logins are slow password hashes: before the clock starts
            clients = list(pool.map(lambda _: Browserless(self.stack.base_url).login("chaos", PASSWORD), range(self.args.clients)))
            clerks = pool.map(lambda _: Browserless(self.stack.base_url).login("chaos-clerk", PASSWORD), range(self.args.clients))
            for client, clerk in zip(clients, clerks):  # each approving client submits through its own clerk's session
                client.clerk = clerk
        pre = int(self.args.approvals * 1.2) + 100
        payments = random_payments(pre, seed=self.args.seed, days=20)
        ids = insert_transactions(payments, approve=False)
        pending = list(zip((str(i) for i in ids), payments))
        log(f"{len(clients)} clients logged in, {pre} pending transactions inserted")

        dashboard = threading.Thread(target=self.keep_dashboard, args=(clients[0].cookie_header,), daemon=True)
        dashboard.start()
        ledger = Ledger()
        injector = self.injector = threading.Thread(target=self.inject, args=(ledger,), daemon=True)
        clock = time.monotonic()
        injector.start()
        self.drive(clients, pending, ledger)
        driven = time.monotonic() - clock
        log(f"{ledger.count} approvals accepted in {driven:.1f} s ({ledger.count / driven:.0f}/s); statuses {dict(self.statuses)}; "
            f"max approve {max(self.latencies):.2f} s")
        if not self.faults_finished.is_set():
            log("time cap reached before every fault was injected")
        self.stop.set()
        injector.join(30)
        if not self.redis.running:
            self.redis.start()

        caught_up = self.wait_caught_up(clients[0], timeout=180)
        log(f"projection caught up {caught_up:.1f} s after the traffic stopped")
        as_of, rest = rest_weekly_income(clients[0])
        rest_totals = {k: t for k, (t, _) in rest.items()}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (self.watcher is None or self.watcher.totals() != rest_totals):
            time.sleep(0.2)
        dashboard_rows = self.watcher.totals() if self.watcher else {}
        self.dashboard_stop.set()

        conn = pg_connect({"NAME": DB_NAME})
        try:
            events_stored = conn.execute("SELECT count(*) FROM core_event").fetchone()[0]
            checkpoint, last = conn.execute(
                "SELECT (SELECT position FROM analytics_projectioncheckpoint WHERE name = 'weekly_income'), "
                "(SELECT coalesce(max(position), 0) FROM core_event)"
            ).fetchone()
            log_rows = conn.execute(
                "SELECT data->>'currency', sum((data->>'amount')::numeric), count(*) FROM core_event "
                "WHERE type = 'TransactionApproved' GROUP BY 1"
            ).fetchall()
            stored = stored_weekly_income(conn)
        finally:
            conn.close()
        verified = self.stack.manage("verify_projections")

        from scripts.faults import minor_units

        accepted = ledger.per_currency()
        projected, projected_count = defaultdict(int), sum(c for _, c in stored.values())
        for (_, cur), (total, _) in stored.items():
            projected[cur] += total
        logged = {cur: minor_units(str(total), cur) for cur, total, _ in log_rows}
        logged_count = sum(count for _, _, count in log_rows)
        on_dashboard = defaultdict(int)
        for (_, cur), total in dashboard_rows.items():
            on_dashboard[cur] += total
        rest_per_currency = defaultdict(int)
        for (_, cur), total in rest_totals.items():
            rest_per_currency[cur] += total

        def fmt(totals):
            return ",".join(f"{cur}:{money(totals[cur], cur)}" for cur in sorted(totals) if totals[cur]) or "0"

        expected_events = len(ids) + len(self.http_submitted) + ledger.count
        lost = max(0, ledger.count - projected_count)
        doubled = max(0, projected_count - ledger.count)
        problems = []
        if fmt(projected) != fmt(accepted):
            problems.append(f"projection {fmt(projected)} != accepted {fmt(accepted)}")
        if fmt(logged) != fmt(accepted) or logged_count != ledger.count:
            problems.append(f"event log {fmt(logged)} ({logged_count}) != accepted {fmt(accepted)} ({ledger.count})")
        if fmt(on_dashboard) != fmt(accepted) or dashboard_rows != rest_totals:
            problems.append(f"dashboard {fmt(on_dashboard)} != accepted {fmt(accepted)} / REST {fmt(rest_per_currency)}")
        if fmt(rest_per_currency) != fmt(accepted):
            problems.append(f"REST {fmt(rest_per_currency)} != accepted {fmt(accepted)}")
        if lost or doubled:
            problems.append(f"projected count {projected_count} vs accepted {ledger.count}")
        if events_stored != expected_events:
            problems.append(f"events stored {events_stored} != expected {expected_events}")
        if checkpoint != last:
            problems.append(f"checkpoint {checkpoint} != last event {last}")
        if verified.returncode != 0:
            problems.append(f"verify_projections: {verified.stderr.strip()[-500:]}")
        if self.watcher and self.watcher.backwards:
            problems.append(f"dashboard saw totals go backwards: {self.watcher.backwards[:3]}")
        if ledger.count < self.args.approvals:
            log(f"note: only {ledger.count} of {self.args.approvals} approvals within the {self.args.seconds:g} s cap")
        if len(self.faults_done) < len(fault_schedule(self.args.approvals, self.args.short)):
            problems.append(f"only {len(self.faults_done)} faults were injected")
        for line in self.faults_done:
            log(f"fault: {line}")
        log(f"dashboard: {self.watcher.messages if self.watcher else 0} messages, {self.watcher.snapshots if self.watcher else 0} "
            f"snapshots, {self.ws_reconnects} reconnects, {self.ws_failed_handshakes} failed handshakes; "
            f"{self.reconciled} approvals settled by reading them back")
        for problem in problems:
            log(f"PROBLEM: {problem}")
        result = "FAIL" if problems else "PASS"
        print(
            f"chaos: approvals_accepted={ledger.count} events_stored={events_stored} projected_total={fmt(projected)} "
            f"log_total={fmt(logged)} dashboard_total={fmt(on_dashboard)} lost={lost} doubled={doubled} result={result}",
            flush=True,
        )
        return 0 if result == "PASS" else 1

    def cleanup(self) -> None:
        self.stop.set()
        self.dashboard_stop.set()
        if self.injector is not None:
            self.injector.join(20)  # a fault in progress finishes first: it may be starting a process
        if self.watcher is not None:
            try:
                self.watcher.close()
            except Exception:  # noqa: BLE001
                pass
        if self.stack is not None:
            try:
                self.stack.stop(timeout=10)  # every process group it started, killed workers' replacements included
            except Exception as exc:  # noqa: BLE001
                log(f"stopping the stack: {exc}")
        if self.redis is not None:
            self.redis.close()


def main(argv=None) -> int:
    args = parse_args(argv)

    def terminate(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    chaos = Chaos(args)
    try:
        return chaos.run()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001
        log(f"could not complete the run: {exc.__class__.__name__}: {exc}")
        import traceback

        traceback.print_exc()
        return 2
    finally:
        chaos.cleanup()
        log("stopped every process and the redis-server it started")


if __name__ == "__main__":
    sys.exit(main())
