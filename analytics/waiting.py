"""Read-your-writes: await the projection reaching a position while holding no thread and no database connection.

Many requests may wait at once (`min_position`, `at`): each is a future on the
server's event loop. One watcher per loop reads the checkpoint for all of them, when
the projector announces a new position on Redis pub/sub, and on a slow poll in case an
announcement is lost (or there is no Redis). Each read borrows a pooled connection for
one query and hands it straight back.
"""
from __future__ import annotations

import asyncio
import logging
import weakref

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

# With announcements the poll is only a safety net; without Redis it is the mechanism.
POLL_SECONDS_WITH_ANNOUNCEMENTS = 0.5
POLL_SECONDS_WITHOUT = 0.05


def announcement_channel() -> str:
    prefix = settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", "ledgerpulse")
    return f"{prefix}:projection:weekly_income"


def announce_position(position: int) -> None:
    """Tell waiting web processes that the projection moved (from the worker, after commit).

    Only a hint: listeners re-read the checkpoint, so a lost, late or foreign message
    changes nothing but when they look.
    """
    if not settings.REDIS_URL or settings.CELERY_TASK_ALWAYS_EAGER:
        return
    from analytics.wakeup import redis_client

    try:
        redis_client().publish(announcement_channel(), position)
    except Exception:  # noqa: BLE001 - waiters fall back to polling
        logger.warning("announcing projection position %d failed; waiters will poll", position, exc_info=True)


def _read_position() -> int:
    from analytics.projection import CHECKPOINT
    from analytics.selectors import projection_position

    try:
        # The only waiters are weekly income reads (`min_position`, `at`): its own checkpoint, not
        # the lowest, or a projection catching up from 0 would make every such read wait.
        return projection_position(CHECKPOINT)
    finally:
        # Back to the pool now: this thread may not query again for a long time.
        if not connection.in_atomic_block:
            connection.close()


class PositionWatcher:
    """All waiters of one event loop, served by one background task while any are waiting."""

    def __init__(self):
        self.waiters: dict[asyncio.Future, int] = {}
        self.known = 0
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def wait_for(self, position: int, timeout: float) -> bool:
        """True once the projection has applied `position`, False after `timeout` seconds."""
        if position <= self.known:
            return True
        future = asyncio.get_running_loop().create_future()
        self.waiters[future] = position
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._serve())
        else:
            self.wake.set()
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self.waiters.pop(future, None)

    def _pending(self) -> bool:
        return any(not future.done() for future in self.waiters)

    async def _serve(self) -> None:
        subscribed = asyncio.Event()
        listener = asyncio.create_task(self._listen(subscribed)) if settings.REDIS_URL else None
        poll = POLL_SECONDS_WITH_ANNOUNCEMENTS if listener else POLL_SECONDS_WITHOUT
        try:
            if listener:
                # Subscribe before the first read, so an announcement cannot fall between them.
                try:
                    await asyncio.wait_for(subscribed.wait(), 0.5)
                except TimeoutError:
                    poll = POLL_SECONDS_WITHOUT
            while self._pending():
                self.wake.clear()
                try:
                    self.known = max(self.known, await sync_to_async(_read_position, thread_sensitive=False)())
                except Exception:  # noqa: BLE001 - a database blip: waiters time out into 503 at worst
                    logger.warning("reading the projection position failed", exc_info=True)
                for future, position in list(self.waiters.items()):
                    if position <= self.known and not future.done():
                        future.set_result(None)
                if not self._pending():
                    break
                try:
                    await asyncio.wait_for(self.wake.wait(), poll)
                except TimeoutError:
                    pass
        finally:
            if listener:
                listener.cancel()

    async def _listen(self, subscribed: asyncio.Event) -> None:
        from core.redis import async_client  # REDIS_URL's server, or Sentinel's current master

        client = async_client(settings.REDIS_URL, socket_connect_timeout=1)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(announcement_channel())
            subscribed.set()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    self.wake.set()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the poll still serves the waiters
            logger.warning("listening for projection announcements failed; polling instead", exc_info=True)
        finally:
            try:
                await pubsub.aclose()
                await client.aclose()
            except Exception:  # noqa: BLE001
                pass


_watchers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PositionWatcher]" = weakref.WeakKeyDictionary()


async def wait_for_position(position: int, *, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    watcher = _watchers.get(loop)
    if watcher is None:
        watcher = _watchers[loop] = PositionWatcher()
    return await watcher.wait_for(position, timeout)
