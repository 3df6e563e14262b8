"""How many dashboard sockets each user has open, so one account cannot hold thousands.

With REDIS_URL the count is shared by every ASGI process: one sorted set per user in Redis, a
member per socket (its process's hub id and a number) scored with the time its lease ends. The
process's hub renews the leases of all its sockets every LEASE_RENEW_SECONDS in one pipeline; a
process that dies without saying goodbye leaves members that expire after LEASE_SECONDS, so crashed
processes do not hold slots for ever. Redis's clock is the only clock used. The client's pool is
bounded and makes callers wait for a connection (a storm of handshakes queues, never fails). Without
Redis (embedded mode, tests) the count is kept in this process.
"""
from __future__ import annotations

import asyncio
import logging
import weakref
from collections import defaultdict

from django.conf import settings

logger = logging.getLogger(__name__)

LEASE_SECONDS = 60
LEASE_RENEW_SECONDS = 20


class MemorySlots:
    """Per-process count (the in-memory channel layer serves only this process anyway)."""

    def __init__(self):
        self.held: dict[str, set[str]] = defaultdict(set)

    async def acquire(self, user_key: str, channel: str, limit: int) -> bool:
        held = self.held[user_key]
        if channel not in held and len(held) >= limit:
            return False
        held.add(channel)
        return True

    async def renew_many(self, held) -> None:
        pass

    async def release(self, user_key: str, channel: str) -> None:
        held = self.held.get(user_key)
        if held is not None:
            held.discard(channel)
            if not held:
                del self.held[user_key]

    def count(self, user_key: str) -> int:
        return len(self.held.get(user_key, ()))


# KEYS[1] the user's set; ARGV: member, limit, lease seconds.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local limit = tonumber(ARGV[2])
if limit > 0 and not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= limit then
  return 0
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(lease) + 1)
return 1
"""


# Many members at once: KEYS[1] the user's set; ARGV: lease seconds, then the members.
_RENEW = """
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], until_, ARGV[i])
end
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1])) + 1)
return #ARGV - 1
"""
# Connections one process's slot client may hold; a handshake past them waits for one.
POOL_SIZE = 16
POOL_WAIT_SECONDS = 10


class RedisSlots:
    """Shared by every process; fails open (logged) when Redis does not answer: the channel layer,
    on the same Redis, is then down too and no socket gets anything anyway."""

    def __init__(self, url: str, prefix: str, lease: int = LEASE_SECONDS):
        self.url = url
        self.prefix = prefix
        self.lease = lease
        # redis.asyncio clients belong to the event loop they were made on.
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def key(self, user_key: str) -> str:
        return f"{self.prefix}:realtime:sockets:{user_key}"

    def _client(self):
        from core.redis import async_client  # REDIS_URL's server, or Sentinel's current master

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = async_client(
                self.url, blocking=True, max_connections=POOL_SIZE, timeout=POOL_WAIT_SECONDS, socket_timeout=5, socket_connect_timeout=5
            )
            client.acquire_script = client.register_script(_ACQUIRE)
            client.renew_script = client.register_script(_RENEW)
            self._clients[loop] = client
        return client

    async def acquire(self, user_key: str, channel: str, limit: int) -> bool:
        try:
            client = self._client()
            return bool(await client.acquire_script(keys=[self.key(user_key)], args=[channel, limit, self.lease]))
        except Exception:  # noqa: BLE001
            logger.warning("counting sockets in Redis failed; this socket is not counted", exc_info=True)
            return True

    async def renew_many(self, held) -> None:
        """Renew every (user_key, member) lease of this process: one script call per user, one round trip."""
        by_user: dict[str, list[str]] = defaultdict(list)
        for user_key, member in held:
            by_user[user_key].append(member)
        if not by_user:
            return
        try:
            client = self._client()
            async with client.pipeline(transaction=False) as pipe:
                for user_key, members in by_user.items():
                    await client.renew_script(keys=[self.key(user_key)], args=[self.lease, *members], client=pipe)
                await pipe.execute()
        except Exception:  # noqa: BLE001
            logger.warning("renewing %d sockets' leases in Redis failed", sum(map(len, by_user.values())), exc_info=True)

    async def release(self, user_key: str, channel: str) -> None:
        try:
            await self._client().zrem(self.key(user_key), channel)
        except Exception:  # noqa: BLE001
            logger.warning("releasing a socket's slot in Redis failed; its lease expires instead", exc_info=True)

    async def count(self, user_key: str) -> int:
        client = self._client()
        return await client.zcount(self.key(user_key), "(" + str((await client.time())[0]), "+inf")


_slots: dict[tuple, object] = {}


def slots():
    """The counter for the current settings (Redis when REDIS_URL is set)."""
    redis_url = getattr(settings, "REDIS_URL", None)
    key = (redis_url, getattr(settings, "CHANNELS_PREFIX", "ledgerpulse"))
    counter = _slots.get(key)
    if counter is None:
        counter = RedisSlots(redis_url, key[1]) if redis_url else MemorySlots()
        _slots[key] = counter
    return counter
