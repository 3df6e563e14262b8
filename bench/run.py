"""`make bench`: every scenario module in bench/, one after another, into one table in bench/RESULTS.md.

    .venv/bin/python -m bench.run [--quick] [--only NAME ...] [--db-prefix P] [--redis-db N]

Each scenario (bench/<name>.py, `run(ctx) -> list[Row]`, bench/harness.py) runs in a process of its own
(`python -m bench.harness bench.<name>`), on its own recreated database and Redis database, so one
scenario's data, settings or crash never reaches the next. A module that does not exist yet is listed
as skipped; one that crashes is listed as crashed and makes the run fail (exit 1) after the table is
written. --quick (`make bench QUICK=1`, CI) runs every scenario at a tiny size and writes the table
to a scratch file in the work directory, never over bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import PG, REDIS_DBS, REDIS_HOST, Row, format_rows, migrate, recreate_database  # noqa: E402

# In order: the fan-out first (the heaviest on memory), the long data loads last.
SCENARIOS = ("fanout", "approvals", "latency", "rebuild", "time_travel")
RESULTS = ROOT / "bench" / "RESULTS.md"
# A scenario that runs longer than this is stopped and reported as crashed.
TIMEOUT_S = {True: 300, False: 3600}


def run_scenario(name: str, *, quick: bool, work_root: Path, db_prefix: str, redis_db: int | None, template: str
                 ) -> tuple[list[Row], str | None, float]:
    """(rows, why it failed or None, seconds) for bench/<name>.py run in its own process."""
    work_dir = work_root / name
    work_dir.mkdir(parents=True, exist_ok=True)
    rows_json = work_dir / "rows.json"
    command = [sys.executable, "-m", "bench.harness", f"bench.{name}", "--rows-json", str(rows_json),
               "--work-dir", str(work_dir), "--redis-db", str(REDIS_DBS.get(name, 10) if redis_db is None else redis_db),
               "--template", template, "--db", f"{db_prefix}_{name}"]
    if quick:
        command.append("--quick")
    print(f"\n== bench {name}{' (quick)' if quick else ''}", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        # The scenario's own output (progress, its rows) goes straight to the terminal.
        completed = subprocess.run(command, cwd=ROOT, timeout=TIMEOUT_S[quick], stdin=subprocess.DEVNULL)
        failure = None if completed.returncode == 0 else f"exit status {completed.returncode}"
    except subprocess.TimeoutExpired:
        failure = f"stopped after {TIMEOUT_S[quick]} s"
    seconds = time.monotonic() - started
    if failure is None and not rows_json.exists():
        failure = "wrote no rows"
    if failure is not None:
        return [], failure, seconds
    rows = [Row(**row) for row in json.loads(rows_json.read_text())]
    return rows, None, seconds


def machine_line(seconds: float) -> str:
    """CPU, cores, memory and the versions of the services, for the line under the table."""
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        kib = int(re.search(r"MemTotal:\s+(\d+)", handle.read()).group(1))
    try:
        import psycopg

        with psycopg.connect(f"{PG}/postgres") as conn:
            postgres = conn.execute("SHOW server_version").fetchone()[0].split()[0]
    except Exception as exc:  # noqa: BLE001 - the line says so
        postgres = f"? ({exc.__class__.__name__})"
    try:
        import redis

        redis_version = redis.Redis.from_url(f"redis://{REDIS_HOST}/0").info("server")["redis_version"]
    except Exception as exc:  # noqa: BLE001
        redis_version = f"? ({exc.__class__.__name__})"
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0].strip()
    return (
        f"Machine: {cpu}, {os.cpu_count()} cores, {kib / 1024 / 1024:.0f} GiB RAM; PostgreSQL {postgres}, "
        f"Redis {redis_version}, Python {platform.python_version()}, {wrk}; "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; whole run {seconds / 60:.1f} min."
    )


def report(rows: list[Row], machine: str, quick: bool) -> str:
    return "\n".join([
        "# Benchmark results" + (" (QUICK: tiny sizes, numbers mean nothing)" if quick else ""),
        "",
        "`make bench` on one machine: PostgreSQL and Redis on loopback, the stack started from the Procfile",
        "(scripts/stack.py), load from wrk and from websocket clients in separate processes. Every baseline",
        "ran in the same invocation, on the same machine, served the same way. A target that is missed",
        "stays in the table as missed; its note names the profile of where the time goes (bench/profiles/).",
        "",
        format_rows(rows),
        "",
        machine,
        "",
        "Earlier results (before the wrk harness, compared with the product's own past) are in git history:",
        "`git log -p -- bench/RESULTS.md bench/RESULTS-time-travel.md`.",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", default=os.environ.get("QUICK") == "1")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="run just these scenarios (the table has only them)")
    parser.add_argument("--db-prefix", default="ledgerpulse_bench",
                        help="scenario databases are <prefix>_<name>, the template <prefix>_template (all recreated)")
    parser.add_argument("--redis-db", type=int, default=None, help="one Redis database for every scenario (default: one each)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    work_root = Path(os.environ.get("BENCH_WORK") or tempfile.mkdtemp(prefix="ledgerpulse-bench-"))
    work_root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    template = f"{args.db_prefix}_template"
    recreate_database(template)
    migrate(f"{PG}/{template}")
    rows: list[Row] = []
    failed: list[str] = []
    for name in args.only or SCENARIOS:
        if not (ROOT / "bench" / f"{name}.py").exists():
            print(f"\n== bench {name}: bench/{name}.py does not exist yet: skipped", file=sys.stderr, flush=True)
            rows.append(Row(name, "skipped", "", "", "", None, f"bench/{name}.py does not exist yet"))
            continue
        scenario_rows, failure, seconds = run_scenario(
            name, quick=args.quick, work_root=work_root, db_prefix=args.db_prefix, redis_db=args.redis_db, template=template
        )
        if failure is not None:
            failed.append(name)
            rows.append(Row(name, "crashed", "", "", "", False, f"{failure} after {seconds:.0f} s; logs in {work_root / name}"))
        rows.extend(scenario_rows)
        print(f"== bench {name}: {len(scenario_rows)} rows in {seconds:.0f} s{f', FAILED: {failure}' if failure else ''}",
              file=sys.stderr, flush=True)
    text = report(rows, machine_line(time.monotonic() - started), args.quick)
    target = work_root / "RESULTS-quick.md" if args.quick else RESULTS
    if args.only and not args.quick:
        target = work_root / "RESULTS-partial.md"  # a partial run never replaces the whole table
    target.write_text(text)
    print("\n" + text)
    print(f"bench: wrote {target}" + (f"; crashed: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
