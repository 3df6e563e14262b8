"""Time travel and read-your-writes on a 1M-event log, loaded by wrk; writes bench/RESULTS-time-travel.md.

Run with `make bench` (or `.venv/bin/python bench/time_travel.py`; QUICK=1 for a 20k-event log).
Uses its own database (ledgerpulse_bench_tt, recreated) and Redis database 9. Measures, in one run:
- `?at=P` (random P) through uvicorn against PostgreSQL's own GROUP BY over the log up to P (what a
  user would write instead) and against replaying the log into pandas (what the API did before);
- approve latency under wrk alone, and again while 100 readers wait on `min_position`.
"""
from __future__ import annotations

import io
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import configure_environment, recreate_database  # noqa: E402

QUICK = os.environ.get("QUICK") == "1"
EVENTS = 20_000 if QUICK else 1_000_000
DB_NAME = os.environ.get("BENCH_TT_DB", "ledgerpulse_bench_tt")
REDIS_DB = int(os.environ.get("BENCH_TT_REDIS_DB", "9"))
configure_environment(db_name=DB_NAME, redis_db=REDIS_DB)
CURRENCIES = ("EUR", "USD", "JPY")
WEEKS = 104
WRK_SECONDS = 3 if QUICK else 10


def fill_log(events: int) -> None:
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
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}") as conn:
        with conn.cursor().copy("COPY core_event (stream_id, version, type, data, metadata, recorded_at) FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        conn.execute("ANALYZE core_event")


def project_everything() -> float:
    from analytics.projection import project_next_batch

    started = time.perf_counter()
    while project_next_batch():
        pass
    return time.perf_counter() - started


def wrk(url: str, *, lua: str, connections: int, seconds: int, threads: int = 2) -> dict:
    """Run wrk with a Lua script and parse its latency distribution."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, url],
        capture_output=True, text=True, check=True,
    ).stdout
    os.unlink(script.name)

    def latency(label):
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(match.group(1)), match.group(2)
        return value / {"us": 1000, "ms": 1, "s": 0.001}[unit]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
    }


def lua_get(cookie: str, path_expr: str) -> str:
    return f"""
math.randomseed(7)
wrk.headers["Cookie"] = "{cookie}"
request = function() return wrk.format("GET", {path_expr}) end
"""


def group_by_baseline(last: int, samples: int) -> dict:
    """The query a user would write instead: aggregate the log up to P in PostgreSQL."""
    import psycopg

    sql = """
        SELECT date_trunc('week', (data->>'occurred_at')::timestamptz AT TIME ZONE 'UTC')::date AS week,
               data->>'currency' AS currency, sum((data->>'amount')::numeric), count(*)
        FROM core_event WHERE type = 'TransactionApproved' AND position <= %s
          AND (data->>'occurred_at')::timestamptz >= now() - interval '12 weeks'
        GROUP BY 1, 2"""
    rng, times = random.Random(3), []
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}") as conn:
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


def approve_latency(stack, client, *, waiters: int) -> dict:
    """wrk approving pending transactions (8 connections); optionally 100 more connections waiting on min_position."""
    from core import eventstore
    from transactions import services

    ids = [str(services.transaction_submit(amount="10.00", currency="EUR", actor="bench").id) for _ in range(3000 if not QUICK else 600)]
    cookie, csrf = client.cookie_header, client.http.cookies["csrftoken"]
    ids_lua = ",".join(f'"{i}"' for i in ids)
    approve = f"""
local ids = {{{ids_lua}}}
local n = 0
local threads = 0
setup = function(thread)
  thread:set("me", threads)
  threads = threads + 1
end
wrk.method = "POST"
wrk.body = "{{}}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Cookie"] = "{cookie}"
wrk.headers["X-CSRFToken"] = "{csrf}"
request = function()
  -- Each wrk thread takes every other id, so no id is approved twice.
  n = n + 1
  return wrk.format("POST", "/api/transactions/" .. ids[((2 * n + me) % #ids) + 1] .. "/approve/")
end
"""
    background = None
    if waiters:
        # No worker runs: the projection stays behind the log, so every reader waits its full 10 s.
        target = eventstore.last_position()
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(lua_get(cookie, f'"/api/analytics/weekly-income/?min_position={target}"'))
        background = subprocess.Popen(
            ["wrk", "-t1", f"-c{waiters}", f"-d{WRK_SECONDS + 4}s", "--timeout", "20s", "-s", script.name, stack.base_url],
            stdout=subprocess.PIPE, text=True,
        )
        time.sleep(2)
    result = wrk(stack.base_url, lua=approve, connections=8, seconds=WRK_SECONDS)
    if background:
        background.wait()
    return result


def main():
    recreate_database(db_name=DB_NAME, redis_db=REDIS_DB)
    import django

    django.setup()
    from core import eventstore
    from tests.stack import Browserless, LiveStack, create_live_user

    fill_started = time.perf_counter()
    fill_log(EVENTS)
    fill_seconds = time.perf_counter() - fill_started
    projection_seconds = project_everything()
    last = eventstore.last_position()
    create_live_user("bench", "bench-password-123")
    stack = LiveStack(env=dict(os.environ), log_dir=Path(tempfile.mkdtemp()))
    r = {"events": last, "fill_s": fill_seconds, "projection_s": projection_seconds}
    try:
        stack.start_server()
        client = Browserless(stack.base_url).login("bench", "bench-password-123")
        at = f'"/api/analytics/weekly-income/?at=" .. math.random(1, {last})'
        r["at_12w_c1"] = wrk(stack.base_url, lua=lua_get(client.cookie_header, at), connections=1, threads=1, seconds=WRK_SECONDS)
        r["at_12w"] = wrk(stack.base_url, lua=lua_get(client.cookie_header, at), connections=8, seconds=WRK_SECONDS)
        year = '"/api/analytics/weekly-income/?from=" .. os.date("!%Y-%m-%d", os.time() - 51*7*86400) .. "&at=" .. math.random(1, ' + str(last) + ")"
        r["at_52w"] = wrk(stack.base_url, lua=lua_get(client.cookie_header, year), connections=8, seconds=WRK_SECONDS)
        r["now_12w"] = wrk(stack.base_url, lua=lua_get(client.cookie_header, '"/api/analytics/weekly-income/"'), connections=8, seconds=WRK_SECONDS)
        r["group_by"] = group_by_baseline(last, samples=5 if QUICK else 10)
        r["replay"] = replay_baseline(last, samples=2)
        r["approve_alone"] = approve_latency(stack, client, waiters=0)
        r["approve_waiting"] = approve_latency(stack, client, waiters=100)
    finally:
        stack.stop()
    write_results(r)


def write_results(r):
    def row(name, m, note=""):
        return f"| {name} | {m['p50_ms']:.1f} ms | {m['p99_ms']:.1f} ms | {m['rps']:.0f}/s | {m['non_2xx']} | {note} |"

    lines = [
        "# Time travel and read-your-writes",
        "",
        f"`bench/time_travel.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores: PostgreSQL, Redis and one",
        f"uvicorn process on this machine, load from wrk ({WRK_SECONDS} s per line).",
        f"Log: {r['events']:,} events ({r['events'] // 2:,} approvals over {WEEKS} weeks, 3 currencies), written by COPY in",
        f"{r['fill_s']:.0f} s and projected (rows + one history row per approval) by the real projector in {r['projection_s']:.0f} s.",
        "",
        "| request | p50 | p99 | throughput | non-2xx | note |",
        "|---|---|---|---|---|---|",
        row("`?at=P` random P, 12 weeks x 3 currencies, 1 connection", r["at_12w_c1"], "budget p99 <= 20 ms"),
        row("`?at=P` random P, 12 weeks x 3 currencies, 8 connections", r["at_12w"]),
        row("`?at=P` random P, 52 weeks x 3 currencies", r["at_52w"]),
        row("current weekly income, 12 weeks (no `at`)", r["now_12w"], "same server, same run"),
        row("approve, 8 connections, nobody waiting", r["approve_alone"]),
        row("approve, 8 connections, 100 readers waiting on `min_position`", r["approve_waiting"], "readers hold no pooled connection"),
        "",
        "Baselines for `?at=P`, same log, same run (sequential, in-process):",
        "",
        f"- PostgreSQL `GROUP BY` over the approved events up to P (12 weeks): p50 {r['group_by']['p50_ms']:.0f} ms,"
        f" max {r['group_by']['max_ms']:.0f} ms ({r['group_by']['samples']} queries).",
        f"- replaying the log up to P into pandas (the previous implementation): p50 {r['replay']['p50_ms']:.0f} ms,"
        f" max {r['replay']['max_ms']:.0f} ms ({r['replay']['samples']} replays).",
    ]
    (ROOT / "bench" / "RESULTS-time-travel.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
