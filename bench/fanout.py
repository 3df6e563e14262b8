"""Fan-out: publish -> last socket with thousands of dashboards, ours against stock Channels and the floor.

`run(ctx) -> list[Row]` for bench/run.py; alone: `.venv/bin/python -m bench.fanout [--quick]`.
Three servers, each on the Procfile's `web:` command shape (same worker count and flags), one after
another in the same run, the same load client (bench/wsclient.py, sockets in two processes):
- ours: the product (`core.asgi`), sockets signed in by the session cookie with an allowed Origin;
  each publish is one batch through realtime.broadcast.publish (as the projector publishes), whose
  message carries a mark and chains after the sockets' snapshot seq;
- stock: bench/baselines/stock_asgi.py, the tutorial consumer on stock RedisChannelLayer, group_send;
- floor: bench/baselines/floor.py, a bare Redis PUBLISH to a plain `websockets` server (broadcast).
For each size (1,000 and 5,000 sockets; quick: 100 only) every server starts fresh, the sockets
open in waves of WAVE handshakes, server RSS is read before and after (per idle socket), then
PUBLISHES publishes one at a time: publish -> the last socket to get it, p50 and p99 over publishes,
and the server's CPU time per delivery. Then, on the smaller size's servers, STORM handshakes all at
once: how many fail, and how (HTTP status or close code).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import Row
from bench.wsclient import LoadClient, OpenResult, raise_fd_limit

ROOT = Path(__file__).resolve().parent.parent
# Quick (CI) runs one tiny size for both fan-out rows: every server start costs seconds.
SIZES, QUICK_SIZES = (1000, 5000), (100,)
PUBLISHES, QUICK_PUBLISHES = 20, 5
STORM, QUICK_STORM = 1000, 100
WAVE = 50  # handshakes in flight while the sockets open (the product before issue 10 refused above ~100)
GAP = 0.25  # seconds between publishes: each publish is delivered alone
# Publishing stops after this long once MIN_PUBLISHES were measured (stock takes seconds each at 5,000).
MEASURE_BUDGET_S, MIN_PUBLISHES = 60.0, 5
COLLECT_TIMEOUT_S = 20.0  # a publish whose last socket is later than this counts as this late
PROFILE_SECONDS = 10  # ours at the largest size (full runs): where the time goes
CLIENT_PROCESSES = 2
# What the servers need for thousands of sockets: uvicorn's --limit-concurrency counts open
# websockets (past it a handshake gets HTTP 503), and the product's per-user cap (one user here).
SERVER_ENV = {"WEB_LIMIT_CONCURRENCY": "20000", "REALTIME_MAX_SOCKETS_PER_USER": "10000", "LOG_LEVEL": "WARNING"}
STOCK_GROUP = "bench_fanout"


# --- measurements --------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


@dataclass
class Fanout:
    """One server, one size: what the sockets saw."""

    system: str
    sockets: int
    opened: OpenResult | None = None
    lasts: list[float] = field(default_factory=list)  # per publish: publish -> last socket, seconds
    missing: int = 0  # deliveries that never came (within the collect timeout)
    rss_per_socket: float | None = None  # bytes
    cpu_per_delivery: float | None = None  # seconds
    client_cpu_per_delivery: float | None = None  # seconds, the load client's own
    messages_per_delivery: float | None = None  # data messages a socket got per publish (1 unless the server sends more)
    storm: OpenResult | None = None
    profile: str | None = None  # a py-spy flame graph of the web processes while publishing
    live_min: int | None = None  # the fewest sockets still open at a publish (drops show here)
    replaced: int = 0  # web processes that were gone by the end (uvicorn replaces a worker that misses its health check)
    error: str | None = None

    @property
    def intact(self) -> bool:
        """Every socket opened, stayed open and got every publish, and no web process was replaced."""
        return (self.opened is not None and self.opened.ok == self.sockets and not self.missing and not self.replaced
                and (self.live_min is None or self.live_min == self.opened.ok))

    @property
    def p50(self) -> float:
        return pct(self.lasts, 50) if self.lasts else float("nan")

    @property
    def p99(self) -> float:
        return pct(self.lasts, 99) if self.lasts else float("nan")

    def summary(self) -> str:
        if self.error:
            return f"{self.system}: failed ({self.error})"
        if not self.lasts:
            return f"{self.system}: no deliveries"
        return f"{self.system}: p50 {self.p50 * 1000:.0f} ms, p99 {self.p99 * 1000:.0f} ms (n={len(self.lasts)})"


def _proc_tree(pid: int) -> list[int]:
    """`pid` and its descendants (uvicorn's supervisor and its worker processes)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
                todo.extend(int(child) for child in children)
        except OSError:
            pass
    return found


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


# --- publishers ------------------------------------------------------------------------------------
def marked_message(mark: int, seq: int) -> dict:
    """A dashboard message shaped like a real transaction.approved, carrying the client's marker."""
    return {
        "type": "transaction.approved",
        "seq": seq,
        "transaction": {
            "id": f"BENCHMARK-{mark}",
            "amount": "1234.56",
            "currency": "EUR",
            "status": "approved",
            "occurred_at": "2026-11-21T14:00:00Z",
            "submitted_by": "wsbench",
            "decided_by": "wsbench",
            "decided_at": "2026-11-21T14:00:01Z",
            "reason": "benchmark",
        },
    }


class OursPublisher:
    """Batches through realtime.broadcast.publish, chained after the sockets' snapshot seq."""

    def __init__(self, snapshot_seq: int):
        from realtime.broadcast import publish

        self.publish = publish
        self.through = snapshot_seq

    def __call__(self, mark: int) -> None:
        after, self.through = self.through, self.through + 1
        self.publish([marked_message(mark, self.through)], after=after, through=self.through)


class StockPublisher:
    """group_send on a stock RedisChannelLayer, from one long-lived event loop."""

    def __init__(self, redis_url: str, prefix: str):
        from channels_redis.core import RedisChannelLayer

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="stock-publisher")
        self.thread.start()
        self.layer = RedisChannelLayer(hosts=[redis_url], prefix=prefix)

    def __call__(self, mark: int) -> None:
        text = json.dumps(marked_message(mark, mark), separators=(",", ":"))
        event = {"type": "bench.message", "text": text}
        asyncio.run_coroutine_threadsafe(self.layer.group_send(STOCK_GROUP, event), self.loop).result(30)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.layer.flush(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class FloorPublisher:
    def __init__(self, redis_url: str, channel: str):
        import redis

        self.client = redis.Redis.from_url(redis_url)
        self.channel = channel

    def __call__(self, mark: int) -> None:
        self.client.publish(self.channel, json.dumps(marked_message(mark, mark), separators=(",", ":")))

    def close(self) -> None:
        self.client.close()


# --- servers ---------------------------------------------------------------------------------------
class Servers:
    """The three servers, each on the Procfile's web command shape, through scripts/stack.py."""

    def __init__(self, ctx, prefix: str):
        from scripts.stack import procfile

        self.ctx = ctx
        self.prefix = prefix  # the channel layer's, shared with this process's publisher
        self.web = procfile()["web"]

    def ours(self):
        """The product: the Procfile's web line, no Celery worker (this process publishes the batches)."""
        return self.ctx.stack(worker=False, CHANNELS_PREFIX=self.prefix, **SERVER_ENV)

    @contextlib.contextmanager
    def _other(self, name: str, web_command: str, prefix: str | None = None, **env: str):
        from scripts.stack import Stack

        log_dir = Path(tempfile.mkdtemp(prefix=f"fanout-{name}-", dir=self.ctx.work_dir))
        stack = Stack(env=self.ctx.stack_env(CHANNELS_PREFIX=prefix or self.prefix, **SERVER_ENV, **env), log_dir=log_dir,
                      commands={"web": web_command})
        try:
            stack.start_server()
            yield stack
        finally:
            stack.stop(timeout=2)  # a baseline need not shut down gracefully (stock blocks in BZPOPMIN for 5 s)

    def stock(self, prefix: str):
        """`prefix`: a fresh one per server, so members a storm left behind never reach the next size's group."""
        if "core.asgi:application" not in self.web:
            raise RuntimeError("the Procfile's web: line no longer names core.asgi:application; cannot swap in the stock app")
        return self._other("stock", self.web.replace("core.asgi:application", "bench.baselines.stock_asgi:application"),
                           prefix=prefix)

    def floor(self, channel: str):
        return self._other("floor", f"exec {sys.executable} -m bench.baselines.floor", FLOOR_CHANNEL=channel)


# --- one scenario run ----------------------------------------------------------------------------
def _measure(client: LoadClient, publish, result: Fanout, publishes: int, pids: list[int], marks) -> None:
    deliveries = 0
    cpu_before, (client_before, messages_before) = cpu_seconds(pids), client.counters()
    budget_ends = time.monotonic() + MEASURE_BUDGET_S
    for done in range(publishes):
        if done >= MIN_PUBLISHES and time.monotonic() > budget_ends:
            break
        mark = next(marks)
        started = time.monotonic()
        publish(mark)
        times, live = client.collect(mark, timeout=COLLECT_TIMEOUT_S)
        missing = max(0, live - len(times))
        if times or missing:
            # A socket still waiting at the timeout puts this publish at the timeout (a lower bound).
            result.lasts.append(max(max(times, default=started) - started, COLLECT_TIMEOUT_S if missing else 0.0))
        result.missing += missing
        result.live_min = live if result.live_min is None else min(result.live_min, live)
        deliveries += len(times)
        time.sleep(GAP)
    cpu, (client_after, messages_after) = cpu_seconds(pids) - cpu_before, client.counters()
    client_cpu = client_after - client_before
    if deliveries:
        result.messages_per_delivery = (messages_after - messages_before) / deliveries
        result.cpu_per_delivery = cpu / deliveries
        result.client_cpu_per_delivery = client_cpu / deliveries


def _session(system: str, stack, client: LoadClient, *, sockets: int, publishes: int, storm: int, prepare, marks, settle: float,
             profile=None) -> Fanout:
    """On a started server: open the sockets, publish, then (optionally) the storm. `prepare(stack)` returns
    (handshake headers, publisher factory, whether the server greets each socket with a message)."""
    result = Fanout(system, sockets)
    pids = _proc_tree(stack.processes["web"].pid)
    headers, make_publisher, expect_hello = prepare(stack)
    common = dict(host="127.0.0.1", port=stack.port, path="/ws/dashboard/", headers=headers, expect_hello=expect_hello)
    # Warm up (lazy imports, first connections), then take the idle RSS.
    client.open(count=4, inflight=4, keep=False, **common)
    time.sleep(settle / 2)
    rss_before = rss_bytes(pids)
    result.opened = client.open(count=sockets, inflight=WAVE, **common)
    time.sleep(settle)
    if result.opened.ok and set(_proc_tree(stack.processes["web"].pid)) == set(pids):  # else a worker was replaced: RSS means nothing
        result.rss_per_socket = (rss_bytes(pids) - rss_before) / result.opened.ok
    publisher = make_publisher()
    recorder = None
    if profile is not None:  # py-spy samples the web processes while the publishes run
        def record():
            try:
                path = Path(profile(stack.processes["web"].pid, PROFILE_SECONDS, f"fanout-{system}-{sockets}"))
                result.profile = str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
            except Exception as exc:  # noqa: BLE001 - a missing profile must not lose the numbers
                result.profile = f"py-spy failed: {exc}"[:200]

        recorder = threading.Thread(target=record, name="fanout-profile")
        recorder.start()
    try:
        _measure(client, publisher, result, publishes, pids, marks)
    finally:
        if recorder is not None:
            recorder.join(PROFILE_SECONDS + 60)
        close = getattr(publisher, "close", None)
        if close:
            close()
    result.replaced = len(set(pids) - set(_proc_tree(stack.processes["web"].pid)))
    client.close_all()
    if storm:
        time.sleep(settle)
        result.storm = client.storm(count=storm, timeout=60, **common)
    return result


def session_cookie(username: str = "wsbench") -> str:
    """A signed-in staff session written straight to the session store: the same cookie a login
    gives, without hashing a password (seconds of CPU on a busy machine)."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model

    user, created = get_user_model().objects.get_or_create(
        username=username, defaults={"is_staff": True, "is_superuser": True, "email": f"{username}@example.com"}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[-1]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def _snapshot_seq(base_url: str, cookie: str) -> int:
    from websockets.sync.client import connect

    ws_url = base_url.replace("http://", "ws://") + "/ws/dashboard/"
    with connect(ws_url, origin=base_url, additional_headers={"Cookie": cookie}, open_timeout=20) as ws:
        return int(json.loads(ws.recv(timeout=20))["seq"])


def measure_all(ctx, *, systems=("ours", "stock", "floor")) -> dict[tuple[str, int], Fanout]:
    """Every system at every size; returns {(system, sockets): Fanout}."""
    from django.conf import settings

    raise_fd_limit()
    quick = ctx.quick
    sizes = QUICK_SIZES if quick else SIZES
    if os.environ.get("FANOUT_SIZES"):  # a shorter run by hand: FANOUT_SIZES=1000
        sizes = tuple(int(n) for n in os.environ["FANOUT_SIZES"].split(","))
    systems = tuple(os.environ.get("FANOUT_SYSTEMS", ",".join(systems)).split(","))
    publishes = QUICK_PUBLISHES if quick else PUBLISHES
    storm = QUICK_STORM if quick else STORM
    settle = 0.2 if quick else 1.0
    prefix, redis_url = settings.CHANNELS_PREFIX, ctx.redis_url
    servers = Servers(ctx, prefix)
    marks = itertools.count(1)
    results: dict[tuple[str, int], Fanout] = {}

    def prepare_ours(stack):
        # Signed in like a browser: the session cookie, with the server's own origin.
        cookie = session_cookie()
        seq = _snapshot_seq(stack.base_url, cookie)
        return {"Origin": stack.base_url, "Cookie": cookie}, lambda: OursPublisher(seq), True

    stock_prefixes = {size: f"{prefix}-stock{size}" for size in sizes}

    def prepare_stock(stack):
        stock_prefix = stack.env["CHANNELS_PREFIX"]
        return {"Origin": stack.base_url}, lambda: StockPublisher(redis_url, stock_prefix), False

    floor_channel = f"{prefix}:floor"

    def prepare_floor(stack):
        return {"Origin": stack.base_url}, lambda: FloorPublisher(redis_url, floor_channel), False

    plans = {
        "ours": (lambda size: servers.ours(), prepare_ours),
        "stock": (lambda size: servers.stock(stock_prefixes[size]), prepare_stock),
        "floor": (lambda size: servers.floor(floor_channel), prepare_floor),
    }
    with LoadClient(CLIENT_PROCESSES) as client:
        for size in sizes:
            for system in systems:
                started = time.monotonic()
                make_stack, prepare = plans[system]
                try:
                    with make_stack(size) as stack:
                        results[(system, size)] = _session(
                            system, stack, client, sockets=size, publishes=publishes,
                            storm=storm if size == sizes[0] else 0, prepare=prepare, marks=marks, settle=settle,
                            profile=ctx.profile if system == "ours" and size == sizes[-1] and not quick else None,
                        )
                except Exception as exc:  # noqa: BLE001 - one broken server must not hide the others' rows
                    results[(system, size)] = Fanout(system, size, error=f"{type(exc).__name__}: {exc}"[:300])
                    client.close_all()
                print(f"  fanout: {system} at {size} sockets: {results[(system, size)].summary()} "
                      f"({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    return results


# --- rows ------------------------------------------------------------------------------------------
def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _opened_note(result: Fanout) -> str:
    if result.error:
        return f"{result.system}: {result.error}"
    parts = [f"{result.system}: {result.opened.ok}/{result.sockets} open in {result.opened.seconds:.0f} s"
             + (" (permessage-deflate)" if result.opened.deflated else "")]
    if result.opened.failed:
        parts.append(f"refused {result.opened.failed}")
    if result.live_min is not None and result.live_min < result.opened.ok:
        parts.append(f"only {result.live_min} still open at a publish")
    if result.replaced:
        parts.append(f"{result.replaced} web process(es) replaced (uvicorn kills a worker that misses its health check)")
    if result.missing:
        parts.append(f"{result.missing} deliveries not in within {COLLECT_TIMEOUT_S:.0f} s (counted as {COLLECT_TIMEOUT_S:.0f} s)")
    return ", ".join(parts)


def rows_from(results: dict[tuple[str, int], Fanout], *, quick: bool) -> list[Row]:
    sizes = sorted({size for _system, size in results})
    small, large = sizes[0], sizes[-1]
    rows = []
    for size, stat, target_text, limit in (
        (small, "p50", "p50 <= 150 ms", 0.150),
        (large, "p99", "p99 <= 500 ms and >= 5x stock", 0.500),
    ):
        ours, stock, floor = (results.get((s, size)) for s in ("ours", "stock", "floor"))
        value = (lambda r: getattr(r, stat) if r is not None and r.lasts else None)
        o, s, f = value(ours), value(stock), value(floor)
        ratio = f"stock / ours = {s / o:.1f}x" if o and s else "n/a"
        met = None
        if o is not None:
            met = o <= limit and (size == small or (s is not None and s / o >= 5)) and ours.intact
            if quick:
                met = None  # tiny sizes: the targets are for the full sizes
        other = lambda r: r.summary().split(": ", 1)[1] if r is not None else "not run"  # noqa: E731
        rows.append(Row(
            scenario=f"Fan-out, {size:,} sockets: publish -> last socket ({stat} over publishes)",
            ours=f"{stat} {_ms(o)} (p50 {_ms(ours.p50)}, p99 {_ms(ours.p99)}, n={len(ours.lasts)})" if o is not None else other(ours),
            baseline=f"stock RedisChannelLayer {other(stock)}; floor (Redis PUBLISH + websockets) {other(floor)}",
            ratio=ratio,
            target=target_text,
            met=met,
            note="; ".join(_opened_note(r) for r in (ours, stock, floor) if r is not None)
            + (f"; profile of ours: {ours.profile}" if ours is not None and ours.profile else ""),
        ))
    # the storm
    ours, stock, floor = (results.get((s, small)) for s in ("ours", "stock", "floor"))

    def storm_text(r):
        if r is None or r.storm is None:
            return "not run"
        failed = r.storm.failures
        detail = f" ({', '.join(f'{k} x{v}' for k, v in sorted(r.storm.failed.items()))})" if failed else ""
        return f"{failed} of {r.storm.ok + failed} failed{detail}, {r.storm.seconds:.1f} s"

    count = (ours.storm.ok + ours.storm.failures) if ours and ours.storm else (QUICK_STORM if quick else STORM)
    rows.append(Row(
        scenario=f"Handshake storm: {count:,} websocket handshakes in flight at once",
        ours=storm_text(ours),
        baseline=f"stock RedisChannelLayer {storm_text(stock)}; floor {storm_text(floor)}",
        ratio="n/a",
        target="0 failed",
        met=None if quick else ((ours.storm.failures == 0) if ours and ours.storm else False),
    ))
    # memory and CPU at the larger size
    ours, stock, floor = (results.get((s, large)) for s in ("ours", "stock", "floor"))

    def kb(r):
        return f"{r.rss_per_socket / 1024:.0f} KB" if r is not None and r.rss_per_socket is not None else "n/a"

    rows.append(Row(
        scenario=f"Server memory per idle socket ({large:,} sockets, RSS delta of the web processes / sockets)",
        ours=kb(ours),
        baseline=f"stock RedisChannelLayer {kb(stock)}; floor {kb(floor)}",
        ratio=f"stock / ours = {stock.rss_per_socket / ours.rss_per_socket:.1f}x"
        if ours and stock and ours.rss_per_socket and stock.rss_per_socket else "n/a",
        target="<= 40 KB",
        met=(ours.rss_per_socket <= 40 * 1024) if ours and ours.rss_per_socket is not None and not quick else None,
    ))

    def us(r):
        return f"{r.cpu_per_delivery * 1e6:.0f} us" if r is not None and r.cpu_per_delivery is not None else "n/a"

    rows.append(Row(
        scenario=f"Server CPU per delivery ({large:,} sockets, web processes' CPU time over the publishes / deliveries)",
        ours=us(ours),
        baseline=f"stock RedisChannelLayer {us(stock)}; floor {us(floor)}",
        ratio=f"stock / ours = {stock.cpu_per_delivery / ours.cpu_per_delivery:.1f}x"
        if ours and stock and ours.cpu_per_delivery and stock.cpu_per_delivery else "n/a",
        target="none",
        met=None,
        note="load client (raw asyncio sockets, 2 processes) used "
        + ", ".join(f"{r.system} {r.client_cpu_per_delivery * 1e6:.0f} us" for r in (ours, stock, floor)
                    if r is not None and r.client_cpu_per_delivery is not None)
        + " of CPU per delivery",
    ))
    return rows


# --- entry points ------------------------------------------------------------------------------------
def run(ctx) -> list[Row]:
    results = measure_all(ctx)
    raw = {f"{system}@{size}": dataclasses.asdict(result) for (system, size), result in results.items()}
    (Path(ctx.work_dir) / "fanout-raw.json").write_text(json.dumps(raw, indent=1, default=str))
    return rows_from(results, quick=ctx.quick)


if __name__ == "__main__":
    from bench.harness import main

    sys.exit(main(run))
