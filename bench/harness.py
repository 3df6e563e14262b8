"""The benchmark harness: Row, Context (the real stack, wrk, py-spy) and the runner of one scenario module.

A scenario module `bench/<name>.py` has `def run(ctx: Context) -> list[Row]` and ends with

    if __name__ == "__main__":
        from bench.harness import main
        main(run)

so `.venv/bin/python -m bench.<name> [--quick]` runs it alone and prints its rows
(`python -m bench.harness bench.<name> [--quick]` does the same for a module without that block).
Before run(ctx) is called, the harness has recreated the scenario's own database (migrated), emptied
its Redis database, pointed this process's environment at both (production settings, DEBUG off)
and set Django up: the scenario may use the ORM and the project's commands directly.

- ctx.quick: tiny sizes (each scenario <= 20 s); ctx.db_name, ctx.database_url, ctx.redis_db, ctx.redis_url.
- ctx.stack(**env): a context manager yielding a started scripts.stack.Stack (the Procfile's web line on a
  reserved port, one Celery worker by default) on this scenario's database and Redis database; keyword
  arguments in capitals are environment variables for its processes (WEB_CONCURRENCY="2", ...).
- ctx.client(stack): a logged-in HTTP client (session cookie + CSRF token: `.cookie_header`, `.csrf_token`).
- ctx.wrk(url, connections=, seconds=, script=, headers=, rate=): wrk with a Lua done() that reports the
  latency distribution; returns a WrkResult.
- compare(ours, baseline): the ratio cell ("3.2x faster", "1.4x slower"; lower_is_better=False: "0.85x").
- ctx.profile(pid, seconds, name): a py-spy flame graph of pid and its children (blocking; run it in a
  thread while the load runs); saved under bench/profiles/ (quick runs: under ctx.work_dir).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.stack import Browserless, Stack, create_live_user, stack_env  # noqa: E402

PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_HOST = "127.0.0.1:6379"
SECRET = "bench-only-secret-key-0123456789abcdef0123456789"
PROFILES = ROOT / "bench" / "profiles"
PY_SPY = ROOT / ".venv" / "bin" / "py-spy"
USER, PASSWORD = "bench", "bench-password-123"

# Each scenario's own Redis database when run alone (make bench runs them one after another).
REDIS_DBS = {"fanout": 10, "approvals": 11, "latency": 12, "rebuild": 9, "time_travel": 15}


@dataclass
class Row:
    """One line of bench/RESULTS.md; every value is already formatted, with its unit."""

    scenario: str
    ours: str
    baseline: str
    ratio: str
    target: str
    met: bool | None  # None: no target
    note: str = ""


@dataclass
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int  # socket errors: connect, read, write, timeout
    non_2xx: int  # responses with a status >= 400 (wrk's own count; a redirect counts as success)
    requests: int = 0
    seconds: float = 0.0
    max_ms: float = 0.0
    output: str = field(default="", repr=False)


def compare(ours: float, baseline: float, *, lower_is_better: bool = True) -> str:
    """The ratio cell: "3.2x faster" / "1.4x slower" (latencies, lower is better) or "0.85x" of a throughput."""
    if not lower_is_better:
        return f"{ours / baseline:.2f}x" if baseline else "n/a"
    if not ours or not baseline:
        return "n/a"
    return f"{baseline / ours:.1f}x faster" if ours <= baseline else f"{ours / baseline:.1f}x slower"


def lua_string(value: str) -> str:
    """A Lua string literal for `value`."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def post_each_script(ids: list[str], *, path: str, threads: int = 1) -> str:
    """wrk Lua: POST `path` % id for each id once (wrk thread t takes ids t, t+threads, ...), body `{}`.

    Headers (auth, CSRF) come from ctx.wrk(headers=...). Past the last id it starts over: the
    answers are then 409s, counted in non_2xx, so a run that outlasts its ids shows it.
    """
    ids_lua = ",".join(lua_string(i) for i in ids)
    return f"""
local ids = {{{ids_lua}}}
local n = 0
local count = 0
setup = function(thread)
  thread:set("me", count)
  count = count + 1
end
wrk.method = "POST"
wrk.body = "{{}}"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local i = n * {threads} + (me or 0) + 1
  n = n + 1
  if i > #ids then i = ((i - 1) % #ids) + 1 end
  return wrk.format("POST", string.format({lua_string(path)}, ids[i]))
end
"""


# Appended to every script: wrk calls done() once, in its main thread, with the merged latency
# histogram (microseconds). Any done() of the scenario's script still runs, after this one.
DONE_LUA = """
local lp_scenario_done = done
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("\\nLPWRK requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d connect=%d read=%d write=%d status=%d timeout=%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
  if lp_scenario_done then lp_scenario_done(summary, latency, requests) end
end
"""


# Pacing (ctx.wrk(rate=...)): the requests of a wrk thread keep to a schedule, one slot every
# INTERVAL ms of the monotonic clock (LuaJIT's ffi: wrk's Lua has no clock of its own), whichever of
# its connections is free. A fixed pause before each request instead would add each answer's latency
# to the period: asked for 200 a second, it reached 168. A request late for its slot goes at once,
# so a slow answer does not lower the rate (wrk's delays are whole milliseconds).
PACING_LUA = """
local lp_ffi = require("ffi")
pcall(lp_ffi.cdef, "typedef struct { long tv_sec; long tv_nsec; } lp_timespec; int clock_gettime(int, lp_timespec *);")
local lp_ts = lp_ffi.new("lp_timespec")
local lp_interval, lp_next = INTERVAL, nil
local function lp_now()
  lp_ffi.C.clock_gettime(1, lp_ts)  -- CLOCK_MONOTONIC
  return tonumber(lp_ts.tv_sec) * 1000 + tonumber(lp_ts.tv_nsec) / 1e6
end
if delay == nil then
  delay = function()
    local now = lp_now()
    if lp_next == nil then lp_next = now end
    local slot = lp_next
    lp_next = lp_next + lp_interval
    if slot > now then return math.floor(slot - now + 0.5) end
    return 0
  end
end
"""


def wrk_script(script: str | Path | None, headers: dict[str, str] | None, interval_ms: float | None) -> str:
    """The Lua wrk runs: headers first (the scenario's script may override them), its script, pacing (one request
    every `interval_ms` per wrk thread), done()."""
    parts = [f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in (headers or {}).items()]
    if script is not None:
        text = str(script)
        parts.append(Path(text).read_text() if text.endswith(".lua") and "\n" not in text else text)
    if interval_ms is not None:
        parts.append(PACING_LUA.replace("INTERVAL", f"{interval_ms:.4f}"))
    parts.append(DONE_LUA)
    return "\n".join(parts)


def parse_wrk(output: str) -> WrkResult:
    """The numbers of the LPWRK line written by DONE_LUA."""
    match = re.search(r"^LPWRK (.*)$", output, re.M)
    if match is None:
        raise RuntimeError(f"wrk printed no LPWRK line (did the script fail?):\n{output[-3000:]}")
    n = {key: int(value) for key, value in (pair.split("=") for pair in match.group(1).split())}
    seconds = n["duration_us"] / 1e6
    return WrkResult(
        requests_per_s=n["requests"] / seconds if seconds else 0.0,
        p50_ms=n["p50_us"] / 1000, p90_ms=n["p90_us"] / 1000, p99_ms=n["p99_us"] / 1000, max_ms=n["max_us"] / 1000,
        errors=n["connect"] + n["read"] + n["write"] + n["timeout"], non_2xx=n["status"],
        requests=n["requests"], seconds=seconds, output=output,
    )


def run_wrk(
    url: str, *, connections: int, seconds: float, script: str | Path | None = None, headers: dict[str, str] | None = None,
    rate: float | None = None, threads: int = 1, timeout_s: float = 10, work_dir: Path | None = None,
) -> WrkResult:
    """wrk against `url` (its path is the default request's); see Context.wrk."""
    threads = max(1, min(threads, connections))
    interval_ms = threads / rate * 1000 if rate else None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", dir=work_dir, delete=False) as handle:
        handle.write(wrk_script(script, headers, interval_ms))
    try:
        completed = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
             "--timeout", f"{max(1, round(timeout_s))}s", "--latency", "-s", handle.name, url],
            capture_output=True, text=True, timeout=seconds + timeout_s + 30, stdin=subprocess.DEVNULL,
        )
    finally:
        os.unlink(handle.name)
    if completed.returncode != 0:
        raise RuntimeError(f"wrk exited with {completed.returncode}:\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}")
    return parse_wrk(completed.stdout + completed.stderr)


@dataclass
class Context:
    """What a scenario gets: its size, its database and Redis database, and the tools (module docstring)."""

    quick: bool
    db_name: str
    redis_db: int
    work_dir: Path
    name: str = "scenario"
    stacks: list[Stack] = field(default_factory=list)
    # One channel-layer prefix for this process and every stack it starts: a message published here
    # reaches their sockets (a stack given CHANNELS_PREFIX=... in its env has its own).
    prefix: str = field(default_factory=lambda: f"lp-bench-{uuid.uuid4().hex[:6]}")

    @property
    def database_url(self) -> str:
        return f"{PG}/{self.db_name}"

    @property
    def redis_url(self) -> str:
        return f"redis://{REDIS_HOST}/{self.redis_db}"

    def stack_env(self, **env: str) -> dict[str, str]:
        """The environment of this scenario's stack processes (production settings, logs at WARNING)."""
        defaults = {"LOG_LEVEL": "WARNING"}
        return stack_env(database_url=self.database_url, redis_url=self.redis_url, secret=SECRET, prefix=self.prefix,
                         **{**defaults, **env})

    @contextlib.contextmanager
    def stack(
        self, *, web: bool = True, worker: bool = True, beat: bool = False, web_concurrency: int | None = None,
        worker_concurrency: int | None = 1, **env: str,
    ) -> Iterator[Stack]:
        """The real stack (scripts/stack.py) on this scenario's database: the Procfile's web line (WEB_CONCURRENCY
        from `web_concurrency`, else the Procfile's default: one process per core) and one Celery worker
        (`worker_concurrency` pool processes), started side by side; stopped, every process group, on exit."""
        log_dir = Path(tempfile.mkdtemp(prefix="stack-", dir=self.work_dir))
        stack = Stack(env=self.stack_env(**env), log_dir=log_dir)
        self.stacks.append(stack)
        try:
            booting = []
            if worker:
                booting.append(stack.start_worker(concurrency=worker_concurrency, wait=False))
            if web:
                booting.append(stack.start_server(concurrency=web_concurrency, wait=False))
            stack.wait_ready(*booting, timeout=60)
            if beat:
                stack.start_beat()
            yield stack
        finally:
            stack.stop()
            self.stacks.remove(stack)

    def client(self, stack: Stack, username: str = USER) -> Browserless:
        """An HTTP client logged in on `stack` as a superuser (created on first use)."""
        from django.contrib.auth import get_user_model

        if not get_user_model().objects.filter(username=username).exists():
            create_live_user(username, PASSWORD)
        return Browserless(stack.base_url).login(username, PASSWORD)

    def wrk(
        self, url: str, *, connections: int, seconds: float, script: str | Path | None = None,
        headers: dict[str, str] | None = None, rate: float | None = None, threads: int = 1, timeout_s: float = 10,
    ) -> WrkResult:
        """Load `url` with wrk (`--latency`, a Lua done() reporting p50/p90/p99, errors and statuses >= 400).

        `script` is Lua source or a path to a .lua file (request/response/setup/done as wrk defines
        them); `headers` are set before it runs. `rate`: requests a second in all, kept to a schedule
        (PACING_LUA) by whichever connection is free; the rate is reached while the connections keep up
        (read requests_per_s). One wrk thread by default: the load generator takes at most one of the
        machine's cores.
        """
        return run_wrk(url, connections=connections, seconds=seconds, script=script, headers=headers, rate=rate,
                       threads=threads, timeout_s=timeout_s, work_dir=self.work_dir)

    def profile(self, pid: int, seconds: float, name: str, *, rate: int = 100) -> Path:
        """py-spy record of `pid` and its children for `seconds` (blocking): a flame graph, bench/profiles/<name>.svg."""
        out_dir = self.work_dir / "profiles" if self.quick else PROFILES
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{name}.svg"
        completed = subprocess.run(
            [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", str(rate),
             "--subprocesses", "--nonblocking", "--format", "flamegraph", "--output", str(path)],
            capture_output=True, text=True, timeout=seconds + 60, stdin=subprocess.DEVNULL,
        )
        if completed.returncode != 0 or not path.exists():
            raise RuntimeError(f"py-spy failed ({completed.returncode}): {completed.stderr[-2000:]}")
        return path

    def close(self) -> None:
        for stack in list(self.stacks):
            stack.stop()


def migrate(database_url: str) -> None:
    """Apply the project's migrations to `database_url` (production settings, like the stack's processes)."""
    env = stack_env(database_url=database_url, redis_url=f"redis://{REDIS_HOST}/0", secret=SECRET, LOG_LEVEL="WARNING")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True, stdin=subprocess.DEVNULL, env=env)


def recreate_database(name: str, template: str | None = None) -> None:
    """Drop and create database `name`, empty or as a copy of `template` (a migrated database: much faster than migrating)."""
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))


def prepare(ctx: Context, template: str | None = None) -> None:
    """Point this process at the scenario's database and Redis db, recreate (migrated) and empty them, set Django up."""
    import redis

    os.environ.update(
        {key: value for key, value in ctx.stack_env().items() if key not in {"PATH"}},
        QUICK="1" if ctx.quick else "0",
    )
    recreate_database(ctx.db_name, template)
    redis.Redis.from_url(ctx.redis_url).flushdb()
    if template is None:
        migrate(ctx.database_url)
    import django

    django.setup()


def format_rows(rows: list[Row]) -> str:
    lines = ["| scenario | ours | baseline | ratio | target | met | note |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        met = {True: "yes", False: "**no**", None: ""}[row.met]
        cells = [row.scenario, row.ours, row.baseline, row.ratio, row.target, met, row.note]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None, name: str):
    parser = argparse.ArgumentParser(description=f"Run the bench scenario {name} alone and print its rows.")
    parser.add_argument("--quick", action="store_true", default=os.environ.get("QUICK") == "1", help="tiny sizes (CI)")
    parser.add_argument("--db", default=None, help=f"database name (default ledgerpulse_bench_{name}; recreated)")
    parser.add_argument("--redis-db", type=int, default=None, help="Redis database number (emptied)")
    parser.add_argument("--work-dir", type=Path, default=None, help="logs and scratch files (default: a new temp dir)")
    parser.add_argument("--rows-json", type=Path, default=None, help="also write the rows here (bench/run.py)")
    parser.add_argument("--template", default=None, help="copy this migrated database instead of migrating (bench/run.py)")
    return parser.parse_args(argv)


def main(run: Callable[[Context], list[Row]], argv: list[str] | None = None, name: str | None = None) -> int:
    """Run one scenario: prepare its database, call run(ctx), print its rows (and write them as JSON when asked)."""
    module = sys.modules.get(run.__module__)
    if name is None:
        spec = getattr(module, "__spec__", None)
        name = (spec.name if spec else run.__module__).rpartition(".")[2]
    args = parse_args(argv, name)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix=f"ledgerpulse-bench-{name}-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        quick=args.quick, name=name, work_dir=work_dir,
        db_name=args.db or os.environ.get("BENCH_DB") or f"ledgerpulse_bench_{name}",
        redis_db=args.redis_db if args.redis_db is not None else int(os.environ.get("BENCH_REDIS_DB", REDIS_DBS.get(name, 10))),
    )
    print(f"[bench {name}] database {ctx.db_name}, Redis db {ctx.redis_db}, quick={ctx.quick}, work dir {work_dir}",
          file=sys.stderr, flush=True)
    started = time.monotonic()
    prepare(ctx, args.template)
    try:
        rows = run(ctx)
    finally:
        ctx.close()
    print(format_rows(rows), flush=True)
    print(f"[bench {name}] {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    if args.rows_json:
        args.rows_json.write_text(json.dumps([dataclasses.asdict(row) for row in rows], indent=1))
    return 0


if __name__ == "__main__":
    # python -m bench.harness bench.<name> [--quick] ...: run a scenario module's run(ctx).
    import importlib

    target = sys.argv[1]
    scenario = importlib.import_module(target)
    sys.exit(main(scenario.run, sys.argv[2:], name=target.rpartition(".")[2]))
