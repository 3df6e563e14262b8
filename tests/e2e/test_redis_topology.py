"""Every Redis client of the project follows a Sentinel failover: real master, replica and Sentinels, the master
SIGKILLed, and the same client objects (made before the failover) working on the promoted replica."""
import asyncio

import pytest
from django.core.cache.backends.redis import RedisCache
from django.test import override_settings

from core import redis as project_redis
from tests.redis_servers import MASTER_NAME, start_sentinel_setup

pytestmark = [pytest.mark.e2e, pytest.mark.no_deadline, pytest.mark.timeout(180)]


@pytest.fixture
def sentinel_redis(tmp_path):
    setup = start_sentinel_setup(tmp_path / "redis")
    try:
        with override_settings(REDIS_URL=setup.redis_url(5), REDIS_SENTINELS=[("127.0.0.1", s.port) for s in setup.sentinels]):
            yield setup
    finally:
        setup.topology.stop()


def test_the_sync_client_and_the_cache_reach_the_promoted_replica_after_the_master_is_killed(sentinel_redis):
    from django.conf import settings

    client = project_redis.client(socket_timeout=1, socket_connect_timeout=1)
    cache = RedisCache(settings.REDIS_URL, {"OPTIONS": {"pool_class": "core.redis.SentinelCachePool", "sentinels": settings.REDIS_SENTINELS}})
    try:
        client.set("before", "1")
        cache.set("cached", "before")
        first_master = sentinel_redis.master.client(db=5)  # REDIS_URL's database
        try:
            assert first_master.get("before") == b"1"
        finally:
            first_master.close()

        promoted = sentinel_redis.fail_over()

        # A write acknowledged by the old master was replicated before the kill (the replica was online).
        assert client.get("before") == b"1"
        client.set("after", "2")
        cache.set("cached", "after")
        assert cache.get("cached") == "after"
        on_promoted = promoted.client(db=5)
        try:
            assert on_promoted.get("after") == b"2"
        finally:
            on_promoted.close()
    finally:
        client.close()
        cache.close()


def test_the_channel_layer_resubscribes_on_the_promoted_replica_and_delivers_again(sentinel_redis):
    from channels_redis.pubsub import RedisPubSubChannelLayer
    from django.conf import settings

    async def scenario():
        layer = RedisPubSubChannelLayer(
            hosts=[project_redis.channel_layer_host(settings.REDIS_URL, settings.REDIS_SENTINELS, socket_connect_timeout=1)],
            prefix="topology-test",
        )
        slots = project_redis.async_client(blocking=True, max_connections=1, timeout=5, socket_timeout=3, socket_connect_timeout=1)
        try:
            channel = await layer.new_channel()
            await layer.group_add("dashboard", channel)
            await layer.group_send("dashboard", {"type": "before"})
            assert await asyncio.wait_for(layer.receive(channel), 10) == {"type": "before"}
            # One connection, two callers: the second waits for it (the socket slots' bounded pool) instead of failing.
            assert await asyncio.gather(slots.blpop("nothing", 1), slots.set("slot", "1")) == [None, True]

            promoted = await asyncio.to_thread(sentinel_redis.fail_over)

            # The subscription comes back by itself (the layer's receive loop reconnects through
            # Sentinel); wait for it on the promoted master, then a publish reaches the same channel.
            group = "topology-test__group__dashboard"
            new_master = promoted.client()
            try:
                deadline = asyncio.get_running_loop().time() + 30
                while new_master.pubsub_numsub(group) != [(group.encode(), 1)]:
                    assert asyncio.get_running_loop().time() < deadline, "the layer never subscribed on the new master"
                    await asyncio.sleep(0.1)
            finally:
                new_master.close()
            await layer.group_send("dashboard", {"type": "after"})
            assert await asyncio.wait_for(layer.receive(channel), 10) == {"type": "after"}
            assert await slots.get("slot") == b"1"  # the blocking-pool client (socket slots) follows too
        finally:
            await slots.aclose()
            await layer.flush()

    asyncio.run(scenario())


def test_the_celery_broker_connection_follows_the_master_through_the_sentinels(sentinel_redis):
    from django.conf import settings
    from kombu import Connection

    url = project_redis.broker_url(settings.REDIS_URL, settings.REDIS_SENTINELS)
    with Connection(url, transport_options={"master_name": MASTER_NAME, "socket_timeout": 2, "socket_connect_timeout": 1}) as conn:
        queue = conn.SimpleQueue("topology-test")
        try:
            queue.put({"n": 1})
            sentinel_redis.fail_over()
            # The queued message was replicated; publishing and consuming reconnect through Sentinel.
            conn.ensure_connection(max_retries=5, interval_start=0.2, interval_step=0.2)
            queue.put({"n": 2})
            received = []
            for _ in range(2):
                message = queue.get(timeout=10)
                received.append(message.payload["n"])
                message.ack()
            assert sorted(received) == [1, 2]
        finally:
            queue.close()
