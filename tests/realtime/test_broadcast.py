"""Publishing from synchronous code (a Celery worker) through the Redis channel layer."""
import asyncio
import json
import threading
import time
import uuid
from unittest.mock import patch

import pytest
from channels.layers import InMemoryChannelLayer, channel_layers, get_channel_layer
from django.test import override_settings

from realtime import broadcast
from realtime.broadcast import batch_event, publish
from tests.stack import REDIS_TEST_DB

pytestmark = pytest.mark.needs_redis


def listening(count: int, layer, group: str) -> tuple[list, threading.Thread]:
    """A thread with its own event loop receiving `count` messages of `group` on `layer`; returns once it has joined."""
    received = []

    async def listen(ready: threading.Event):
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        ready.set()
        for _ in range(count):
            received.append(await asyncio.wait_for(layer.receive(channel), 10))

    ready = threading.Event()
    listener = threading.Thread(target=lambda: asyncio.run(listen(ready)))
    listener.start()
    assert ready.wait(10)
    return received, listener


@pytest.fixture
def redis_layer():
    config = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:6379/{REDIS_TEST_DB}"], "prefix": f"lp-test-{uuid.uuid4().hex[:8]}"},
        }
    }
    with override_settings(CHANNEL_LAYERS=config):
        yield get_channel_layer()
    channel_layers.backends = {}


def test_a_batch_carries_its_range_and_each_message_encoded_once_with_its_ordering_key():
    message = {"type": "weekly_income.updated", "seq": 5, "week_start": "2026-11-16", "currency": "EUR", "total": "1.00", "count": 1}
    approved = {"type": "transaction.approved", "seq": 4, "transaction": {}}
    event = batch_event([approved, message], after=3, through=5)
    assert (event["type"], event["after"], event["through"]) == ("dashboard.batch", 3, 5)
    first, second = event["items"]
    assert (second["seq"], second["key"]) == (5, "2026-11-16/EUR")
    assert json.loads(second["text"]) == message
    assert first["key"] is None


def test_many_publishes_from_one_process_all_arrive_in_order(redis_layer, settings):
    """Each call is like one Celery task; the old failure mode was the second one in a process."""
    received, listener = listening(5, redis_layer, settings.REALTIME_GROUP)
    loops = set()
    for seq in range(1, 6):
        publish([{"type": "transaction.approved", "seq": seq, "transaction": {"id": str(seq)}}], after=seq - 1, through=seq)
        loops.add(id(broadcast._background_loop().loop))
    listener.join(15)
    assert [json.loads(event["items"][0]["text"])["seq"] for event in received] == [1, 2, 3, 4, 5]
    assert len(loops) == 1  # one long-lived loop and connection pool per process


def test_a_failed_publish_is_logged_not_raised(caplog):
    broken = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}}
    with override_settings(CHANNEL_LAYERS=broken):
        publish([{"type": "transaction.approved", "seq": 1, "transaction": {}}], after=0, through=1, timeout=3)
    channel_layers.backends = {}
    assert "publishing a dashboard batch (1 messages, up to 1) failed" in caplog.text


class SlowLayer(InMemoryChannelLayer):
    """A layer whose group_send takes 0.5 s: it records the pushes that got through."""

    delivered: list = []

    async def group_send(self, group, message):
        await asyncio.sleep(0.5)
        SlowLayer.delivered.append(message)


def test_a_publish_that_times_out_is_cancelled_and_never_delivered_later(caplog):
    SlowLayer.delivered = []
    slow = {"default": {"BACKEND": "tests.realtime.test_broadcast.SlowLayer"}}
    # Not the in-memory path: publish must go through the background loop like Redis does.
    with override_settings(CHANNEL_LAYERS=slow), patch.object(broadcast, "InMemoryChannelLayer", ()):
        publish([{"type": "transaction.approved", "seq": 1, "transaction": {}}], after=0, through=1, timeout=0.1)
        time.sleep(0.8)
    channel_layers.backends = {}
    assert "publishing a dashboard batch (1 messages, up to 1) failed" in caplog.text
    assert SlowLayer.delivered == []


@pytest.fixture
def pubsub_layer():
    """The production layer (channels_redis' pub/sub) on the test Redis, given by address as settings give it."""
    config = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": f"redis://127.0.0.1:6379/{REDIS_TEST_DB}"}], "prefix": f"lp-test-{uuid.uuid4().hex[:8]}"},
        }
    }
    with override_settings(CHANNEL_LAYERS=config):
        yield get_channel_layer()
    channel_layers.backends = {}


def test_on_the_pub_sub_layer_a_publish_goes_straight_from_the_calling_thread_and_arrives_in_order(pubsub_layer, settings):
    received, listener = listening(5, pubsub_layer, settings.REALTIME_GROUP)

    def no_loop_thread():
        raise AssertionError("published through the loop thread")

    with patch.object(broadcast, "_background_loop", no_loop_thread):
        for seq in range(1, 6):
            publish([{"type": "transaction.approved", "seq": seq, "transaction": {"id": str(seq)}}], after=seq - 1, through=seq)
    listener.join(15)
    assert [(event["type"], event["after"], event["through"]) for event in received] == [
        ("dashboard.batch", seq - 1, seq) for seq in range(1, 6)
    ]
    assert [json.loads(event["items"][0]["text"])["seq"] for event in received] == [1, 2, 3, 4, 5]


def test_on_the_pub_sub_layer_a_failed_publish_is_logged_not_raised(caplog):
    broken = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                          "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1/0"}]}}}
    with override_settings(CHANNEL_LAYERS=broken):
        publish([{"type": "transaction.approved", "seq": 1, "transaction": {}}], after=0, through=1, timeout=1)
    channel_layers.backends = {}
    assert "publishing a dashboard batch (1 messages, up to 1) failed" in caplog.text
