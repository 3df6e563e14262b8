"""Time travel and read-your-writes on a 1M-event log (4k with --quick), loaded by wrk (bench/harness.py).

    .venv/bin/python -m bench.time_travel [--quick]

Measures, in one run, on the Procfile's web line with no Celery worker (the projection stays behind):
- `?at=P` (random P) against PostgreSQL's own GROUP BY over the log up to P (what a user would write
  instead) and against replaying the log into pandas (what the API did before);
- approve latency under wrk alone, and again while 100 readers wait on `min_position`.
"""
from __future__ import annotations

import io
import json
import random
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

from bench.harness import Context, Row, compare, post_each_script

CURRENCIES = ("EUR", "USD", "JPY")
WEEKS = 104


def fill_log(events: int, database_url: str) -> None:
    """events/2 transactions, each submitted then approved, spread over two years and three currencies.

    Written with COPY for speed: bench data, not a claim about the append path."""
    import psycopg

    start = datetime.now(timezone.utc) - timedelta(weeks=WEEKS)
    rng = random.Random(8)
    buffer = io.StringIO()
    recorded = datetime.now(timezone.utc).isoformat()
    for i in range(events // 2):
        stream = uuid.uuid4()
        currency = CURRENCIES[i % 3]
        amount = str(rng.randint(100, 99_999)) if currency == "JPY" else f"{rng.randint(1, 99_999)}.{rng.randint(0, 99):02d}"
        occurred = (start + timedelta(seconds=rng.randint(0, WEEKS * 7 * 86400))).isoformat()
        submitted = {"transaction_id": str(stream), "amount": amount, "currency": currency, "occurred_at": occurred, "reference": "", "description": ""}
        approved = {"transaction_id": str(stream), "amount": amount, "currency": currency, "occurred_at": occurred, "reason": ""}
        for version, kind, data in ((1, "TransactionSubmitted", submitted), (2, "TransactionApproved", approved)):
            buffer.write(f"{stream}\t{version}\t{kind}\t{json.dumps(data)}\t{{}}\t{recorded}\n")
    with psycopg.connect(database_url) as conn:
        with conn.cursor().copy("COPY core_event (stream_id, version, type, data, metadata, recorded_at) FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        conn.execute("ANALYZE core_event")


def settle(database_url: str) -> None:
    """VACUUM ANALYZE and a CHECKPOINT after the bulk load, before anything is timed.

    What autovacuum would have done by then (the bench's PostgreSQL may run without it): set the
    fresh rows' hint bits and visibility map, so the first reader of each page does not write it,
    and flush the load's dirty buffers so a checkpoint does not fall into the measured run.
    """
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) core_event, analytics_weeklyincome, analytics_weeklyincomehistory, analytics_projectioncheckpoint")
        conn.execute("CHECKPOINT")


def project_everything() -> float:
    from analytics.projection import project_next_batch

    started = time.perf_counter()
    while project_next_batch():
        pass
    return time.perf_counter() - started


def lua_get(cookie: str, path_expr: str, seed: int = 7) -> str:
    # Each run its own seed: the web processes keep the answers they sent (analytics/weekly_income_cache.py),
    # so a run repeating another's positions would measure that cache, not time travel.
    return f"""
math.randomseed({seed})
wrk.headers["Cookie"] = "{cookie}"
request = function() return wrk.format("GET", {path_expr}) end
"""


def group_by_baseline(last: int, samples: int, database_url: str) -> dict:
    """The query a user would write instead: aggregate the log up to P in PostgreSQL."""
    import psycopg

    sql = """
        SELECT date_trunc('week', (data->>'occurred_at')::timestamptz AT TIME ZONE 'UTC')::date AS week,
               data->>'currency' AS currency, sum((data->>'amount')::numeric), count(*)
        FROM core_event WHERE type = 'TransactionApproved' AND position <= %s
          AND (data->>'occurred_at')::timestamptz >= now() - interval '12 weeks'
        GROUP BY 1, 2"""
    rng, times = random.Random(3), []
    with psycopg.connect(database_url) as conn:
        for _ in range(samples):
            started = time.perf_counter()
            conn.execute(sql, (rng.randint(1, last),)).fetchall()
            times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": statistics.median(times), "max_ms": max(times), "samples": samples}


def replay_baseline(last: int, samples: int) -> dict:
    """What `?at=P` did before: replay every event up to P into pandas."""
    import pandas as pd

    from analytics.frames import weekly_totals
    from analytics.projection import approved_records
    from core import eventstore

    rng, times = random.Random(4), []
    for _ in range(samples):
        through = rng.randint(last // 2, last)
        started = time.perf_counter()
        frames, position = [], 0
        while position < through and (batch := eventstore.read_all(after=position, limit=50_000)):
            batch = [e for e in batch if e.position <= through]
            if not batch:
                break
            frames.append(approved_records(batch))
            position = batch[-1].position
        weekly_totals(pd.concat(frames), time_zone="UTC", week_start="monday")
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": statistics.median(times), "max_ms": max(times), "samples": samples}


def approve_latency(ctx: Context, stack, client, *, waiters: int, seconds: int):
    """wrk approving pending transactions (8 connections); optionally `waiters` more connections waiting on min_position."""
    from core import eventstore
    from transactions import services

    count = 100 if ctx.quick else 3000
    # Submitted by a clerk, not by the approving bench user: nobody approves their own submission.
    ids = [str(services.transaction_submit(amount="10.00", currency="EUR", actor="bench-clerk").id) for _ in range(count)]
    headers = {"Cookie": client.cookie_header, "X-CSRFToken": client.csrf_token}
    background, settle = None, 1 if ctx.quick else 2
    if waiters:
        # No worker runs: the projection stays behind the log, so every reader waits its full 10 s.
        target = eventstore.last_position()
        with tempfile.NamedTemporaryFile("w", suffix=".lua", dir=ctx.work_dir, delete=False) as script:
            script.write(lua_get(client.cookie_header, f'"/api/analytics/weekly-income/?min_position={target}"'))
        background = subprocess.Popen(
            ["wrk", "-t1", f"-c{waiters}", f"-d{seconds + settle + 2}s", "--timeout", "20s", "-s", script.name, stack.base_url],
            stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        time.sleep(settle)  # every reader connected and waiting before the approvals start
    try:
        return ctx.wrk(stack.base_url, connections=8, seconds=seconds, script=post_each_script(ids, path="/api/transactions/%s/approve/"), headers=headers)
    finally:
        if background:
            background.wait(seconds + 30)


def run(ctx: Context) -> list[Row]:
    from core import eventstore

    events = 4_000 if ctx.quick else 1_000_000
    seconds = 1 if ctx.quick else 10
    fill_started = time.perf_counter()
    fill_log(events, ctx.database_url)
    fill_s = time.perf_counter() - fill_started
    projection_s = project_everything()
    last = eventstore.last_position()
    settle(ctx.database_url)
    r = {}
    with ctx.stack(worker=False) as stack:
        client = ctx.client(stack)
        cookie = {"Cookie": client.cookie_header}
        at = f'"/api/analytics/weekly-income/?at=" .. math.random(1, {last})'
        # Warm, as the weekly income latency run does: each process's first requests open pooled connections
        # and load catalogs; a 1-connection p99 is its 10th slowest of ~1,000 requests, so they would show in it.
        ctx.wrk(stack.base_url, connections=8, seconds=1, script=lua_get(client.cookie_header, at, seed=1))
        r["at_12w_c1"] = ctx.wrk(stack.base_url, connections=1, seconds=seconds, script=lua_get(client.cookie_header, at))
        r["at_12w"] = ctx.wrk(stack.base_url, connections=8, seconds=seconds, script=lua_get(client.cookie_header, at, seed=8))
        year = '"/api/analytics/weekly-income/?from=" .. os.date("!%Y-%m-%d", os.time() - 51*7*86400) .. "&at=" .. math.random(1, ' + str(last) + ")"
        r["at_52w"] = ctx.wrk(stack.base_url, connections=8, seconds=seconds, script=lua_get(client.cookie_header, year, seed=9))
        r["now_12w"] = ctx.wrk(stack.base_url + "/api/analytics/weekly-income/", connections=8, seconds=seconds, headers=cookie)
        group_by = group_by_baseline(last, 5 if ctx.quick else 10, ctx.database_url)
        replay = replay_baseline(last, samples=1 if ctx.quick else 2)
        alone = approve_latency(ctx, stack, client, waiters=0, seconds=seconds)
        waiting = approve_latency(ctx, stack, client, waiters=20 if ctx.quick else 100, seconds=seconds)
    for name, result in r.items():
        if result.non_2xx or result.errors:
            raise RuntimeError(f"{name}: {result.non_2xx} non-2xx responses, {result.errors} socket errors")
    log = f"{last:,} events (fill {fill_s:.0f} s, projection {projection_s:.0f} s)"

    def lat(result) -> str:
        return f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, {result.requests_per_s:.0f} req/s"

    c1 = r["at_12w_c1"]
    return [
        Row("time travel `?at=P`, 12 weeks x 3 currencies, 1 connection", lat(c1),
            f"PostgreSQL GROUP BY up to P: p50 {group_by['p50_ms']:.0f} ms", compare(c1.p50_ms, group_by["p50_ms"]),
            "p99 <= 20 ms", c1.p99_ms <= 20, log),
        Row("time travel `?at=P`, 12 weeks x 3 currencies, 8 connections", lat(r["at_12w"]),
            f"replay into pandas (before): p50 {replay['p50_ms']:.0f} ms", compare(r["at_12w"].p50_ms, replay["p50_ms"]),
            "", None, log),
        Row("time travel `?at=P`, 52 weeks x 3 currencies, 8 connections", lat(r["at_52w"]),
            f"current weekly income, 12 weeks: {lat(r['now_12w'])}", f"{r['at_52w'].p50_ms / r['now_12w'].p50_ms:.1f}x the p50",
            "", None, "same server, same run"),
        Row(f"approve, 8 connections, {20 if ctx.quick else 100} readers waiting on `min_position`", lat(waiting),
            f"nobody waiting: {lat(alone)}", f"{waiting.p99_ms / alone.p99_ms:.1f}x the p99", "", None,
            "readers hold no pooled connection"),
    ]


if __name__ == "__main__":
    from bench.harness import main

    main(run)
