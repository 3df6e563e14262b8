"""Scale-out on real processes: two web servers and two Celery workers on one database and a Redis master behind
Sentinel (real redis-server processes). Approvals go to server 2 only; the sockets on server 1 must see them,
and every socket on both servers must end with what the REST API says, each approval counted once."""
import io
import json
import time
from contextlib import ExitStack
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.management import call_command
from websockets.sync.client import connect

from tests.redis_servers import start_sentinel_setup
from tests.stack import Browserless, LiveStack, create_live_user, stack_env

pytestmark = [pytest.mark.e2e, pytest.mark.no_deadline, pytest.mark.needs_postgres, pytest.mark.timeout(300)]

PASSWORD = "scale-password-123"
# (amount, currency, weeks ago): several weeks and currencies, so the end state has more than one row to get wrong.
APPROVALS = [(f"{10 + n}.{n:02d}", ("EUR", "USD")[n % 2], n % 3) for n in range(12)]


@dataclass
class DashboardClient:
    """One dashboard socket and the state a browser would build from its frames."""

    name: str
    ws: object
    seq: int = -1
    rows: dict = field(default_factory=dict)  # (week_start, currency) -> (total, count)
    snapshots: int = 0
    updates: int = 0

    def apply(self, message: dict) -> None:
        if message["type"] == "snapshot":
            self.rows = {(r["week_start"], r["currency"]): (r["total"], r["count"]) for r in message["weekly_income"]}
            self.seq = message["seq"]
            self.snapshots += 1
        elif message["type"] == "weekly_income.updated":
            self.rows[(message["week_start"], message["currency"])] = (message["total"], message["count"])
            self.seq = max(self.seq, message["seq"])
            self.updates += 1

    def read_until(self, done, timeout: float = 60) -> None:
        """Apply frames as they come until `done(self)` holds. (A batch's weekly updates come in (week, currency)
        order, not seq order, so "seq reached" alone does not mean every update of the batch was read.)"""
        deadline = time.monotonic() + timeout
        while not done(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.name} at seq {self.seq} holds {self.income()} after {timeout} s")
            try:
                frame = self.ws.recv(timeout=remaining)
            except TimeoutError:
                continue
            self.apply(json.loads(frame))

    def income(self) -> dict:
        return {key: value for key, value in self.rows.items() if value[1] > 0}


def rest_income(browser: Browserless) -> tuple[int, dict]:
    snapshot = browser.get("/api/dashboard/snapshot/").json()
    return snapshot["seq"], {(r["week_start"], r["currency"]): (r["total"], r["count"]) for r in snapshot["weekly_income"] if r["count"] > 0}


def submit(browser: Browserless, approvals) -> list[int]:
    """Create (as scale-clerk: nobody approves their own submission) and approve each transaction on `browser`'s
    server, four at a time; the approvals' positions."""
    now = datetime.now(timezone.utc)
    clerk = Browserless(browser.base_url).login("scale-clerk", PASSWORD)

    def one(approval):
        amount, currency, weeks_ago = approval
        occurred = (now - timedelta(weeks=weeks_ago)).isoformat()
        created = clerk.clone().post("/api/transactions/", {"amount": amount, "currency": currency, "occurred_at": occurred})
        assert created.status_code == 201, created.text
        decided = browser.clone().post(f"/api/transactions/{created.json()['id']}/approve/", {"reason": "scale-out"})
        assert decided.status_code == 200, decided.text
        return decided.json()["position"]

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, approvals))


@pytest.fixture
def sentinel_redis(tmp_path):
    setup = start_sentinel_setup(tmp_path / "redis")
    try:
        yield setup
    finally:
        setup.topology.stop()


@pytest.fixture
def two_servers(transactional_db, tmp_path, sentinel_redis):
    """Server 1 (two web processes) and server 2 (one), a Celery worker beside each and beat, all on the
    Sentinel-managed Redis: one environment, so one channel-layer prefix, as one deployment."""
    env = stack_env(REDIS_URL=sentinel_redis.redis_url(), REDIS_SENTINELS=sentinel_redis.sentinel_addresses)
    one = LiveStack(env=env, log_dir=tmp_path / "server1")
    two = LiveStack(env=env, log_dir=tmp_path / "server2")
    try:
        one.wait_ready(
            one.start_server(wait=False, concurrency=2), one.start_worker("worker1", wait=False),
            two.start_server(wait=False, concurrency=1), two.start_worker("worker2", wait=False),
            timeout=120,
        )
        one.start_beat()
        yield one, two
    finally:
        two.stop()
        one.stop()


def verify_projections() -> None:
    """manage.py verify_projections (stored totals = totals from the log) on the stack's database, run in this
    process rather than in a new one, which would only add a Django start-up. Raises CommandError naming what differs."""
    call_command("verify_projections", stdout=io.StringIO(), stderr=io.StringIO())


def open_dashboards(stack: LiveStack, browser: Browserless, count: int, name: str, stack_of_sockets) -> list[DashboardClient]:
    clients = []
    for n in range(count):
        ws = stack_of_sockets.enter_context(
            connect(stack.ws_url, origin=stack.base_url, additional_headers={"Cookie": browser.cookie_header}, open_timeout=30)
        )
        client = DashboardClient(f"{name}-socket{n}", ws)
        client.apply(json.loads(ws.recv(timeout=30)))
        assert client.snapshots == 1
        clients.append(client)
    return clients


def assert_identical_and_counted_once(clients, browser_one, browser_two, position, approvals):
    # Once a socket has seen `position`, the projection has committed it: the REST API says where everyone must end.
    clients[0].read_until(lambda c: c.seq >= position)
    seq_one, rest_one = rest_income(browser_one)
    seq_two, rest_two = rest_income(browser_two)
    assert seq_one == seq_two == position
    assert rest_one == rest_two
    for client in clients:
        client.read_until(lambda c: c.seq == position and c.income() == rest_one)
    # Each approval once: the counts and the totals per currency add up to exactly what was approved.
    assert sum(count for _, count in rest_one.values()) == len(approvals)
    for currency in ("EUR", "USD"):
        expected = sum(Decimal(amount) for amount, cur, _ in approvals if cur == currency)
        assert sum(Decimal(total) for (_, cur), (total, _) in rest_one.items() if cur == currency) == expected


def worker_queues(sentinel_redis) -> dict[str, list[str]]:
    """Each running worker's node name and the queues it consumes."""
    from celery import Celery

    from core.redis import broker_url
    from tests.redis_servers import MASTER_NAME

    sentinels = [("127.0.0.1", s.port) for s in sentinel_redis.sentinels]
    app = Celery(broker=broker_url(sentinel_redis.redis_url(), sentinels), broker_transport_options={"master_name": MASTER_NAME}, set_as_current=False)
    try:
        active = app.control.inspect(timeout=5).active_queues() or {}
        return {node: sorted(queue["name"] for queue in queues) for node, queues in active.items()}
    finally:
        app.close()


def test_it_pushes_approvals_sent_to_server_two_to_the_sockets_on_server_one_and_both_end_identical(two_servers, sentinel_redis):
    one, two = two_servers
    create_live_user("scale-admin", PASSWORD)
    create_live_user("scale-clerk", PASSWORD)
    browser_one = Browserless(one.base_url).login("scale-admin", PASSWORD)
    browser_two = Browserless(two.base_url).login("scale-admin", PASSWORD)

    with ExitStack() as sockets:
        # Three on server 1, so both of its web processes very likely serve one; one on server 2.
        on_one = open_dashboards(one, browser_one, 3, "server1", sockets)
        on_two = open_dashboards(two, browser_two, 1, "server2", sockets)
        position = max(submit(browser_two, APPROVALS))
        assert_identical_and_counted_once(on_one + on_two, browser_one, browser_two, position, APPROVALS)
        # Server 1's sockets were pushed the updates. (A socket may also get a second snapshot: two workers
        # publish their batches after commit, so one can overtake the other; the socket then sees a gap in
        # the chain and is resent a snapshot, the designed recovery.)
        for client in on_one:
            assert client.updates > 0, client.name

    # Both workers consume the one queue (asked over Celery's remote control, through the Sentinels too). Which of
    # them ran a projection is up to the wake-up coalescing: one run may cover every approval, so that is not asked.
    queues = worker_queues(sentinel_redis)
    assert sorted(name.split("-")[0] for name in queues) == ["worker1", "worker2"], queues
    assert all("celery" in names for names in queues.values()), queues

    verify_projections()
    logs = "".join(p.output() for p in one.spawned + two.spawned)
    assert "Traceback" not in logs, logs[-4000:]


def numsub(server, group: str) -> int:
    client = server.client()
    try:
        [(_, count)] = client.pubsub_numsub(group)
        return count
    finally:
        client.close()


def test_it_keeps_both_servers_in_step_through_a_sentinel_failover_of_the_redis_master(two_servers, sentinel_redis):
    one, two = two_servers
    create_live_user("scale-admin", PASSWORD)
    create_live_user("scale-clerk", PASSWORD)
    browser_one = Browserless(one.base_url).login("scale-admin", PASSWORD)
    browser_two = Browserless(two.base_url).login("scale-admin", PASSWORD)
    before, after = APPROVALS[:6], APPROVALS[6:]

    with ExitStack() as sockets:
        clients = open_dashboards(one, browser_one, 2, "server1", sockets) + open_dashboards(two, browser_two, 1, "server2", sockets)
        position = max(submit(browser_two, before))
        assert_identical_and_counted_once(clients, browser_one, browser_two, position, before)

        # A web process subscribes when its first dashboard connects: count those on the master now.
        group = f"{one.env['CHANNELS_PREFIX']}__group__{settings.REALTIME_GROUP}"
        subscribed = numsub(sentinel_redis.master, group)
        assert subscribed >= 2  # server 1's sockets and server 2's reach at least one process each

        old_master = sentinel_redis.master.port
        sentinel_redis.fail_over()
        assert sentinel_redis.master_port() != old_master

        # The same sockets, not reconnected: what was published during the failover is lost, the
        # chain shows the gap, and they get a snapshot; everything after reaches them as updates.
        position = max(submit(browser_two, after))
        assert_identical_and_counted_once(clients, browser_one, browser_two, position, APPROVALS)

        # Every web process that was subscribed is subscribed again, on the new master.
        deadline = time.monotonic() + 15
        while numsub(sentinel_redis.master, group) != subscribed and time.monotonic() < deadline:
            time.sleep(0.1)
        assert numsub(sentinel_redis.master, group) == subscribed

    verify_projections()
