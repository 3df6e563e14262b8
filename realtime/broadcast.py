"""Publishing to the admin_dashboard group from synchronous code (a Celery worker, a command).

One channel-layer message per projected batch: it covers event positions (after, through]
and carries the batch's dashboard messages, each encoded to JSON once here; each process's
hub (realtime.hub) receives it once and forwards the texts as they are to its sockets.
Consecutive batches chain, so a socket whose position is behind a batch's start knows it
missed one (lost while Redis was away) and is sent a fresh snapshot instead.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import threading

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

from core import tracing
from core.logfilters import EVERY

logger = logging.getLogger(__name__)

BATCH_EVENT = "dashboard.batch"
RESYNC_EVENT = "dashboard.resync"
ACCESS_CHANGED = "access.changed"


def access_group() -> str:
    """The group every process's hub joins for `access.changed` messages; each names its user."""
    return f"{settings.REALTIME_GROUP}.access"


def item(message: dict) -> dict:
    """One pre-encoded dashboard message with its seq and ordering key."""
    key = None
    if message["type"] == "weekly_income.updated":
        key = f"{message['week_start']}/{message['currency']}"
    elif message["type"] == "review_queue.updated":
        key = f"review_queue/{message['week']['week_start']}"
    return {"seq": message["seq"], "key": key, "text": json.dumps(message, separators=(",", ":"))}


def batch_event(messages: list[dict], *, after: int, through: int) -> dict:
    return {"type": BATCH_EVENT, "after": after, "through": through, "items": [item(m) for m in messages]}


class _LoopThread:
    """One long-lived event loop per process for talking to the channel layer.

    asgiref's async_to_sync outside an event loop runs each call on a fresh loop
    and closes it, and redis connections cached for a closed loop then fail with
    "Event loop is closed" on the next task in the same worker. A loop that
    lives as long as the process keeps one connection pool for every task.
    """

    def __init__(self):
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="channel-layer-loop", daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float):
        """Run `coro` on the loop; past `timeout` it is cancelled, so a late push is never delivered."""
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self.loop)
        try:
            # wait_for cancels on the loop at the deadline; the margin covers a loop too busy to notice.
            return future.result(timeout + 1.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise


_loop_thread: _LoopThread | None = None
_loop_lock = threading.Lock()


def _background_loop() -> _LoopThread:
    global _loop_thread
    with _loop_lock:
        # A forked child (Celery prefork) inherits the object but not the thread.
        if _loop_thread is None or _loop_thread.pid != os.getpid():
            _loop_thread = _LoopThread()
        return _loop_thread


def _group_send(event: dict, timeout: float, group: str | None = None) -> None:
    layer = get_channel_layer()
    group = group or settings.REALTIME_GROUP
    if isinstance(layer, InMemoryChannelLayer):
        # In-process layer (embedded mode): its queues belong to the loop of this process's hub. The
        # caller is a WSGI worker thread or a test's thread, with no loop of the server's to borrow.
        from realtime.hub import serving_loop

        loop = serving_loop()
        if loop is None:
            return  # no socket open in this process: nobody to tell
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:  # sync code on the loop itself: waiting here would block the send for ever
            loop.create_task(layer.group_send(group, event))
        else:
            asyncio.run_coroutine_threadsafe(layer.group_send(group, event), loop).result(timeout)
    elif (direct := _direct_target(layer, group, timeout)) is not None:
        # The pub/sub layer's group_send is one PUBLISH of the serialized message to the group's
        # channel: sent from this thread with a blocking client, it costs no hop to the loop thread
        # and back (a few ms of a projector run on a loaded machine). The hubs cannot tell.
        client, channel = direct
        client.publish(channel, layer.serialize(event))
    else:
        _background_loop().run(layer.group_send(group, event), timeout)


_direct_clients: dict[tuple, object] = {}


def _direct_target(layer, group: str, timeout: float):
    """(a blocking Redis client of this process, the group's pub/sub channel) when `layer` is channels_redis'
    pub/sub layer on one Redis given by address; None otherwise (Sentinel, shards, other layers: the loop thread)."""
    from channels_redis.pubsub import RedisPubSubChannelLayer

    if not isinstance(layer, RedisPubSubChannelLayer):
        return None
    config = settings.CHANNEL_LAYERS.get("default", {}).get("CONFIG", {})
    hosts = config.get("hosts") or []
    if len(hosts) != 1:
        return None
    host = hosts[0]
    address = host.get("address") if isinstance(host, dict) else host if isinstance(host, str) else None
    if not isinstance(address, str):
        return None
    key = (os.getpid(), address, timeout)  # a forked child makes its own connection
    client = _direct_clients.get(key)
    if client is None:
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        from core.redis import client as redis_client

        # Retried like the layer's own connection: after a Redis restart the first publish reconnects.
        client = redis_client(
            address, socket_timeout=timeout, socket_connect_timeout=min(timeout, 5.0),
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        )
        _direct_clients[key] = client
    # channels_redis' group channel name (RedisPubSubLoopLayer._get_group_channel_name).
    return client, f"{config.get('prefix', 'asgi')}__group__{group}"


def publish(messages: list[dict], *, after: int, through: int, timeout: float = 5.0, request_ids: list[str] | None = None) -> None:
    """Send one projected batch to every dashboard socket. Losing it is tolerated:
    consumers notice the gap at the next batch, and the event log still has everything.
    A batch without messages is sent too: the chain must not break.

    One log line per batch sent, with its positions and the request ids of (the first of) its events;
    the empty batches the periodic catch-up sends to keep the chain are logged at DEBUG only."""
    fields = {"after": after, "through": through, "messages": len(messages), "request_ids": request_ids or []}
    with tracing.span("realtime.publish", kind="PRODUCER", attributes={"ledgerpulse.after": after, "ledgerpulse.through": through}):
        try:
            _group_send(batch_event(messages, after=after, through=through), timeout)
        except Exception:  # noqa: BLE001 - a failed push must not undo a committed projection
            logger.exception(
                "publishing a dashboard batch (%d messages, up to %d) failed; clients will resync", len(messages), through, extra=fields
            )
            return
    logger.log(logging.INFO if through > after else logging.DEBUG, "published a dashboard batch", extra={**EVERY, **fields})


def publish_resync(*, timeout: float = 5.0) -> None:
    """Tell every dashboard to start over from a fresh snapshot (after a rebuild)."""
    try:
        _group_send({"type": RESYNC_EVENT}, timeout)
    except Exception:  # noqa: BLE001
        logger.exception("publishing a dashboard resync failed")


def send_to_group(group: str, event: dict, *, timeout: float = 2.0) -> None:
    """Send one event to any group from synchronous code; raises on failure (the caller decides)."""
    _group_send(event, timeout, group)
