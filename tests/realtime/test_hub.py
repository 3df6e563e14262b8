"""The process-local hub: one layer channel per process, fan-out to local sockets, snapshots, storms, failures."""
import asyncio
import uuid
from contextlib import AsyncExitStack

import pytest
import redis
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer, channel_layers, get_channel_layer
from django.test import override_settings

from realtime import consumers
from realtime import hub as hub_module
from realtime import sockets
from realtime.broadcast import publish
from realtime.hub import current_hub
from tests.realtime.support import ORIGIN, communicator, logged_in, snapshot_of, socket
from tests.services import redis_available, require
from tests.stack import REDIS_TEST_DB

pytestmark = pytest.mark.django_db(transaction=True)


def weekly(seq, total, week="2026-11-16", currency="EUR"):
    return {"type": "weekly_income.updated", "seq": seq, "week_start": week, "currency": currency, "total": total, "count": 1}


async def open_many(stack: AsyncExitStack, count: int, *headers) -> list:
    """(socket, its snapshot's seq) for `count` sockets opened one after another; disconnected on exit.
    Generous timeouts: the first snapshot of a test process imports the analytics stack."""
    opened = []
    for _ in range(count):
        ws = communicator(*headers)
        stack.push_async_callback(ws.disconnect)
        connected, _ = await ws.connect(timeout=10)
        assert connected
        opened.append((ws, (await snapshot_of(ws))["seq"]))
    return opened


@pytest.fixture
def fresh_layer():
    """Each test gets the layer its settings name (a test may swap the backend)."""
    channel_layers.backends = {}
    yield
    channel_layers.backends = {}


async def test_it_delivers_a_batch_to_every_local_socket_exactly_once_through_one_layer_message(admin_user, client_for, fresh_layer, settings):
    _, cookie = await logged_in(client_for, admin_user)
    async with AsyncExitStack() as stack:
        opened = await open_many(stack, 5, ORIGIN, cookie)
        hub = current_hub()
        layer = get_channel_layer()
        # The process is the group's only member, however many sockets it serves.
        assert layer.groups[settings.REALTIME_GROUP].keys() == {hub.channel}
        before = hub.layer_messages
        seq = opened[0][1]
        await sync_to_async(publish)([weekly(seq + 1, "5.00"), weekly(seq + 2, "7.00")], after=seq, through=seq + 2)
        for ws, _ in opened:
            assert [(await ws.receive_json_from(timeout=3))["total"] for _ in range(2)] == ["5.00", "7.00"]
            assert await ws.receive_nothing(timeout=0.05)
        assert hub.layer_messages - before == 1


async def test_it_leaves_no_group_membership_behind_when_the_sockets_close(admin_user, client_for, fresh_layer, settings):
    _, cookie = await logged_in(client_for, admin_user)
    layer = get_channel_layer()
    async with AsyncExitStack() as stack:
        await open_many(stack, 3, ORIGIN, cookie)
        assert {group: len(members) for group, members in layer.groups.items()} == {
            settings.REALTIME_GROUP: 1, f"{settings.REALTIME_GROUP}.access": 1,
        }
    for _ in range(100):  # the hub leaves once its last socket has gone
        if not layer.groups:
            break
        await asyncio.sleep(0.01)
    assert layer.groups == {}
    assert current_hub() is None


async def test_a_socket_gets_the_batches_committed_while_its_snapshot_was_read(admin_cookie_user, fresh_layer, monkeypatch):
    cookie = admin_cookie_user
    real_read = hub_module.read_snapshot

    async def read_while_a_batch_arrives():
        snapshot = await real_read()
        seq = snapshot["seq"]
        # Committed after the read, published before the snapshot reached the socket.
        await sync_to_async(publish)([weekly(seq + 1, "3.00")], after=seq, through=seq + 1)
        await asyncio.sleep(0.05)  # the hub has received it by now
        return snapshot

    monkeypatch.setattr(hub_module, "read_snapshot", read_while_a_batch_arrives)
    async with socket(ORIGIN, cookie) as ws:
        seq = (await snapshot_of(ws))["seq"]
        assert await ws.receive_json_from(timeout=3) == weekly(seq + 1, "3.00")


async def test_a_slow_socket_does_not_delay_the_others_and_past_its_bound_starts_over_from_a_snapshot(admin_cookie_user, fresh_layer, monkeypatch):
    monkeypatch.setattr("realtime.consumers.OUTBOX_LIMIT", 3)
    committed = {"seq": 0}

    async def read_snapshot():
        return {"type": "snapshot", "seq": committed["seq"]}

    monkeypatch.setattr(hub_module, "read_snapshot", read_snapshot)
    async with socket(ORIGIN, admin_cookie_user) as slow, socket(ORIGIN, admin_cookie_user) as quick:
        await snapshot_of(slow)
        await snapshot_of(quick)
        unblock = _stall(_first_opened())  # the consumer serving `slow`
        for n in range(1, 7):
            committed["seq"] = n
            await sync_to_async(publish)([weekly(n, f"{n}.00")], after=n - 1, through=n)
            # The other socket is served at once, whatever the stalled one is doing.
            assert (await quick.receive_json_from(timeout=3))["total"] == f"{n}.00"
        unblock.set()
        assert (await slow.receive_json_from(timeout=3))["total"] == "1.00"  # being written when it stalled
        rest = []
        while (message := await slow.receive_json_from(timeout=3))["type"] != "snapshot":
            rest.append(message["total"])
        # An unbroken prefix, then the backlog past the bound replaced by a snapshot, then the stream again.
        assert rest == ["2.00", "3.00", "4.00"][: len(rest)] and message["seq"] == 5
        assert (await slow.receive_json_from(timeout=3))["total"] == "6.00"
        assert await slow.receive_nothing(timeout=0.1)


@pytest.mark.parametrize("frame", [{"type": "ping"}, {"type": "nonsense"}], ids=["pong", "error"])
async def test_a_reply_that_overflows_a_slow_sockets_outbox_starts_it_over_from_a_snapshot(admin_cookie_user, fresh_layer, monkeypatch, frame):
    monkeypatch.setattr("realtime.consumers.OUTBOX_LIMIT", 3)
    committed = {"seq": 0}

    async def read_snapshot():
        return {"type": "snapshot", "seq": committed["seq"]}

    monkeypatch.setattr(hub_module, "read_snapshot", read_snapshot)
    handled = asyncio.Event()
    real_receive = consumers.DashboardConsumer.receive

    def receive(self, *args):
        real_receive(self, *args)
        handled.set()

    monkeypatch.setattr(consumers.DashboardConsumer, "receive", receive)
    async with socket(ORIGIN, admin_cookie_user) as slow, socket(ORIGIN, admin_cookie_user) as quick:
        await snapshot_of(slow)
        await snapshot_of(quick)
        unblock = _stall(_first_opened())  # the consumer serving `slow`
        for n in range(1, 5):  # 1 being written, 2 to 4 queued: the outbox is exactly full
            committed["seq"] = n
            await sync_to_async(publish)([weekly(n, f"{n}.00")], after=n - 1, through=n)
            assert (await quick.receive_json_from(timeout=3))["total"] == f"{n}.00"
        # The dashboard's heartbeat (or any frame answered with an error) is one message too many.
        await slow.send_json_to(frame)
        await asyncio.wait_for(handled.wait(), 3)
        committed["seq"] = 5
        await sync_to_async(publish)([weekly(5, "5.00")], after=4, through=5)
        assert (await quick.receive_json_from(timeout=3))["total"] == "5.00"
        unblock.set()
        assert (await slow.receive_json_from(timeout=3))["total"] == "1.00"  # being written when it stalled
        # The dropped backlog (2 to 4) is replaced by a snapshot, never skipped in silence.
        snapshot = await slow.receive_json_from(timeout=3)
        assert snapshot["type"] == "snapshot"
        if snapshot["seq"] < 5:
            assert await slow.receive_json_from(timeout=3) == weekly(5, "5.00")
        assert await slow.receive_nothing(timeout=0.1)


def _stall(consumer) -> asyncio.Event:
    """Make `consumer`'s client stop reading (its buffers are full) until the returned event is set."""
    unblock = asyncio.Event()
    real_send = consumer.send_raw

    async def stuck_send(message):
        await unblock.wait()
        await real_send(message)

    consumer.send_raw = stuck_send
    return unblock


def _first_opened():
    """The hub's object for the socket opened first in this test (members are numbered in order)."""
    return min(current_hub().sockets, key=lambda consumer: int(consumer.member.rsplit(".", 1)[1]))


class FlakyLayer(InMemoryChannelLayer):
    """An in-memory layer whose receive fails once when told to, as a Redis connection would."""

    async def receive(self, channel):
        message = await super().receive(channel)
        if message.get("type") == "test.break":
            raise ConnectionError("Connection closed by server.")
        return message


async def test_the_hub_resubscribes_after_the_layer_fails_and_sends_every_socket_a_fresh_snapshot(admin_cookie_user, settings, fresh_layer):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "tests.realtime.test_hub.FlakyLayer"}}
    async with AsyncExitStack() as stack:
        opened = await open_many(stack, 3, ORIGIN, admin_cookie_user)
        hub = current_hub()
        layer = get_channel_layer()
        old_channel = hub.channel
        await layer.group_send(settings.REALTIME_GROUP, {"type": "test.break"})
        for ws, _ in opened:
            assert (await ws.receive_json_from(timeout=5))["type"] == "snapshot"
        assert hub.channel != old_channel and layer.groups[settings.REALTIME_GROUP].keys() == {hub.channel}
        seq = opened[0][1]
        await sync_to_async(publish)([weekly(seq + 1, "8.00")], after=seq, through=seq + 1)
        for ws, _ in opened:
            assert (await ws.receive_json_from(timeout=3))["total"] == "8.00"
            assert await ws.receive_nothing(timeout=0.05)


async def test_a_reconnect_storm_reads_the_snapshot_once_per_position(admin_cookie_user, fresh_layer, settings, monkeypatch):
    settings.REALTIME_MAX_SOCKETS_PER_USER = 1000
    reads = []
    real_read = hub_module.read_snapshot

    async def counted():
        reads.append(1)
        return await real_read()

    monkeypatch.setattr(hub_module, "read_snapshot", counted)
    async with AsyncExitStack() as stack:
        await open_many(stack, 1, ORIGIN, admin_cookie_user)  # the hub is up
        storm = [communicator(ORIGIN, admin_cookie_user) for _ in range(100)]
        for ws in storm:
            stack.push_async_callback(ws.disconnect)
        assert all(connected for connected, _ in await asyncio.gather(*(ws.connect(timeout=30) for ws in storm)))
        assert {(await snapshot_of(ws))["seq"] for ws in storm} == {0}
    assert len(reads) <= 2


REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_TEST_DB}"


@pytest.mark.needs_redis
async def test_three_hundred_handshakes_at_once_all_succeed_with_two_redis_connections(admin_cookie_user, fresh_layer, settings, monkeypatch):
    require("Redis", redis_available())
    prefix = f"lp-test-{uuid.uuid4().hex[:8]}"
    settings.REALTIME_MAX_SOCKETS_PER_USER = 1000
    monkeypatch.setattr(sockets, "POOL_SIZE", 2)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        with override_settings(REDIS_URL=REDIS_URL, CHANNELS_PREFIX=prefix):
            sockets._slots.clear()
            async with AsyncExitStack() as stack:
                storm = [communicator(ORIGIN, admin_cookie_user) for _ in range(300)]
                for ws in storm:
                    stack.push_async_callback(ws.disconnect)
                results = await asyncio.gather(*(ws.connect(timeout=60) for ws in storm))
                assert all(connected for connected, _ in results)
                for ws in storm:
                    await snapshot_of(ws)
                user_key = next(iter(current_hub().by_user))
                assert client.zcard(f"{prefix}:realtime:sockets:{user_key}") == 300
                # One pipelined renewal for all of them.
                await sockets.slots().renew_many([(s.user_key, s.member) for s in current_hub().sockets])
            assert client.zcard(f"{prefix}:realtime:sockets:{user_key}") == 0
    finally:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()
        sockets._slots.clear()


@pytest.fixture
def admin_cookie_user(admin_user, client_for):
    from tests.realtime.support import logged_in_sync

    return logged_in_sync(client_for, admin_user)[1]


@pytest.mark.needs_redis
async def test_a_batch_goes_through_the_redis_pub_sub_layer_once_per_process(admin_cookie_user, fresh_layer, settings):
    require("Redis", redis_available())
    # The production layer (core/settings.py), on the test's Redis database.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": f"lp-test-{uuid.uuid4().hex[:8]}"},
        }
    }
    async with AsyncExitStack() as stack:
        opened = await open_many(stack, 3, ORIGIN, admin_cookie_user)
        hub = current_hub()
        seq = opened[0][1]
        await sync_to_async(publish)([weekly(seq + 1, "4.00")], after=seq, through=seq + 1)
        for ws, _ in opened:
            assert (await ws.receive_json_from(timeout=3))["total"] == "4.00"
            assert await ws.receive_nothing(timeout=0.05)
        assert hub.layer_messages == 1


async def test_in_embedded_mode_a_batch_published_from_a_plain_thread_reaches_the_sockets(admin_cookie_user, fresh_layer):
    """HTTP runs on WSGI worker threads (core/asgi.py): no event loop of the server's is theirs to borrow."""
    import threading

    async with AsyncExitStack() as stack:
        (ws, seq), = await open_many(stack, 1, ORIGIN, admin_cookie_user)
        done = threading.Event()
        worker = threading.Thread(target=lambda: (publish([weekly(seq + 1, "2.00")], after=seq, through=seq + 1), done.set()))
        worker.start()
        assert (await ws.receive_json_from(timeout=3))["total"] == "2.00"
        await asyncio.get_running_loop().run_in_executor(None, worker.join, 5)
        assert done.is_set()
