"""Fault injection for the real stack: a private redis-server to kill, freeze and restart, worker kills,
backlogs appended through the real event store without waking the projector, a hold on the projection
checkpoint (a run "still running" for as long as a test needs), and a websocket client that checks what
it sees.

Shared by the chaos soak (scripts/chaos.py) and the end-to-end fault and metrics tests (tests/e2e/), so
it lives beside scripts/stack.py, not in the tests. Nothing here touches the machine's shared
Redis or PostgreSQL server processes: outages are injected into a redis-server this module started.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import redis

from scripts.stack import Browserless, PortReservation, Process, Stack, kill_group

REDIS_SERVER = "/usr/bin/redis-server"
# Exponents of the currencies the fault tests use (ISO 4217); kept here so the expected totals are
# computed independently of core.money.
EXPONENTS = {"EUR": 2, "USD": 2, "JPY": 0}


# --- a redis-server of our own ---------------------------------------------------------------


class RedisServer:
    """A redis-server process owned by the caller: the broker and channel layer of one stack."""

    def __init__(self, log_dir: Path):
        # Held until close(): the port stays ours while the server is down between a stop() and
        # a start(), and connections to it are refused meanwhile, as after a crash.
        self.reservation = PortReservation()
        self.port = self.reservation.port
        self.log = Path(log_dir) / f"redis-{self.port}.log"
        self.popen: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self, timeout: float = 10) -> "RedisServer":
        assert not self.running, "already running"
        with self.log.open("ab") as handle:
            self.popen = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--daemonize", "no", "--protected-mode", "no"],
                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while True:
                if self.popen.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.popen.returncode}: {self.log.read_text()[-2000:]}")
                try:
                    if client.ping():
                        return self
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} not answering after {timeout} s")
                time.sleep(0.05)
        except BaseException:
            kill_group(self.popen)
            raise
        finally:
            client.close()

    def stop(self) -> None:
        """Crash it (SIGKILL): open connections are reset, new ones refused, everything in it is lost."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGCONT)  # a frozen server must be able to die
        kill_group(self.popen)

    def close(self) -> None:
        """Stop it for good and give the port back."""
        try:
            self.stop()
        finally:
            self.reservation.close()

    def freeze(self) -> None:
        """SIGSTOP: connections are accepted by the kernel but never answered (a hung broker)."""
        self.popen.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.popen.send_signal(signal.SIGCONT)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


# --- processes ----------------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc), e.g. a Celery master's prefork pool processes."""
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
            except OSError:
                pass
    except OSError:
        pass
    return found


def pool_children(worker: Process, timeout: float = 10) -> list[int]:
    """The prefork pool processes of a Celery worker, waiting until there is at least one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = children_of(worker.popen.pid)
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{worker.name} has no pool process")


def kill_hard(process: Process) -> None:
    """kill -9 a whole process group (a Celery master and its pool)."""
    kill_group(process.popen)


def task_runs(log_text: str, task: str = "analytics.project_weekly_income") -> int:
    """How many times a worker ran `task`, from its --loglevel=info log: Celery's "Task <name>[<id>] received"
    lines, plus the runs its projector fast lane started without Celery (a wake-up taken off the Redis list),
    each seen once by the run id ("fast-lane-...") its batch lines carry."""
    celery, fast_lane = 0, set()
    for line in log_text.splitlines():
        if f"Task {task}[" in line and "received" in line:
            celery += 1
        elif '"fast-lane-' in line:
            record = json.loads(line[line.index("{"):])
            if record.get("task") == task and str(record.get("task_id", "")).startswith("fast-lane-"):
                fast_lane.add(record["task_id"])
    return celery + len(fast_lane)


def unacked_deliveries(broker_url: str) -> list[float]:
    """Seconds since each unacknowledged delivery on a Redis broker (kombu's unacked_index)."""
    client = redis.Redis.from_url(broker_url)
    try:
        now = time.time()
        return [now - score for _, score in client.zrange("unacked_index", 0, -1, withscores=True)]
    finally:
        client.close()


def send_task(broker_url: str, name: str, count: int = 1) -> None:
    """Enqueue a task by name on a broker, as another process of the deployment would."""
    from celery import Celery

    app = Celery("fault-injector", broker=broker_url, set_as_current=False)
    try:
        for _ in range(count):
            app.send_task(name)
    finally:
        app.close()


# --- PostgreSQL observations -------------------------------------------------------------------


def pg_connect(settings_dict: dict):
    """A separate autocommit connection (psycopg) for watching the database from a helper thread."""
    import psycopg

    return psycopg.connect(
        host=settings_dict.get("HOST") or "127.0.0.1",
        port=int(settings_dict.get("PORT") or 5432),
        user=settings_dict.get("USER") or "postgres",
        password=settings_dict.get("PASSWORD") or None,
        dbname=settings_dict["NAME"],
        autocommit=True,
    )


PROJECTOR_SESSIONS = """
    SELECT pid, state, coalesce(wait_event_type, ''), left(query, 120)
    FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
      AND query ILIKE '%%analytics_%%'
"""


def projector_sessions(conn) -> list[tuple]:
    """Sessions of other processes that are inside a transaction and last ran a projector query."""
    return conn.execute(PROJECTOR_SESSIONS).fetchall()


def checkpoint_waiters(conn) -> list[tuple]:
    """Projector sessions blocked on a lock (the checkpoint row's, when checkpoint_held() has it)."""
    return [session for session in projector_sessions(conn) if session[2] == "Lock"]


@contextmanager
def checkpoint_held(settings_dict: dict):
    """Hold the weekly income checkpoint row (SELECT ... FOR UPDATE) on a connection of our own.

    Every projector run takes that row lock first in each batch, so while this block runs, a run
    that has started stays inside its batch's transaction, waiting, for as long as the test needs:
    "still running" without a sleep that races the projection. The row must exist
    (ensure_checkpoint_row). Leaving the block commits and the waiting runs go on.
    """
    conn = pg_connect(settings_dict)
    try:
        with conn.transaction():
            row = conn.execute(
                "SELECT position FROM analytics_projectioncheckpoint WHERE name = 'weekly_income' FOR UPDATE"
            ).fetchone()
            assert row is not None, "no checkpoint row to hold: call ensure_checkpoint_row() first"
            yield
    finally:
        conn.close()


def positions(conn) -> tuple[int, int]:
    """(projection checkpoint, last event position)."""
    checkpoint = conn.execute("SELECT coalesce(max(position), 0) FROM analytics_projectioncheckpoint WHERE name = 'weekly_income'").fetchone()[0]
    last = conn.execute("SELECT coalesce(max(position), 0) FROM core_event").fetchone()[0]
    return checkpoint, last


def wait_caught_up(conn, timeout: float) -> float:
    """Seconds until the checkpoint reaches the last event position; AssertionError after `timeout`."""
    started = time.monotonic()
    while True:
        checkpoint, last = positions(conn)
        if checkpoint == last:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"projection not caught up after {timeout} s: checkpoint {checkpoint}, last event {last}")
        time.sleep(0.1)


def ensure_checkpoint_row(conn) -> None:
    """The checkpoint row as `migrate` leaves it (analytics 0002); the test database's flush removes it."""
    conn.execute(
        "INSERT INTO analytics_projectioncheckpoint (name, position, config, updated_at) "
        "VALUES ('weekly_income', 0, 'UTC/monday', now()) ON CONFLICT (name) DO NOTHING"
    )


def stored_weekly_income(conn) -> dict[tuple[str, str], tuple[int, int]]:
    rows = conn.execute("SELECT week_start, currency, total_minor, count FROM analytics_weeklyincome").fetchall()
    return {(ws.isoformat(), cur): (int(total), int(count)) for ws, cur, total, count in rows if count or total}


# --- what the tests approved, recomputed independently ------------------------------------------


def week_of(moment: datetime) -> str:
    """The UTC Monday of `moment` (the default ANALYTICS_TIME_ZONE / ANALYTICS_WEEK_START)."""
    day = moment.astimezone(timezone.utc).date()
    return (day - timedelta(days=day.weekday())).isoformat()


def minor_units(amount: str, currency: str) -> int:
    value = Decimal(amount).scaleb(EXPONENTS[currency])
    assert value == value.to_integral_value(), (amount, currency)
    return int(value)


def money(minor: int, currency: str) -> str:
    return f"{Decimal(minor).scaleb(-EXPONENTS[currency]):.{EXPONENTS[currency]}f}"


@dataclass
class Ledger:
    """Per (week, currency): the total (minor units) and count of approvals the caller saw accepted."""

    rows: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, occurred_at: datetime | str, currency: str, amount: str) -> None:
        if isinstance(occurred_at, str):
            occurred_at = datetime.fromisoformat(occurred_at)
        with self.lock:
            row = self.rows[(week_of(occurred_at), currency)]
            row[0] += minor_units(amount, currency)
            row[1] += 1

    def expected(self) -> dict[tuple[str, str], tuple[int, int]]:
        with self.lock:
            return {key: (total, count) for key, (total, count) in self.rows.items() if count}

    @property
    def count(self) -> int:
        with self.lock:
            return sum(count for _, count in self.rows.values())

    def per_currency(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        with self.lock:
            for (_, cur), (total, _) in self.rows.items():
                out[cur] += total
        return dict(out)


@dataclass(frozen=True)
class Payment:
    amount: str
    currency: str
    occurred_at: datetime


def random_payments(count: int, *, seed: int, currencies=("EUR", "USD", "JPY"), days: int = 20) -> list[Payment]:
    """Payments over the last `days` days (a few weeks, all inside the default 12-week window)."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    out = []
    for _ in range(count):
        currency = rng.choice(currencies)
        units = rng.randint(1, 2_000_000)
        amount = str(units) if EXPONENTS[currency] == 0 else f"{units // 100}.{units % 100:02d}"
        out.append(Payment(amount, currency, now - timedelta(seconds=rng.randint(60, days * 86400))))
    return out


@contextmanager
def no_wake_up():
    """Commits inside this block wake no projector: events_committed has no receivers meanwhile."""
    from core.signals import events_committed

    receivers = events_committed.receivers
    events_committed.receivers = []
    try:
        yield
    finally:
        events_committed.receivers = receivers


def insert_transactions(payments: list[Payment], *, approve: bool, chunk: int = 500) -> list[uuid.UUID]:
    """Submitted (and, with `approve`, approved) transactions in the event log and the read model.

    Every stream goes through the real event store, core.eventstore.append (its version check, its
    positions), with the events transactions.events builds for the commands, and the
    read-model row is made from what the append recorded, as the commands make it. Unlike the
    commands, a chunk of streams shares one transaction (a backlog of thousands in seconds), and
    the commit wakes nobody: nothing tells the projector, so the caller decides when and how the
    backlog gets projected.
    """
    # Imported here: scripts/chaos.py imports this module before Django is set up.
    from django.db import transaction

    from core import eventstore
    from core.money import parse_amount
    from transactions import events
    from transactions.models import Transaction, TransactionStatus

    ids = []
    metadata = {"actor": "fault-injector", "request_id": None}
    for start in range(0, len(payments), chunk):
        with no_wake_up(), transaction.atomic():
            txns = []
            for p in payments[start:start + chunk]:
                tid = uuid.uuid4()
                amount = parse_amount(p.amount, p.currency)
                stream = [events.submitted(transaction_id=tid, amount=amount, currency=p.currency, occurred_at=p.occurred_at,
                                           reference="", description="")]
                if approve:
                    stream.append(events.approved(transaction_id=tid, amount=amount, currency=p.currency,
                                                  occurred_at=p.occurred_at, reason="backlog"))
                recorded = eventstore.append(stream_id=tid, expected_version=0, events=stream, metadata=metadata)
                txns.append(Transaction(
                    id=tid, amount=amount, currency=p.currency, occurred_at=p.occurred_at, reference="", description="",
                    status=TransactionStatus.APPROVED if approve else TransactionStatus.PENDING,
                    version=recorded[-1].version, created_at=recorded[0].recorded_at,
                    decided_at=recorded[-1].recorded_at if approve else None, decided_by="fault-injector" if approve else "",
                    decision_reason="backlog" if approve else "", last_position=recorded[-1].position,
                ))
                ids.append(tid)
            Transaction.objects.bulk_create(txns)
    return ids


# --- HTTP ---------------------------------------------------------------------------------------


def submit_over_http(client: Browserless, payment: Payment) -> str:
    response = client.post(
        "/api/transactions/", {"amount": payment.amount, "currency": payment.currency, "occurred_at": payment.occurred_at.isoformat()}
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def rest_weekly_income(client: Browserless, weeks: int = 12) -> tuple[int, dict[tuple[str, str], tuple[int, int]]]:
    """(as_of, {(week, currency): (total minor units, count)}) from GET /api/analytics/weekly-income/."""
    response = client.get("/api/analytics/weekly-income/")
    assert response.status_code == 200, response.text
    body = response.json()
    rows = {
        (row["week_start"], row["currency"]): (minor_units(row["total"], row["currency"]), row["count"])
        for row in body["results"]
        if row["count"]
    }
    return body["as_of"], rows


# --- a websocket client that checks what it is told ------------------------------------------------


class DashboardWatcher:
    """A dashboard's websocket, as a browser would hold it: per-(week, currency) totals with their seq.

    Every value is checked against the one it replaces: a weekly total that goes backwards (a lower
    seq, or a smaller total — these tests only ever add income) is recorded in `backwards`. `drop()`
    closes the socket as a network drop would; `reconnect()` opens a new one and sends
    {"type": "resume", "since": <last seq seen>}, as the dashboard does.
    """

    def __init__(self, stack: Stack, cookie_header: str):
        self.stack = stack
        self.cookie = cookie_header
        self.values: dict[tuple[str, str], tuple[int, Decimal]] = {}
        self.last_updates: dict[tuple[str, str], dict] = {}
        self.backwards: list[str] = []
        self.errors: list[str] = []
        self.last_seq = 0
        self.messages = 0
        self.snapshots = 0
        self.reconnects = 0
        self.lock = threading.Lock()
        self.ws = None
        self.reader: threading.Thread | None = None

    def connect(self, timeout: float = 10) -> "DashboardWatcher":
        from websockets.sync.client import connect

        self.ws = connect(
            self.stack.ws_url, origin=self.stack.base_url, additional_headers={"Cookie": self.cookie},
            open_timeout=timeout, max_queue=None, legacy=True,
        )
        try:
            first = json.loads(self.ws.recv(timeout=timeout))
            if first.get("type") != "snapshot":
                raise AssertionError(f"expected a snapshot first, got {first}")
        except BaseException:
            self.ws.close()
            self.ws = None
            raise
        self._apply(first)
        self.reader = threading.Thread(target=self._read, args=(self.ws,), name="dashboard-watcher", daemon=True)
        self.reader.start()
        return self

    def _read(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        while True:
            try:
                text = ws.recv()
            except ConnectionClosed:
                return
            except Exception as exc:  # noqa: BLE001 - recorded, then the reader stops
                self.errors.append(repr(exc))
                return
            self._apply(json.loads(text))

    def _value(self, key, seq: int, total: Decimal, source: str) -> None:
        previous = self.values.get(key)
        if previous is not None:
            old_seq, old_total = previous
            if seq < old_seq or total < old_total or (seq == old_seq and total != old_total):
                self.backwards.append(f"{key}: {old_total} (seq {old_seq}) -> {total} (seq {seq}) from {source}")
        self.values[key] = (seq, total)

    def _apply(self, message: dict) -> None:
        with self.lock:
            self.messages += 1
            kind = message.get("type")
            if kind == "snapshot":
                self.snapshots += 1
                for row in message["weekly_income"]:
                    self._value((row["week_start"], row["currency"]), message["seq"], Decimal(row["total"]), "snapshot")
                self.last_seq = max(self.last_seq, message["seq"])
            elif kind == "weekly_income.updated":
                key = (message["week_start"], message["currency"])
                self._value(key, message["seq"], Decimal(message["total"]), "update")
                self.last_updates[key] = message
                self.last_seq = max(self.last_seq, message["seq"])
            elif kind and kind.startswith("transaction."):
                self.last_seq = max(self.last_seq, message["seq"])
            elif kind == "error":
                self.errors.append(json.dumps(message))

    def drop(self) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.reader is not None:
            self.reader.join(10)
        self.ws = self.reader = None

    def reconnect(self, timeout: float = 10) -> None:
        self.drop()
        self.connect(timeout)
        with self.lock:
            since = self.last_seq
        self.ws.send(json.dumps({"type": "resume", "since": since}))
        self.reconnects += 1

    @property
    def alive(self) -> bool:
        return self.reader is not None and self.reader.is_alive()

    def totals(self) -> dict[tuple[str, str], int]:
        """Non-zero totals in minor units, comparable with rest_weekly_income()."""
        with self.lock:
            return {key: minor_units(str(total), key[1]) for key, (_, total) in self.values.items() if total}

    def seq(self) -> int:
        with self.lock:
            return self.last_seq

    def close(self) -> None:
        self.drop()
