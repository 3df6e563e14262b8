"""Publishing plain-dict messages to the admin_dashboard group from synchronous code.

Each message is encoded to JSON once here; consumers forward the text as is.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import threading

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)

EVENT_TYPE = "dashboard.message"


def envelope(message: dict) -> dict:
    """The channel-layer event carrying one pre-encoded dashboard message."""
    key = None
    if message["type"] == "weekly_income.updated":
        key = f"{message['week_start']}/{message['currency']}"
    return {"type": EVENT_TYPE, "seq": message["seq"], "key": key, "text": json.dumps(message, separators=(",", ":"))}


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
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


_loop_thread: _LoopThread | None = None
_loop_lock = threading.Lock()


def _background_loop() -> _LoopThread:
    global _loop_thread
    with _loop_lock:
        # A forked child (Celery prefork) inherits the object but not the thread.
        if _loop_thread is None or _loop_thread.pid != os.getpid():
            _loop_thread = _LoopThread()
        return _loop_thread


async def _send_all(layer, group: str, events: list[dict]) -> None:
    for event in events:
        await layer.group_send(group, event)


def publish(messages: list[dict], *, timeout: float = 5.0) -> None:
    """Send messages to every dashboard socket, in order. Losing them is tolerated:
    clients resync from a snapshot, and the event log still has everything."""
    if not messages:
        return
    layer = get_channel_layer()
    events = [envelope(m) for m in messages]
    group = settings.REALTIME_GROUP
    try:
        if isinstance(layer, InMemoryChannelLayer):
            # In-process layer: must run on the ASGI server's own loop, which
            # async_to_sync finds when we are called from a sync view's thread.
            async_to_sync(_send_all)(layer, group, events)
        else:
            _background_loop().run(_send_all(layer, group, events), timeout)
    except Exception:  # noqa: BLE001 - a failed push must not undo a committed projection
        logger.exception("publishing %d dashboard messages failed; clients will resync", len(events))
