"""Approvals under wrk (32 connections) against a plain DRF status update served the same way, same run.

`run(ctx) -> list[Row]` for bench/run.py; alone: `.venv/bin/python -m bench.approvals [--quick]`.
Measures, on the real stack (ctx.stack: the Procfile's `web:` and `worker:` lines):
- POST /api/transactions/{id}/approve/ (JWT bearer, every id approved once): requests/s and p99;
- that every approved transaction was projected exactly once (weekly totals and counts per week and
  currency equal the approved rows' own sums, once the worker has caught up);
- the baseline (bench/baselines/status_site/): a minimal Django + DRF project whose endpoint only
  updates a status column, started with the same server command shape and worker count, on the same
  PostgreSQL; and GET /healthz on both, for calibration.
The product and the baseline alternate (A, B, A, B): the machine is shared and noisy. The server's own
CPU per request (all its processes, from /proc) is in the note: it holds still when the machine is busy.
BENCH_APPROVALS_VARIANTS adds more product servers to the same rounds (before/after; see variants_from_env).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE_DIR = ROOT / "bench" / "baselines" / "status_site"
BIN = ROOT / ".venv" / "bin"
CURRENCIES = (("EUR", 2), ("USD", 2), ("JPY", 0))
CONNECTIONS = 32
TARGET_RPS = 500
TARGET_P99_MS = 250
TARGET_RATIO = 0.6


def approve_script(ids: list[str], *, path: str, headers: dict[str, str], threads: int = 2) -> str:
    """Lua for wrk: the harness's POST-each-id script, with this scenario's headers set first."""
    from bench.harness import lua_string, post_each_script

    header_lines = "\n".join(f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items())
    return header_lines + "\n" + post_each_script(ids, path=path, threads=threads)


# --- processes (until ctx.stack exists: the Procfile's own lines, an inherited listening socket) ----------


def procfile_command(name: str, procfile: Path = ROOT / "Procfile") -> str:
    for line in procfile.read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise LookupError(f"no {name}: line in {procfile}")


@contextmanager
def listening_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    try:
        yield sock
    finally:
        sock.close()


@contextmanager
def process(command: str, *, env: dict[str, str], cwd: Path, log: Path, ready=None, pass_fds=(), timeout: float = 60, wait: bool = True):
    """`sh -c command` in a process group of its own; SIGTERM (then SIGKILL) to the group on exit.

    Yields the Popen; with wait=False its `.wait_ready()` waits for `ready` later (boot side by side)."""
    with log.open("ab") as handle:
        popen = subprocess.Popen(
            ["sh", "-c", command], cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True, pass_fds=pass_fds, stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + timeout

    def wait_ready() -> None:
        while ready is not None and not _probe(ready):
            if popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[:60]}... not ready:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)

    popen.wait_ready = wait_ready
    try:
        if wait:
            wait_ready()
        yield popen
    finally:
        _stop(popen)


def _probe(ready) -> bool:
    try:
        return bool(ready())
    except OSError:
        return False


def _stop(popen: subprocess.Popen) -> None:
    try:
        os.killpg(popen.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        popen.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(popen.pid, signal.SIGKILL)  # stragglers of the group (worker children)
    except ProcessLookupError:
        pass
    popen.wait(timeout=5)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and its descendants (from /proc): cost per request, whatever else runs."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        stats[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += stats.get(current, 0.0)
        todo.extend(children.get(current, []))
    return total


def http_ok(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


@contextmanager
def web_server(*, env: dict[str, str], cwd: Path, log: Path, procfile: Path = ROOT / "Procfile", wait: bool = True):
    """The Procfile's web: line on an inherited socket (LISTEN_FD); yields the base URL and the Popen."""
    with listening_socket() as sock:
        port = sock.getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        with process(
            procfile_command("web", procfile), env={**env, "LISTEN_FD": str(sock.fileno())}, cwd=cwd, log=log,
            pass_fds=(sock.fileno(),), ready=lambda: http_ok(f"{base}/healthz"), wait=wait,
        ) as popen:
            yield base, popen


# --- the product's data ----------------------------------------------------------------------------------


def fill_pending(count: int) -> list[str]:
    """`count` pending transactions (events and read-model rows, written in bulk: bench data, not the append path)."""
    import random

    from core.models import StoredEvent
    from transactions import events
    from transactions.models import Transaction, TransactionStatus
    from decimal import Decimal

    rng = random.Random(10)
    now = datetime.now(timezone.utc)
    rows, txns = [], []
    for i in range(count):
        tid = uuid.uuid4()
        currency, digits = CURRENCIES[i % 3]
        amount = Decimal(rng.randint(100, 999_999)).scaleb(-digits)
        occurred = now - timedelta(seconds=rng.randint(0, 12 * 7 * 86400))
        event = events.submitted(transaction_id=tid, amount=amount, currency=currency, occurred_at=occurred, reference="", description="")
        rows.append(StoredEvent(stream_id=tid, version=1, type=event.type, data=event.data, metadata={"actor": "bench"}, recorded_at=now))
        txns.append((tid, amount, currency, occurred))
    StoredEvent.objects.bulk_create(rows, batch_size=2000)
    Transaction.objects.bulk_create(
        [
            Transaction(id=tid, amount=amount, currency=currency, occurred_at=occurred, status=TransactionStatus.PENDING, version=1,
                        created_at=now, last_position=row.position)
            for (tid, amount, currency, occurred), row in zip(txns, rows)
        ],
        batch_size=2000,
    )
    return [str(t[0]) for t in txns]


def project_backlog() -> None:
    """Project the fill's TransactionSubmitted events here, before the stack starts: bulk-created, they
    wake no projector, so the first approval would otherwise set the worker on all of them during the
    first measured round (tens of thousands of events, on the cores the web needs)."""
    from analytics import projection

    while projection.project_next_batch() is not None:
        pass


def bench_user() -> tuple[str, str]:
    """A finance admin as the contract has them: staff holding transactions.approve_transaction, not a superuser
    (a superuser skips the permission check, which every real approver pays)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    username, password = "bench-approver", "bench-password-" + uuid.uuid4().hex[:8]
    user, _ = get_user_model().objects.get_or_create(username=username, defaults={"is_staff": True, "is_superuser": False})
    user.set_password(password)
    user.save()
    user.user_permissions.add(Permission.objects.get(content_type__app_label="transactions", codename="approve_transaction"))
    return username, password


def access_token(base: str, username: str, password: str) -> str:
    import urllib.request

    request = urllib.request.Request(
        f"{base}/api/auth/token/", data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["access"]


def projection_check(timeout: float = 60) -> tuple[bool, str]:
    """Weekly totals and counts (per week and currency) equal the approved rows' own sums, once caught up."""
    from django.db import connection

    expected_sql = """
        SELECT date_trunc('week', occurred_at AT TIME ZONE 'UTC')::date, currency,
               sum(amount * CASE currency WHEN 'JPY' THEN 1 ELSE 100 END)::numeric(38, 0), count(*)
        FROM transactions_transaction WHERE status = 'approved' GROUP BY 1, 2"""
    actual_sql = "SELECT week_start, currency, total_minor, count FROM analytics_weeklyincome WHERE count > 0"
    deadline = time.monotonic() + timeout
    while True:
        with connection.cursor() as cursor:
            cursor.execute(expected_sql)
            expected = {(w, c): (int(t), n) for w, c, t, n in cursor.fetchall()}
            cursor.execute(actual_sql)
            actual = {(w, c): (int(t), n) for w, c, t, n in cursor.fetchall()}
        if expected == actual:
            return True, f"{sum(n for _, n in expected.values())} approvals, {len(expected)} buckets exact"
        if time.monotonic() > deadline:
            wrong = [k for k in set(expected) | set(actual) if expected.get(k) != actual.get(k)]
            return False, f"{len(wrong)} of {len(expected)} buckets differ after {timeout:.0f} s (first {sorted(wrong)[:3]})"
        time.sleep(0.5)


# --- the baseline ----------------------------------------------------------------------------------------


def baseline_env(db_name: str) -> dict[str, str]:
    env = {
        key: value for key, value in os.environ.items()
        if key in ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "WEB_CONCURRENCY", "VIRTUAL_ENV")
    }
    env.update(
        PATH=f"{BIN}:{os.environ.get('PATH', '')}",
        PYTHONPATH=str(BASELINE_DIR),
        DJANGO_SETTINGS_MODULE="status_site.settings",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db_name}",
        WEB_CONCURRENCY=os.environ.get("WEB_CONCURRENCY", str(os.cpu_count() or 2)),
    )
    return env


def baseline_prepare(db_name: str, count: int) -> list[int]:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db_name}"')
    subprocess.run([str(BIN / "python"), "manage.py", "migrate", "-v", "0"], cwd=BASELINE_DIR, env=baseline_env(db_name), check=True)
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{db_name}") as conn:
        conn.execute("INSERT INTO items_item (status) SELECT 'pending' FROM generate_series(1, %s)", (count,))
        return [row[0] for row in conn.execute("SELECT id FROM items_item ORDER BY id")]


def baseline_signed_in_token(db_name: str) -> str:
    """A staff user (not a superuser) holding items.change_item in the baseline's database, and a bearer token
    for the signed-in variant (STATUS_SITE_AUTH=jwt): stock simplejwt, Django's own permission check."""
    code = (
        "from django.contrib.auth.models import Permission, User\n"
        "from rest_framework_simplejwt.tokens import AccessToken\n"
        "user, _ = User.objects.get_or_create(username='bench-approver', defaults={'is_staff': True})\n"
        "user.user_permissions.add(Permission.objects.get(content_type__app_label='items', codename='change_item'))\n"
        "print(AccessToken.for_user(user))\n"
    )
    done = subprocess.run([str(BIN / "python"), "manage.py", "shell", "-c", code], cwd=BASELINE_DIR,
                          env={**baseline_env(db_name), "STATUS_SITE_AUTH": "jwt"}, check=True, capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]


# --- the scenario ----------------------------------------------------------------------------------------


def variants_from_env() -> dict[str, tuple[Path, Path]]:
    """BENCH_APPROVALS_VARIANTS="name=/path/Procfile[@/path/checkout],...": more product servers measured in the
    same rounds (a before/after comparison: an older checkout's Procfile and code on the same database)."""
    found = {}
    for spec in filter(None, os.environ.get("BENCH_APPROVALS_VARIANTS", "").split(",")):
        name, _, rest = spec.partition("=")
        procfile, _, checkout = rest.partition("@")
        found[name] = (Path(procfile), Path(checkout) if checkout else ROOT)
    return found


def backend_cpu_seconds(db_name: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to `db_name` (the server's side of a request)."""
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        pids = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (db_name,))]
    return {pid: tree_cpu_seconds(pid) for pid in pids}


def _measured(web_pid: int, load, *, worker_pid: int | None = None, db_name: str | None = None):
    """The load's WrkResult, with the CPU per request of the web processes (and of the worker and the
    database's PostgreSQL backends, when given: they share the machine's two cores with the web)."""
    before = tree_cpu_seconds(web_pid)
    worker_before = tree_cpu_seconds(worker_pid) if worker_pid else 0.0
    backends_before = backend_cpu_seconds(db_name) if db_name else {}
    result = load()
    requests = max(1, result.requests)
    result.cpu_ms_per_request = (tree_cpu_seconds(web_pid) - before) * 1000 / requests
    if worker_pid:
        result.worker_cpu_ms_per_request = (tree_cpu_seconds(worker_pid) - worker_before) * 1000 / requests
    if db_name:
        after = backend_cpu_seconds(db_name)
        result.db_cpu_ms_per_request = sum(cpu - backends_before.get(pid, 0.0) for pid, cpu in after.items()) * 1000 / requests
    return result


def run(ctx) -> list:
    """Approvals (ours, then the baseline, alternating), /healthz on both, then the projection check."""
    import statistics
    import threading
    from contextlib import ExitStack

    seconds = 2 if ctx.quick else 10
    rounds = int(os.environ.get("BENCH_APPROVALS_ROUNDS", "1" if ctx.quick else "3"))
    variants = variants_from_env()
    # Enough ids that no request repeats one, even at thousands a second.
    per_round = 3000 if ctx.quick else 15_000
    warm_up = 1500  # ids approved in a 1-second run per server before measuring (imports, pools, caches)
    ids = iter(fill_pending((per_round * rounds + warm_up) * (1 + len(variants))))
    project_backlog()
    username, password = bench_user()
    baseline_db = f"{ctx.db_name}_status_site"
    base_ids = iter(baseline_prepare(baseline_db, (per_round * rounds + warm_up) * 2))
    signed_in_token = baseline_signed_in_token(baseline_db)
    signed_in_headers = {"Authorization": f"Bearer {signed_in_token}"}
    names = ["ours", *variants]
    results: dict[str, list] = {name: [] for name in [*names, "baseline", "baseline_signed_in", *(f"{n}_healthz" for n in names), "baseline_healthz"]}
    profiles = []
    with ExitStack() as running:
        # The baseline and any variants boot while the stack does.
        booting = []
        baseline_base, baseline_web = running.enter_context(
            web_server(env=baseline_env(baseline_db), cwd=BASELINE_DIR, log=Path(ctx.work_dir) / "baseline.log",
                       procfile=BASELINE_DIR / "Procfile", wait=False)
        )
        booting.append(baseline_web)
        # The same site with a sign-in like ours (a JWT bearer, a staff user's permission): what the gap is made of.
        signed_in_base, signed_in_web = running.enter_context(
            web_server(env={**baseline_env(baseline_db), "STATUS_SITE_AUTH": "jwt"}, cwd=BASELINE_DIR,
                       log=Path(ctx.work_dir) / "baseline-signed-in.log", procfile=BASELINE_DIR / "Procfile", wait=False)
        )
        booting.append(signed_in_web)
        env = ctx.stack_env()
        others = {}
        for name, (procfile, checkout) in variants.items():
            base, popen = running.enter_context(
                web_server(env={**env, "PYTHONPATH": str(checkout)}, cwd=checkout, log=Path(ctx.work_dir) / f"web-{name}.log",
                           procfile=procfile, wait=False)
            )
            others[name] = (base, popen.pid)
            booting.append(popen)
        stack = running.enter_context(ctx.stack())
        for popen in booting:
            popen.wait_ready()
        servers = {"ours": (stack.base_url, stack.processes["web"].pid), **others}
        token = access_token(stack.base_url, username, password)
        for name, (base, pid) in servers.items():
            chunk = [next(ids) for _ in range(warm_up)]
            script = approve_script(chunk, path="/api/transactions/%s/approve/", headers={"Authorization": f"Bearer {token}"})
            ctx.wrk(base, connections=CONNECTIONS, seconds=1, script=script, threads=2)
        script = approve_script([str(next(base_ids)) for _ in range(warm_up)], path="/items/%s/approve/", headers={})
        ctx.wrk(baseline_base, connections=CONNECTIONS, seconds=1, script=script, threads=2)
        script = approve_script([str(next(base_ids)) for _ in range(warm_up)], path="/items/%s/approve/", headers=signed_in_headers)
        ctx.wrk(signed_in_base, connections=CONNECTIONS, seconds=1, script=script, threads=2)
        for round_ in range(rounds):
            for name, (base, pid) in servers.items():
                chunk = [next(ids) for _ in range(per_round)]
                script = approve_script(chunk, path="/api/transactions/%s/approve/", headers={"Authorization": f"Bearer {token}"})
                profiler = None
                raw_dir = os.environ.get("BENCH_APPROVALS_PROFILE_RAW")
                if raw_dir and round_ == rounds - 1:
                    # By hand: collapsed stacks of every product server (before/after top frames).
                    subprocess.Popen(
                        [str(BIN / "py-spy"), "record", "--subprocesses", "--pid", str(pid), "--duration", str(seconds - 1),
                         "--rate", "97", "--format", "raw", "--output", str(Path(raw_dir) / f"approvals-{name}.txt")],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                    )
                elif name == "ours" and round_ == rounds - 1 and not ctx.quick:
                    # Where the time goes, kept next to the results (bench/profiles/approvals.svg).
                    profiler = threading.Thread(target=lambda: profiles.append(ctx.profile(pid, seconds - 1, "approvals")))
                    profiler.start()
                results[name].append(_measured(pid, lambda: ctx.wrk(base, connections=CONNECTIONS, seconds=seconds, script=script, threads=2),
                                               worker_pid=stack.processes["worker"].pid, db_name=ctx.db_name))
                if profiler is not None:
                    profiler.join()
            base_chunk = [str(next(base_ids)) for _ in range(per_round)]
            script = approve_script(base_chunk, path="/items/%s/approve/", headers={})
            results["baseline"].append(
                _measured(baseline_web.pid, lambda: ctx.wrk(baseline_base, connections=CONNECTIONS, seconds=seconds, script=script, threads=2),
                          db_name=baseline_db)
            )
            script = approve_script([str(next(base_ids)) for _ in range(per_round)], path="/items/%s/approve/", headers=signed_in_headers)
            results["baseline_signed_in"].append(
                _measured(signed_in_web.pid, lambda: ctx.wrk(signed_in_base, connections=CONNECTIONS, seconds=seconds, script=script, threads=2),
                          db_name=baseline_db)
            )
            for name, (base, pid) in servers.items():
                results[f"{name}_healthz"].append(
                    _measured(pid, lambda: ctx.wrk(f"{base}/healthz", connections=CONNECTIONS, seconds=max(1, seconds / 2), threads=2))
                )
            results["baseline_healthz"].append(
                _measured(baseline_web.pid, lambda: ctx.wrk(f"{baseline_base}/healthz", connections=CONNECTIONS, seconds=max(1, seconds / 2), threads=2))
            )
        projected, projection_note = projection_check()

    for name, runs in results.items():
        print(f"[approvals] {name}: " + ", ".join(
            f"{r.requests_per_s:.0f}/s p50 {r.p50_ms:.0f} p99 {r.p99_ms:.0f} ms non-2xx {r.non_2xx} errors {r.errors}"
            + "".join(f" {label} {getattr(r, attr):.2f} ms/req" for label, attr in (
                ("cpu", "cpu_ms_per_request"), ("worker", "worker_cpu_ms_per_request"), ("db", "db_cpu_ms_per_request"))
                if hasattr(r, attr))
            for r in runs), file=sys.stderr)

    def median(name: str, field: str) -> float:
        return statistics.median(getattr(r, field) for r in results[name])

    m = {
        "ours_rps": median("ours", "requests_per_s"),
        "ours_p99": median("ours", "p99_ms"),
        "ours_cpu": median("ours", "cpu_ms_per_request"),
        "ours_non_2xx": sum(r.non_2xx + r.errors for r in results["ours"]),
        "baseline_rps": median("baseline", "requests_per_s"),
        "baseline_p99": median("baseline", "p99_ms"),
        "baseline_cpu": median("baseline", "cpu_ms_per_request"),
        "ours_worker_cpu": median("ours", "worker_cpu_ms_per_request"),
        "ours_db_cpu": median("ours", "db_cpu_ms_per_request"),
        "baseline_db_cpu": median("baseline", "db_cpu_ms_per_request"),
        "baseline_non_2xx": sum(r.non_2xx + r.errors for r in results["baseline"]),
        "signed_in_rps": median("baseline_signed_in", "requests_per_s"),
        "signed_in_cpu": median("baseline_signed_in", "cpu_ms_per_request"),
        "signed_in_db_cpu": median("baseline_signed_in", "db_cpu_ms_per_request"),
        "signed_in_non_2xx": sum(r.non_2xx + r.errors for r in results["baseline_signed_in"]),
        "ours_healthz": median("ours_healthz", "requests_per_s"),
        "ours_healthz_cpu": median("ours_healthz", "cpu_ms_per_request"),
        "baseline_healthz": median("baseline_healthz", "requests_per_s"),
        "baseline_healthz_cpu": median("baseline_healthz", "cpu_ms_per_request"),
        "projected": projected,
        "projection_note": projection_note,
        "seconds": seconds,
        "rounds": rounds,
        "workers": stack.env.get("WEB_CONCURRENCY") or str(os.cpu_count()),
        "profile": profiles[0] if profiles else None,
    }
    from bench.harness import Row

    return _rows(m, Row)


def _rows(m: dict, Row) -> list:
    ratio = m["ours_rps"] / m["baseline_rps"] if m["baseline_rps"] else 0.0
    shape = f"wrk -c{CONNECTIONS}, medians of {m['rounds']} x {m['seconds']} s interleaved with the baseline, {m['workers']} web processes"
    profile = f"; profile {Path(m['profile']).relative_to(ROOT)}" if m.get("profile") and str(m["profile"]).startswith(str(ROOT)) else ""
    return [
        Row(
            "approve: requests/s (wrk -c32, JWT)",
            f"{m['ours_rps']:,.0f} req/s",
            f"plain DRF status update: {m['baseline_rps']:,.0f} req/s",
            f"{ratio:.2f}x",
            f">= {TARGET_RPS}/s and >= {TARGET_RATIO}x",
            m["ours_rps"] >= TARGET_RPS and ratio >= TARGET_RATIO and m["ours_non_2xx"] == 0,
            f"{shape}; server CPU {m['ours_cpu']:.2f} vs {m['baseline_cpu']:.2f} ms/request, PostgreSQL backends "
            f"{m['ours_db_cpu']:.2f} vs {m['baseline_db_cpu']:.2f}, projector worker {m['ours_worker_cpu']:.2f}; "
            f"non-2xx/errors ours {m['ours_non_2xx']}, baseline {m['baseline_non_2xx']}{profile}",
        ),
        Row(
            "approve: requests/s against the same DRF status update with a sign-in like ours (not the target's baseline)",
            f"{m['ours_rps']:,.0f} req/s",
            f"DRF status update, stock simplejwt bearer and a staff user's model permission: {m['signed_in_rps']:,.0f} req/s",
            f"{m['ours_rps'] / m['signed_in_rps']:.2f}x" if m["signed_in_rps"] else "-",
            "-",
            None,
            f"same rounds and shape; its server CPU {m['signed_in_cpu']:.2f} ms/request, PostgreSQL backends "
            f"{m['signed_in_db_cpu']:.2f}; non-2xx/errors {m['signed_in_non_2xx']}",
        ),
        Row(
            "approve: p99 latency (wrk -c32)",
            f"p99 {m['ours_p99']:.0f} ms",
            f"plain DRF status update: p99 {m['baseline_p99']:.0f} ms",
            f"{m['ours_p99'] / m['baseline_p99']:.2f}x" if m["baseline_p99"] else "-",
            f"<= {TARGET_P99_MS} ms",
            m["ours_p99"] <= TARGET_P99_MS,
            shape,
        ),
        Row(
            "approve: every approval projected exactly once",
            "exact" if m["projected"] else "WRONG",
            "-",
            "-",
            "weekly totals = sum of approved",
            m["projected"],
            m["projection_note"],
        ),
        Row(
            "GET /healthz (calibration)",
            f"{m['ours_healthz']:,.0f} req/s",
            f"minimal Django project: {m['baseline_healthz']:,.0f} req/s",
            f"{m['ours_healthz'] / m['baseline_healthz']:.2f}x" if m["baseline_healthz"] else "-",
            "-",
            None,
            f"same server command shape and worker count, wrk -c{CONNECTIONS}; server CPU {m['ours_healthz_cpu']:.2f} vs "
            f"{m['baseline_healthz_cpu']:.2f} ms/request",
        ),
    ]


if __name__ == "__main__":
    from bench.harness import main

    sys.exit(main(run))
