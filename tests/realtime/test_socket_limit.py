"""At most REALTIME_MAX_SOCKETS_PER_USER open sockets per user: the next is closed with 4429."""
import asyncio
import uuid
from contextlib import AsyncExitStack

import pytest
import redis
from django.test import override_settings

from realtime import sockets
from realtime.sockets import RedisSlots
from tests.realtime.support import ORIGIN, closed, logged_in, snapshot_of, socket
from tests.services import redis_available, require
from tests.stack import REDIS_TEST_DB

REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_TEST_DB}"


async def open_sockets(stack: AsyncExitStack, count: int, *headers):
    opened = []
    for _ in range(count):
        ws = await stack.enter_async_context(socket(*headers))
        await snapshot_of(ws)
        opened.append(ws)
    return opened


@pytest.mark.django_db(transaction=True)
async def test_it_closes_the_21st_socket_of_a_user_with_4429_and_lets_one_in_when_another_closes(admin_user, staff_user, client_for):
    _, cookie = await logged_in(client_for, admin_user)
    async with AsyncExitStack() as stack:
        opened = await open_sockets(stack, 20, ORIGIN, cookie)
        async with socket(ORIGIN, cookie) as extra:
            assert await extra.receive_output(timeout=3) == closed(4429, "too many open sockets for this user (at most 20)")
        # Another user is not affected.
        _, other_cookie = await logged_in(client_for, staff_user)
        async with socket(ORIGIN, other_cookie) as other:
            await snapshot_of(other)
        # A closed socket gives its slot back.
        await opened.pop().disconnect()
        async with socket(ORIGIN, cookie) as again:
            await snapshot_of(again)


@pytest.mark.django_db(transaction=True)
async def test_it_takes_the_limit_from_settings_and_does_not_count_refused_sockets(admin_user, client_for, settings):
    settings.REALTIME_MAX_SOCKETS_PER_USER = 2
    _, cookie = await logged_in(client_for, admin_user)
    async with AsyncExitStack() as stack:
        await open_sockets(stack, 2, ORIGIN, cookie)
        for _ in range(3):
            async with socket(ORIGIN, cookie) as refused:
                assert (await refused.receive_output(timeout=3))["code"] == 4429
    # Everything closed: the whole allowance is free again.
    assert sockets.slots().count(str(admin_user.pk)) == 0


@pytest.fixture
def redis_slots():
    prefix = f"lp-test-{uuid.uuid4().hex[:8]}"
    # The shared gate: skipped without Redis on a developer machine, failed under CI=true.
    require("Redis", redis_available())
    client = redis.Redis.from_url(REDIS_URL)
    yield RedisSlots(REDIS_URL, prefix, lease=2)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


@pytest.mark.needs_redis
async def test_it_counts_sockets_across_processes_in_redis(redis_slots):
    assert all([await redis_slots.acquire("7", f"channel-{n}", 3) for n in range(3)])
    assert not await redis_slots.acquire("7", "channel-3", 3)
    assert await redis_slots.acquire("7", "channel-0", 3)  # the same socket again is not a new one
    assert await redis_slots.acquire("8", "channel-9", 3)  # per user
    await redis_slots.release("7", "channel-1")
    assert await redis_slots.acquire("7", "channel-3", 3)


@pytest.mark.needs_redis
async def test_it_frees_the_slots_of_a_crashed_process_when_their_lease_ends(redis_slots):
    assert await redis_slots.acquire("7", "crashed", 2)
    assert await redis_slots.acquire("7", "alive", 2)
    await asyncio.sleep(1.2)
    await redis_slots.renew_many([("7", "alive")])  # a live process renews; the crashed one cannot
    await asyncio.sleep(1.2)
    assert await redis_slots.acquire("7", "new", 2)
    assert not await redis_slots.acquire("7", "one-too-many", 2)


@pytest.mark.needs_redis
@pytest.mark.django_db(transaction=True)
async def test_it_uses_redis_for_the_count_when_redis_url_is_set(admin_user, client_for, settings):
    prefix = f"lp-test-{uuid.uuid4().hex[:8]}"
    settings.REALTIME_MAX_SOCKETS_PER_USER = 2
    _, cookie = await logged_in(client_for, admin_user)
    client = redis.Redis.from_url(REDIS_URL)
    key = f"{prefix}:realtime:sockets:{admin_user.pk}"
    try:
        # The channel layer stays in memory; only the count goes to Redis.
        with override_settings(REDIS_URL=REDIS_URL, CHANNELS_PREFIX=prefix):
            # Another process already holds one of this user's two sockets.
            client.zadd(key, {"other-process!channel": float(client.time()[0] + 60)})
            async with socket(ORIGIN, cookie) as first:
                await snapshot_of(first)
                assert client.zcard(key) == 2
                async with socket(ORIGIN, cookie) as second:
                    assert (await second.receive_output(timeout=3))["code"] == 4429
            assert client.zrange(key, 0, -1) == [b"other-process!channel"]
    finally:
        client.delete(key)
        client.close()
