"""Benchmarks on the real stack (PostgreSQL, Redis, uvicorn, one Celery worker); writes bench/RESULTS.md.

Run with `make bench`. Uses its own database (ledgerpulse_bench, recreated) and Redis database 10.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import configure_environment, recreate_database  # noqa: E402

DB_NAME = os.environ.get("BENCH_DB", "ledgerpulse_bench")
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "10"))
configure_environment(db_name=DB_NAME, redis_db=REDIS_DB)


def percentile(values, pct):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def ms(seconds):
    return f"{seconds * 1000:.1f} ms"


def main():
    recreate_database(db_name=DB_NAME, redis_db=REDIS_DB)
    import django

    django.setup()
    from tests.stack import Browserless, LiveStack, create_live_user

    create_live_user("bench", "bench-password-123")
    stack = LiveStack(env=dict(os.environ), log_dir=Path("/tmp"))
    results = {}
    try:
        stack.start_worker(concurrency=1)
        stack.start_server()
        client = Browserless(stack.base_url).login("bench", "bench-password-123")
        results["latency_idle"] = approve_to_socket_latency(stack, client, count=200)
        for currency in ("USD", "JPY"):
            for txn_id in submit_pending(client, 3, currency=currency):
                client.post(f"/api/transactions/{txn_id}/approve/", {})
        results["history"] = history_latency(client, count=500)
        results["throughput"] = approve_throughput(stack, client, clients=32, seconds=8)
        results["projection"] = projection_cost()
    finally:
        stack.stop()
    write_results(results)


def submit_pending(client, n, currency="EUR"):
    now = datetime.now(timezone.utc).isoformat()
    ids = []
    for i in range(n):
        amount = f"{100 + i % 50}" if currency == "JPY" else f"{1 + i % 50}.25"
        response = client.post("/api/transactions/", {"amount": amount, "currency": currency, "occurred_at": now})
        ids.append(response.json()["id"])
    return ids


def approve_to_socket_latency(stack, client, count):
    """Time from sending the approve request to the weekly_income.updated frame on a socket, one at a time."""
    from websockets.sync.client import connect

    ids = submit_pending(client, count)
    time.sleep(1.0)
    samples = []
    with connect(stack.ws_url, origin=stack.base_url, additional_headers={"Cookie": client.cookie_header}) as ws:
        ws.recv(timeout=10)  # snapshot
        for txn_id in ids:
            started = time.perf_counter()
            position = client.post(f"/api/transactions/{txn_id}/approve/", {}).json()["position"]
            while True:
                message = json.loads(ws.recv(timeout=10))
                if message["type"] == "weekly_income.updated" and message["seq"] >= position:
                    break
            samples.append(time.perf_counter() - started)
    return {"count": count, "p50": percentile(samples, 50), "p99": percentile(samples, 99), "max": max(samples)}


def history_latency(client, count):
    """GET 52 weeks x 3 currencies of weekly income, sequentially over one keep-alive connection."""
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get("/api/analytics/weekly-income/", **{"from": "2025-11-24", "to": "2026-11-16"})
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200
    return {"count": count, "rows": len(response.json()["results"]), "p50": percentile(samples, 50), "p99": percentile(samples, 99)}


def approve_throughput(stack, client, clients, seconds):
    """Approvals per second with `clients` concurrent HTTP clients."""
    from tests.stack import Browserless

    ids = submit_pending(client, 6000, currency="USD")
    cursor = iter(ids)
    lock = threading.Lock()
    done, statuses = [], {}
    # Log every client in before the clock starts: a login is a deliberately slow password hash.
    sessions = [Browserless(stack.base_url).login("bench", "bench-password-123") for _ in range(clients)]
    deadline = time.monotonic() + seconds

    def worker(me):
        while time.monotonic() < deadline:
            with lock:
                txn_id = next(cursor, None)
            if txn_id is None:
                return
            status = me.post(f"/api/transactions/{txn_id}/approve/", {}).status_code
            with lock:
                done.append(status)
                statuses[status] = statuses.get(status, 0) + 1

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        for me in sessions:
            pool.submit(worker, me)
    elapsed = time.monotonic() - started
    return {"clients": clients, "approvals": len(done), "seconds": elapsed, "per_second": len(done) / elapsed, "statuses": statuses}


def projection_cost():
    """Projector time per batch of 1,000 approvals with a short and with a long history behind it."""
    from decimal import Decimal

    from analytics.projection import project_next_batch
    from core.models import StoredEvent
    from transactions.models import Transaction

    def append_approvals(n):
        # Straight inserts (no commands) so a long history is quick to build; each event has
        # its read-model row, since the projector turns decisions into dashboard messages.
        now = datetime.now(timezone.utc)
        ids = [uuid.uuid4() for _ in range(n)]
        Transaction.objects.bulk_create(
            [
                Transaction(id=i, amount=Decimal("10.00"), currency="EUR", occurred_at=now, status="approved", version=2,
                            created_at=now, decided_at=now, decided_by="bench", last_position=0)
                for i in ids
            ],
            batch_size=5000,
        )
        StoredEvent.objects.bulk_create(
            [
                StoredEvent(
                    stream_id=i,
                    version=2,
                    type="TransactionApproved",
                    data={"transaction_id": str(i), "amount": "10.00", "currency": "EUR", "occurred_at": now.isoformat(), "reason": ""},
                    metadata={},
                    recorded_at=now,
                )
                for i in ids
            ],
            batch_size=5000,
        )

    def catch_up():
        while project_next_batch():
            pass

    def timed_batch():
        append_approvals(1000)
        started = time.perf_counter()
        catch_up()
        return time.perf_counter() - started

    catch_up()
    short = statistics.median(timed_batch() for _ in range(5))
    append_approvals(100_000)
    catch_up()
    long = statistics.median(timed_batch() for _ in range(5))
    return {"short_history": short, "long_history": long, "history_events": StoredEvent.objects.count()}


def write_results(r):
    lines = [
        "# Benchmark results",
        "",
        f"`make bench` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Python {platform.python_version()};",
        "PostgreSQL, Redis, one uvicorn process and one Celery worker (prefork, concurrency 1), all on this machine.",
        "",
        "| measure | result | budget (design) |",
        "|---|---|---|",
        f"| approve -> `weekly_income.updated` on a socket, idle, p50 ({r['latency_idle']['count']} sequential) | {ms(r['latency_idle']['p50'])} | <= 15 ms |",
        f"| same, p99 | {ms(r['latency_idle']['p99'])} | <= 50 ms |",
        f"| weekly income history ({r['history']['rows']} rows = 52 weeks x 3 currencies), p50 | {ms(r['history']['p50'])} | |",
        f"| same, p99 ({r['history']['count']} sequential requests) | {ms(r['history']['p99'])} | <= 10 ms |",
        f"| approve requests per second, {r['throughput']['clients']} concurrent clients | {r['throughput']['per_second']:.0f}/s ({r['throughput']['approvals']} in {r['throughput']['seconds']:.1f} s, statuses {r['throughput']['statuses']}) | >= 500/s |",
        f"| projector, 1,000 approvals, short history (median of 5) | {ms(r['projection']['short_history'])} | |",
        f"| projector, 1,000 approvals, after {r['projection']['history_events']:,} events (median of 5) | {ms(r['projection']['long_history'])} | independent of history |",
        "",
        "The HTTP load generator is Python (requests, threads) on the same 2 cores as the server, so the",
        "throughput line measures the pair; it is a floor for the server, not a ceiling.",
    ]
    (ROOT / "bench" / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
