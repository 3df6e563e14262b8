"""Latency: approve -> weekly_income.updated on a socket (idle and at 200/s), projection cost vs history, weekly income p99.

`.venv/bin/python -m bench.latency [--quick]` prints its rows; `run(ctx)` is what bench/run.py calls.
Every load generator runs in a process of its own: the paced approvals and the weekly income load are
wrk (paced_approvals_script, harness.PACING_LUA), the websocket listener and the floor's server are
child processes of this module (`--listener`, `--floor-server`).
"""
from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import Context, Row, compare  # noqa: E402

WEEKS = 52
CURRENCIES = ("EUR", "JPY", "USD")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * (len(ordered) - 1)))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# --- data -------------------------------------------------------------------------------------


def generate_history(events: int, *, weeks: int = WEEKS) -> None:
    """About `events` events of history, already projected: transactions spread over `weeks` weeks and
    three currencies, each submitted; nine in ten approved in this week, the rest still pending.

    Written with SQL (events, read-model rows, weekly income with its history rows, the review queue's
    rows, the checkpoints) in seconds, the same rows the projector would have written for them. Every
    approval is timed (its submission is in the log) and decided this week, as a live system's are:
    the review queue's week holds them all, the size that made its per-batch work grow before.
    """
    from django.db import connection, transaction

    from analytics import registry
    from analytics.selectors import current_week_start

    first_week = current_week_start() - timedelta(weeks=weeks - 1)
    # n transactions make n submissions and 0.9 n approvals: 1.9 n events.
    count = max(10, events * 10 // 19)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            """
            CREATE TEMP TABLE gen ON COMMIT DROP AS
            SELECT g AS n, gen_random_uuid() AS id, g %% 10 <> 0 AS approved,
                   (ARRAY['EUR','JPY','USD'])[1 + g %% 3] AS currency,
                   (%s::date + ((g %% (%s * 7)) || ' days')::interval + interval '12 hours') AT TIME ZONE 'UTC' AS occurred_at,
                   CASE WHEN g %% 3 = 1 THEN 100 + g %% 50 ELSE 1 + g %% 50 END AS units,
                   -- whole seconds from submission to approval: a minute to a day, spread
                   60 + (g::bigint * 7919) %% 86400 AS waited,
                   now() AS decided_at
            FROM generate_series(1, %s) g
            """,
            [first_week, weeks, count],
        )
        cur.execute(
            """
            INSERT INTO transactions_transaction (id, amount, currency, occurred_at, reference, description, status, version,
                created_at, decided_at, decided_by, decision_reason, last_position)
            SELECT id, units, currency, occurred_at, '', '', CASE WHEN approved THEN 'approved' ELSE 'pending' END,
                   CASE WHEN approved THEN 2 ELSE 1 END, decided_at - waited * interval '1 second',
                   CASE WHEN approved THEN decided_at END, CASE WHEN approved THEN 'bench' ELSE '' END, '', 0 FROM gen
            """
        )
        cur.execute(
            """
            INSERT INTO core_event (stream_id, version, type, data, metadata, recorded_at)
            SELECT id, v.version, v.type,
                   jsonb_build_object('transaction_id', id::text,
                       'amount', CASE WHEN currency = 'JPY' THEN units::text ELSE units::text || '.00' END,
                       'currency', currency, 'occurred_at', to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'))
                   || CASE WHEN v.version = 1 THEN jsonb_build_object('reference', '', 'description', '')
                           ELSE jsonb_build_object('reason', '') END,
                   jsonb_build_object('actor', CASE WHEN v.version = 1 THEN 'bench-clerk' ELSE 'bench' END),
                   CASE WHEN v.version = 1 THEN decided_at - waited * interval '1 second' ELSE decided_at END
            FROM gen CROSS JOIN (VALUES (1, 'TransactionSubmitted'), (2, 'TransactionApproved')) AS v (version, type)
            WHERE v.version = 1 OR approved
            ORDER BY v.version, n
            """
        )
        cur.execute(
            """
            INSERT INTO analytics_weeklyincomehistory (week_start, currency, position, total_minor, count,
                                                       gross_minor, reversed_minor, reversed_count)
            SELECT week_start, currency, position,
                   sum(minor) OVER w, count(*) OVER w, sum(minor) OVER w, 0, 0
            FROM (
                SELECT e.position, e.data->>'currency' AS currency,
                       date_trunc('week', (e.data->>'occurred_at')::timestamptz AT TIME ZONE 'UTC')::date AS week_start,
                       CASE WHEN e.data->>'currency' = 'JPY' THEN (e.data->>'amount')::numeric
                            ELSE (e.data->>'amount')::numeric * 100 END AS minor
                FROM core_event e WHERE e.type = 'TransactionApproved'
                  AND e.position > (SELECT coalesce(max(position), 0) FROM analytics_weeklyincomehistory)
            ) a
            WINDOW w AS (PARTITION BY week_start, currency ORDER BY position)
            """
        )
        cur.execute("DELETE FROM analytics_weeklyincome")
        cur.execute(
            """
            INSERT INTO analytics_weeklyincome (week_start, currency, total_minor, count, last_position,
                                                gross_minor, reversed_minor, reversed_count)
            SELECT DISTINCT ON (week_start, currency) week_start, currency, total_minor, count, position,
                   gross_minor, reversed_minor, reversed_count
            FROM analytics_weeklyincomehistory ORDER BY week_start, currency, position DESC
            """
        )
        write_review_queue(cur, current_week_start())
        cur.execute(
            """
            INSERT INTO analytics_projectioncheckpoint (name, position, config, updated_at)
            SELECT name, (SELECT max(position) FROM core_event), config, now() FROM unnest(%s::text[], %s::text[]) AS p (name, config)
            ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, config = EXCLUDED.config
            """,
            # Every registered projection starts at the head: what it would have written is written above.
            [[p.name for p in registry.projections()], [p.config() for p in registry.projections()]],
        )
    with connection.cursor() as cur:
        cur.execute("ANALYZE")


def write_review_queue(cur, week: date) -> None:
    """The review queue's rows for `gen` (generate_history): pending rows, one decision row per approval
    (all in `week`, by "bench"), the week's counts and the admin's; the week's figures through the
    projection's own recount (analytics.review_queue.recount_from_rows), as a rebuild computes them."""
    from analytics.review_queue import recount_from_rows

    cur.execute(
        """
        INSERT INTO analytics_reviewqueuepending (transaction_id, submitted_at, position)
        SELECT g.id, e.recorded_at, e.position FROM gen g JOIN core_event e ON e.stream_id = g.id AND e.version = 1
        WHERE NOT g.approved
        """
    )
    cur.execute(
        """
        INSERT INTO analytics_reviewqueuedecision (position, transaction_id, week_start, kind, actor, seconds)
        SELECT e.position, g.id, %s, 'approved', 'bench', g.waited
        FROM gen g JOIN core_event e ON e.stream_id = g.id AND e.version = 2
        """,
        [week],
    )
    cur.execute(
        """
        INSERT INTO analytics_reviewqueueadminweek (week_start, actor, decisions)
        SELECT week_start, actor, count(*) FROM analytics_reviewqueuedecision GROUP BY week_start, actor
        """
    )
    recount_from_rows()


def append_submissions(count: int) -> list[str]:
    """`count` transactions submitted this week, EUR, committed (not projected); their ids."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            """
            WITH gen AS (SELECT g, gen_random_uuid() AS id FROM generate_series(1, %s) g),
            t AS (INSERT INTO transactions_transaction (id, amount, currency, occurred_at, reference, description, status,
                    version, created_at, decided_at, decided_by, decision_reason, last_position)
                  SELECT id, 10, 'EUR', now(), '', '', 'pending', 1, now(), NULL, '', '', 0 FROM gen)
            INSERT INTO core_event (stream_id, version, type, data, metadata, recorded_at)
            SELECT id, 1, 'TransactionSubmitted', jsonb_build_object('transaction_id', id::text, 'amount', '10.00',
                   'currency', 'EUR', 'occurred_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'),
                   'reference', '', 'description', ''),
                   '{"actor": "bench-clerk"}'::jsonb, now() - interval '90 seconds'
            FROM gen ORDER BY g
            RETURNING stream_id
            """,
            [count],
        )
        return [str(row[0]) for row in cur.fetchall()]


def append_approvals(ids: list[str]) -> None:
    """Approve these submitted transactions, committed (not projected)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            """
            WITH t AS (UPDATE transactions_transaction SET status = 'approved', version = 2, decided_at = now(), decided_by = 'bench'
                       WHERE id = ANY(%s::uuid[]) RETURNING id)
            INSERT INTO core_event (stream_id, version, type, data, metadata, recorded_at)
            SELECT id, 2, 'TransactionApproved', jsonb_build_object('transaction_id', id::text, 'amount', '10.00',
                   'currency', 'EUR', 'occurred_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'), 'reason', ''),
                   '{"actor": "bench"}'::jsonb, now()
            FROM unnest(%s::uuid[]) WITH ORDINALITY AS a (id, n) ORDER BY n
            """,
            [ids, ids],
        )


def submit_pending(count: int, currency: str = "EUR") -> list[str]:
    """`count` pending transactions through the submit command (so they are real), this week."""
    from decimal import Decimal

    from transactions import services

    now = datetime.now(timezone.utc)
    return [
        # Submitted by a clerk: the harness's user ("bench") approves them, and nobody approves their own submission.
        str(services.transaction_submit(actor="bench-clerk", amount=Decimal("12.50"), currency=currency, occurred_at=now).id)
        for _ in range(count)
    ]


# --- scenario: projection cost per approval vs history -------------------------------------------


def cost_child(database_url: str, events: int) -> None:
    """Child process: a database with `events` of projected history; times one projector batch per command.

    Reads "single" / "batch" lines on stdin and answers seconds per approval; "quit" ends it.
    """
    os.environ["DATABASE_URL"] = database_url
    os.environ["DATABASE_POOL"] = "false"
    import django

    django.setup()
    from django.db import connection

    from analytics.projection import project_next_batch

    generate_history(events)
    with connection.cursor() as cur:
        # Settle the new rows now, so autovacuum does not start in the middle of the samples.
        cur.execute("VACUUM ANALYZE")

    def timed(batch: int) -> float:
        # The submissions are projected first (untimed); the approvals' projection is what is timed:
        # each resolves a pending row and adds a timed decision to this week's.
        ids = append_submissions(batch)
        while project_next_batch():
            pass
        append_approvals(ids)
        started = time.perf_counter()
        while project_next_batch():
            pass
        return (time.perf_counter() - started) / batch

    timed(1), timed(1000)  # warm
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        print(timed(1 if command == "single" else 1000), flush=True)


def projection_cost(ctx: Context, *, short: int, long: int, samples: int) -> dict:
    """Seconds per approval for one-approval batches (the idle case) and 1,000-approval batches, after
    `short` and after `long` events of history: two databases, one child process each, sampled
    alternately (A, B, B, A, ...) so that machine noise hits both alike. No worker runs meanwhile."""
    import psycopg
    from django.db import connection

    from bench.harness import PG

    connection.close()
    if hasattr(connection, "close_pool"):
        connection.close_pool()
    names = {"short": f"{ctx.db_name}_short", "long": f"{ctx.db_name}_long"}
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
        for name in names.values():
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{ctx.db_name}"')
    children = {
        label: subprocess.Popen(
            [sys.executable, "-m", "bench.latency", "--cost-child", f"{PG}/{names[label]}", str(events)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for label, events in (("short", short), ("long", long))
    }
    try:
        for child in children.values():
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("a projection-cost child failed to start")
        result = {label: {"single": [], "batch": []} for label in children}
        for i in range(samples):
            order = ("short", "long") if i % 2 == 0 else ("long", "short")
            kinds = ("single", "batch") if i < 6 else ("single",)
            for kind in kinds:
                for label in order:
                    children[label].stdin.write(f"{kind}\n")
                    children[label].stdin.flush()
                    result[label][kind].append(float(children[label].stdout.readline()))
        for child in children.values():
            child.stdin.write("quit\n")
            child.stdin.flush()
    finally:
        for child in children.values():
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
            for name in names.values():
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {label: {kind: statistics.median(values) for kind, values in kinds.items()} for label, kinds in result.items()}


# --- scenario: approve -> socket, idle -------------------------------------------------------------


def wait_caught_up(timeout: float = 60) -> None:
    from analytics.selectors import projection_position
    from core import eventstore

    deadline = time.monotonic() + timeout
    while projection_position() < eventstore.last_position():
        if time.monotonic() > deadline:
            raise RuntimeError("the projection did not catch up")
        time.sleep(0.05)


class KeepAlive:
    """One keep-alive HTTP connection (TCP_NODELAY) that sends the session cookie and CSRF token, as a dashboard's
    fetch() does. The `requests` session it replaced spent 4-5 ms of client CPU per approval on this machine,
    which a latency row would count as the server's."""

    def __init__(self, base_url: str, client):
        import socket
        from urllib.parse import urlsplit

        url = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=15)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.headers = {"Cookie": client.cookie_header, "X-CSRFToken": client.csrf_token, "Content-Type": "application/json"}

    def post(self, path: str, body: bytes = b"{}") -> tuple[int, bytes]:
        self.conn.request("POST", path, body=body, headers=self.headers)
        answer = self.conn.getresponse()
        return answer.status, answer.read()

    def close(self) -> None:
        self.conn.close()


def idle_pause() -> float:
    """Seconds between one approval's frame and the next approval, so that each is a lone commit: past the
    projector's coalescing window (analytics.wakeup.MIN_GAP_MS, counted from the previous run's start), a
    commit wakes a run at once; inside it, the run waits for the rest of the window to gather a batch."""
    from analytics.wakeup import MIN_GAP_MS

    return MIN_GAP_MS / 1000 + 0.005


def approve_to_socket_idle(stack, client, count: int, *, pause: float | None = None) -> dict:
    """Sequential approvals over one keep-alive connection, one socket: send -> response -> frame, `pause`
    (default idle_pause()) after each frame."""
    from websockets.sync.client import connect

    ids = submit_pending(count)
    wait_caught_up()
    total, response, after = [], [], []
    http_conn = KeepAlive(stack.base_url, client)
    with connect(stack.ws_url, origin=stack.base_url, additional_headers={"Cookie": client.cookie_header}) as ws:
        ws.recv(timeout=10)  # snapshot
        for txn_id in ids:
            started = time.perf_counter()
            status, body = http_conn.post(f"/api/transactions/{txn_id}/approve/")
            answered = time.perf_counter()
            assert status == 200, (status, body[:300])
            position = json.loads(body)["position"]
            while True:
                message = json.loads(ws.recv(timeout=10))
                if message["type"] == "weekly_income.updated" and message["seq"] >= position:
                    break
            done = time.perf_counter()
            total.append(done - started)
            response.append(answered - started)
            after.append(done - answered)
            time.sleep(idle_pause() if pause is None else pause)
    http_conn.close()
    return {"total": total, "response": response, "after": after}


def profiled(ctx: Context, pid: int, seconds: float, name: str, work) -> str:
    """py-spy on `pid` (and its children) while `work()` runs, after the measurements (py-spy costs CPU):
    the note that names the flame graph, or why there is none."""
    if ctx.quick:
        return ""
    result: dict = {}

    def record():
        try:
            result["path"] = ctx.profile(pid, seconds, name)
        except Exception as exc:  # noqa: BLE001 - a missing profile must not lose the measurements
            result["error"] = str(exc)[:200]

    thread = threading.Thread(target=record)
    thread.start()
    time.sleep(0.5)  # py-spy attaches
    try:
        work()
    finally:
        thread.join()
    return f"; profile: bench/profiles/{name}.svg" if "path" in result else f"; no profile ({result.get('error')})"


# --- the floor: a bare Redis PUBLISH to a plain websockets server ---------------------------------


def floor_server(redis_url: str, channel: str) -> None:
    """Child process: a `websockets` server that pushes every message of a Redis channel to its clients."""
    import asyncio

    import redis.asyncio as aioredis
    from websockets.asyncio.server import broadcast, serve

    async def main():
        clients = set()

        async def handler(ws):
            clients.add(ws)
            try:
                await ws.wait_closed()
            finally:
                clients.discard(ws)

        pubsub = aioredis.Redis.from_url(redis_url).pubsub()
        await pubsub.subscribe(channel)
        async with serve(handler, "127.0.0.1", 0, compression=None) as server:
            print(server.sockets[0].getsockname()[1], flush=True)
            async for message in pubsub.listen():
                if message["type"] == "message":
                    broadcast(clients, message["data"].decode())

    asyncio.run(main())


def publish_floor(count: int) -> list[float]:
    import redis
    from websockets.sync.client import connect

    redis_url = os.environ["REDIS_URL"]
    channel = f"bench-floor-{uuid.uuid4().hex[:8]}"
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.latency", "--floor-server", redis_url, channel],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        port = int(server.stdout.readline())
        publisher = redis.Redis.from_url(redis_url)
        samples = []
        with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
            for i in range(count):
                started = time.perf_counter()
                publisher.publish(channel, json.dumps({"type": "weekly_income.updated", "seq": i}))
                ws.recv(timeout=10)
                samples.append(time.perf_counter() - started)
                time.sleep(0.005)
        return samples
    finally:
        server.kill()
        server.wait(10)


# --- scenario: approve -> socket at a paced rate -----------------------------------------------------


def paced_approvals_script(ids: list[str], *, rate: float, out: str) -> str:
    """wrk Lua (one thread): approve each id once, one request per slot of 1/rate s on CLOCK_MONOTONIC, whichever
    connection is free (open loop: a request is due at its slot and its latency counts from there, however
    late a busy machine sends it); each answer is written to `out` as "status due_ms answered_ms position"
    on the same clock as Python's time.monotonic(), the position read from the approve's body."""
    from bench.harness import lua_string

    ids_lua = ",".join(lua_string(i) for i in ids)
    return f"""
local ffi = require("ffi")
pcall(ffi.cdef, "typedef struct {{ long tv_sec; long tv_nsec; }} lp_timespec; int clock_gettime(int, lp_timespec *);")
local ts = ffi.new("lp_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC, as time.monotonic()
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local ids = {{{ids_lua}}}
local interval = {1000 / rate:.4f}
local first, reserved, taken, n = nil, 0, 0, 0
local due_of = {{}}
local out = io.open({lua_string(out)}, "w")
out:setvbuf("line")
wrk.method = "POST"
wrk.body = "{{}}"
wrk.headers["Content-Type"] = "application/json"
-- delay() hands each free connection the next slot; request() then takes the earliest slot handed out
-- and not yet used (never a later one: a request is never due after it was sent).
local function reserve(now)
  if first == nil then first = now end
  local slot = first + reserved * interval
  reserved = reserved + 1
  return slot
end
delay = function()
  local now = now_ms()
  local slot = reserve(now)
  if slot > now then return math.floor(slot - now + 0.5) end
  return 0
end
request = function()
  if taken >= reserved then reserve(now_ms()) end
  local due = first + taken * interval
  taken = taken + 1
  n = n + 1
  if n > #ids then n = #ids end  -- past the last id (a run longer than its ids): a 409, counted
  due_of[ids[n]] = due
  return wrk.format(nil, "/api/transactions/" .. ids[n] .. "/approve/")
end
response = function(status, headers, body)
  local now = now_ms()
  local id = body:match('"id"%s*:%s*"([^"]+)"')
  local position = body:match('"position"%s*:%s*(%d+)')
  local due = id and due_of[id]
  out:write(string.format("%d %.3f %.3f %s\\n", status, due or -1, now, position or "-"))
end
"""


def send_paced(ctx: Context, stack, client, ids: list[str], *, rate: float, seconds: float, out: Path) -> list[tuple]:
    """Approve `ids` at `rate` a second with wrk (16 connections, session cookie and CSRF token as the dashboard
    sends them); (due, answered, status, position) per answer, on time.monotonic()'s clock."""
    headers = {"Cookie": client.cookie_header, "X-CSRFToken": client.csrf_token}
    result = ctx.wrk(f"{stack.base_url}/", connections=16, seconds=seconds, headers=headers, timeout_s=15,
                     script=paced_approvals_script(ids, rate=rate, out=str(out)))
    sent = []
    for line in out.read_text().splitlines():
        status, due, answered, position = line.split()
        # A body without the transaction (a problem answer) has no due time of its own: the answer's is used.
        due_s, answered_s = float(due) / 1000, float(answered) / 1000
        sent.append((due_s if due_s >= 0 else answered_s, answered_s, int(status), None if position == "-" else int(position)))
    # wrk's own errors (a refused or reset connection) have no line: they count as sent, status 0, never seen.
    if result.errors:
        last = max((a for _, a, *_ in sent), default=time.monotonic())
        sent += [(last, last, 0, None)] * result.errors
    return sent


def listener(ws_url: str, origin: str, cookie: str, out: str) -> None:
    """Child process: record (time, seq) of every weekly_income.updated frame until stdin closes."""
    from websockets.sync.client import connect

    frames, snapshots = [], 0
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    with connect(ws_url, origin=origin, additional_headers={"Cookie": cookie}) as ws:
        ws.recv(timeout=10)  # snapshot
        print("ready", flush=True)
        while not stop.is_set():
            try:
                text = ws.recv(timeout=0.2)
            except TimeoutError:
                continue
            now = time.monotonic()
            message = json.loads(text)
            if message["type"] == "weekly_income.updated":
                frames.append((now, message["seq"]))
            elif message["type"] == "snapshot":
                snapshots += 1
                frames.append((now, message["seq"]))
    Path(out).write_text(json.dumps({"frames": frames, "snapshots": snapshots}))


def approve_to_socket_paced(ctx: Context, stack, client, *, rate: float, seconds: float) -> dict:
    """Approvals at `rate` per second from wrk (send_paced); a listener process times each one's frame."""
    import bisect

    from analytics.selectors import projection_position

    # More ids than the run can send: wrk stops on time, never for want of an id.
    ids = submit_pending(int(rate * seconds * 1.1) + 20)
    wait_caught_up()
    work = Path(tempfile.mkdtemp(prefix="bench-paced-"))
    cookie = client.cookie_header
    listen = subprocess.Popen(
        [sys.executable, "-m", "bench.latency", "--listener", stack.ws_url, stack.base_url, cookie, str(work / "frames.json")],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert listen.stdout.readline().strip() == "ready"
        sent = send_paced(ctx, stack, client, ids, rate=rate, seconds=seconds, out=work / "answers.txt")
        last = max((p for *_, p in sent if p), default=0)
        deadline = time.monotonic() + 30
        while projection_position() < last and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        listen.stdin.close()
        listen.wait(15)
    frames = sorted(json.loads((work / "frames.json").read_text())["frames"], key=lambda f: f[1])
    seqs = [seq for _, seq in frames]
    latencies, answers, missing = [], [], 0
    for due, answered, status, position in sent:
        answers.append(answered - due)
        if status != 200 or position is None:
            missing += 1
            continue
        i = bisect.bisect_left(seqs, position)
        if i == len(seqs):
            missing += 1
            continue
        latencies.append(frames[i][0] - due)
    span = max(a for _, a, *_ in sent) - min(d for d, *_ in sent)
    return {
        "latencies": latencies,
        "answers": answers,
        "missing": missing,
        "sent": len(sent),
        "rate": len(sent) / span,
        "statuses": sorted({s for _, _, s, _ in sent}),
        # Each projected batch carries one weekly_income.updated for this week's EUR row, at its `through`.
        "batches": len(set(seqs)),
    }


# --- scenario: weekly income at a paced rate ----------------------------------------------------------

def weekly_income_raw_sql(first: date, last: date, count: int) -> list[float]:
    """The floor: the same 156 rows straight from PostgreSQL (one query, no HTTP, no Django)."""
    from django.db import connection

    samples = []
    with connection.cursor() as cur:
        for _ in range(count):
            started = time.perf_counter()
            cur.execute(
                "SELECT week_start, currency, total_minor, count FROM analytics_weeklyincome "
                "WHERE week_start BETWEEN %s AND %s ORDER BY week_start, currency",
                [first, last],
            )
            cur.fetchall()
            samples.append(time.perf_counter() - started)
    return samples


def server_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each process in `pid`'s process group (the web line's workers), from /proc."""
    from scripts.stack import group_members

    seconds = {}
    for member in group_members(os.getpgid(pid)):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        seconds[member] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


# --- the scenario group -----------------------------------------------------------------------------


def run(ctx: Context) -> list[Row]:
    from analytics.selectors import current_week_start

    quick = ctx.quick
    rows: list[Row] = []

    # 1. Projection cost per approval, short vs long history (in this process, before any worker runs).
    short, long = (500, 2_000) if quick else (10_000, 1_000_000)
    cost = projection_cost(ctx, short=short, long=long, samples=4 if quick else 40)
    for kind, label in (("single", "one approval per batch (idle)"), ("batch", "1,000 approvals per batch")):
        ratio = cost["long"][kind] / cost["short"][kind]
        rows.append(Row(
            f"projection cost per approval, {label}, after {long:,} events of history",
            f"{cost['long'][kind] * 1e3:.2f} ms", f"after {short:,} events: {cost['short'][kind] * 1e3:.2f} ms",
            f"{ratio:.2f}x", "<= 1.2x", ratio <= 1.2,
            "median; project_next_batch in two processes on two databases, sampled alternately, no worker running",
        ))

    # The weekly income scenario reads 52 weeks x 3 currencies of history from the stack's database.
    generate_history(short)
    with ctx.stack() as stack:
        client = ctx.client(stack)

        # 2. Idle approve -> socket, against the floor (a bare PUBLISH to a plain websockets server).
        idle = approve_to_socket_idle(stack, client, 10 if quick else 200)
        # The same, each approval 5 ms after the previous one's frame (about 50 a second from one client):
        # inside the projector's coalescing window, so shown beside the idle number, not instead of it.
        close = approve_to_socket_idle(stack, client, 10 if quick else 200, pause=0.005)
        floor = publish_floor(10 if quick else 200)
        p50, p99 = pct(idle["total"], 50), pct(idle["total"], 99)
        note = (f"{len(idle['total'])} sequential, each {idle_pause() * 1000:.0f} ms after the previous frame (past the "
                f"projector's {idle_pause() * 1000 - 5:.0f} ms coalescing window); approve answered p50 "
                f"{ms(pct(idle['response'], 50))}, answer -> frame p50 {ms(pct(idle['after'], 50))}, p99 "
                f"{ms(pct(idle['after'], 99))}; 5 ms after the previous frame instead (inside the window): p50 "
                f"{ms(pct(close['total'], 50))}, p99 {ms(pct(close['total'], 99))}")
        note += profiled(ctx, stack.processes["worker"].pid, 4, "latency-idle-worker",
                         lambda: approve_to_socket_idle(stack, client, 100))
        rows.append(Row("approve -> weekly_income.updated on a socket, idle, p50", f"p50 {ms(p50)}",
                        f"bare Redis PUBLISH -> websockets server -> client: p50 {ms(pct(floor, 50))}",
                        compare(p50, pct(floor, 50)), "<= 15 ms", p50 <= 0.015, note))
        rows.append(Row("approve -> weekly_income.updated on a socket, idle, p99", f"p99 {ms(p99)}",
                        f"bare PUBLISH floor: p99 {ms(pct(floor, 99))}", compare(p99, pct(floor, 99)), "<= 50 ms",
                        p99 <= 0.050))

        # 3. Approve -> socket at 200 approvals a second (open loop, sender and listener in processes of their own).
        paced = approve_to_socket_paced(ctx, stack, client, rate=200, seconds=1 if quick else 10)
        paced_profile = profiled(ctx, stack.processes["web"].pid, 4, "latency-200ps-web",
                                 lambda: approve_to_socket_paced(ctx, stack, client, rate=200, seconds=5))
        lat = paced["latencies"]
        p99 = pct(lat, 99) if lat else float("inf")
        rows.append(Row(
            "approve -> weekly_income.updated at 200 approvals/s, p99", f"p99 {ms(p99)}", "", "", "<= 250 ms",
            p99 <= 0.250 and not paced["missing"] and paced["rate"] >= 190,
            f"{paced['sent']} sent at {paced['rate']:.0f}/s (latency from each one's scheduled time), "
            f"p50 {ms(pct(lat, 50)) if lat else '-'}; approve answered p50 {ms(pct(paced['answers'], 50))}, "
            f"p99 {ms(pct(paced['answers'], 99))}; {paced['missing']} not seen, statuses {paced['statuses']}, "
            f"{paced['batches']} projected batches{paced_profile}",
        ))

        # 4. Weekly income, 52 weeks x 3 currencies, at 200 requests a second (wrk), with a JWT as an API client sends it.
        from bench.approvals import access_token
        from bench.harness import PASSWORD, USER

        last_week = current_week_start()
        first_week = last_week - timedelta(weeks=WEEKS - 1)
        bearer = {"Authorization": f"Bearer {access_token(stack.base_url, USER, PASSWORD)}"}
        report_url = f"{stack.base_url}/api/analytics/weekly-income/?from={first_week}&to={last_week}"
        ctx.wrk(report_url, headers=bearer, connections=8, rate=200, seconds=1)  # warm: every thread's pooled connection
        web_cpu = server_cpu_seconds(stack.processes["web"].pid)
        wrk = ctx.wrk(report_url, headers=bearer, connections=8, rate=200, seconds=2 if quick else 10)
        web_cpu = [after - web_cpu.get(member, 0.0) for member, after in server_cpu_seconds(stack.processes["web"].pid).items()]
        raw = weekly_income_raw_sql(first_week, last_week, 20 if quick else 500)
        wrk_profile = profiled(ctx, stack.processes["web"].pid, 4, "latency-weekly-income-web", lambda: ctx.wrk(
            report_url, headers=bearer, connections=8, rate=200, seconds=5,
        ))
        per_request = sum(web_cpu) / max(1, wrk.requests) * 1000
        # How even the load was: each serving process's share (the supervisor and helpers use next to nothing).
        total_cpu = sum(web_cpu) or 1.0
        shares = "/".join(f"{100 * c / total_cpu:.0f}" for c in sorted(web_cpu, reverse=True) if c >= 0.02 * total_cpu)
        rows.append(Row(
            f"GET weekly income ({WEEKS} weeks x {len(CURRENCIES)} currencies) at 200 req/s, p99", f"p99 {wrk.p99_ms:.1f} ms",
            f"raw SQL of the same rows: p99 {ms(pct(raw, 99))}", compare(wrk.p99_ms / 1000, pct(raw, 99)), "<= 10 ms",
            wrk.p99_ms <= 10 and not wrk.non_2xx and not wrk.errors and wrk.requests_per_s >= 190,
            f"JWT, wrk -c8 {wrk.requests_per_s:.0f} req/s, p50 {wrk.p50_ms:.1f} ms, non-2xx {wrk.non_2xx}, errors {wrk.errors}; "
            f"web CPU {per_request:.2f} ms/request, split {shares}% across its processes{wrk_profile}",
        ))
    return rows


def main(argv: list[str]) -> int:
    """The child processes' entry points, else the harness's single-scenario runner."""
    if argv and argv[0] == "--cost-child":
        cost_child(argv[1], int(argv[2]))
    elif argv and argv[0] == "--floor-server":
        floor_server(*argv[1:3])
    elif argv and argv[0] == "--listener":
        listener(*argv[1:5])
    else:
        from bench.harness import main as run_alone

        return run_alone(run, argv, name="latency")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
