"""Redis clients for the configured topology: one server (REDIS_URL) or a master found through Sentinel (REDIS_SENTINELS).

Every Redis client of the project is made here (or from channel_layer_host/broker_url for the libraries that
make their own), so one setting moves all of them to Sentinel. With Sentinel, REDIS_URL is
redis://[user:password@]MASTER_NAME/DB: the host part is the master's name in the Sentinels' configuration,
and each new connection asks a Sentinel where that master is now, so after a failover reconnecting finds
the promoted replica (docs/scaling.md).
"""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

# Connections to the Sentinels themselves: a Sentinel that does not answer is skipped after a second.
SENTINEL_KWARGS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}


def master_params(url: str) -> tuple[str, dict]:
    """The master's Sentinel name and the connection parameters (db, credentials, TLS) of a Sentinel-mode REDIS_URL."""
    parts = urlsplit(url)
    # Not parts.hostname: it lowercases, and Sentinel master names are case-sensitive.
    name = parts.netloc.rpartition("@")[2]
    params: dict = {"db": int(parts.path.strip("/") or 0)}
    if parts.username:
        params["username"] = unquote(parts.username)
    if parts.password:
        params["password"] = unquote(parts.password)
    if parts.scheme == "rediss":
        params["ssl"] = True
    return name, params


def channel_layer_host(url: str, sentinels: list[tuple[str, int]], **options) -> dict:
    """One `hosts` entry of channels_redis: an address, or a master behind Sentinel (channels_redis.utils.create_pool)."""
    if not sentinels:
        return {"address": url, **options}
    name, params = master_params(url)
    return {"master_name": name, "sentinels": list(sentinels), "sentinel_kwargs": dict(SENTINEL_KWARGS), **params, **options}


def broker_url(url: str, sentinels: list[tuple[str, int]]) -> str:
    """Kombu's URL for the same Redis: REDIS_URL itself, or one sentinel:// URL per Sentinel joined with ";"
    (the master's name goes in the transport option master_name; the credentials and db apply to the master)."""
    if not sentinels:
        return url
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    auth = f"{userinfo}@" if userinfo else ""
    db = parts.path.strip("/") or "0"
    return ";".join(f"sentinel://{auth}{f'[{host}]' if ':' in host else host}:{port}/{db}" for host, port in sentinels)


def _settings_url(url: str | None) -> tuple[str, list[tuple[str, int]]]:
    """The URL to connect to and, when it is REDIS_URL in Sentinel mode, the Sentinels (another URL,
    say a CELERY_BROKER_URL of its own, is a plain server)."""
    from django.conf import settings

    if url is None or url == settings.REDIS_URL:
        return settings.REDIS_URL, list(getattr(settings, "REDIS_SENTINELS", []))
    return url, []


def client(url: str | None = None, **options) -> redis.Redis:
    """A client on REDIS_URL's server (or Sentinel's current master); `options` are redis-py connection options."""
    url, sentinels = _settings_url(url)
    if not sentinels:
        return redis.Redis.from_url(url, **options)
    name, params = master_params(url)
    return redis.sentinel.Sentinel(sentinels, sentinel_kwargs=dict(SENTINEL_KWARGS)).master_for(name, **params, **options)


class _BlockingSentinelConnectionPool(redis.asyncio.sentinel.SentinelConnectionPool, redis.asyncio.BlockingConnectionPool):
    """Sentinel's master discovery with BlockingConnectionPool's wait for a free connection."""


def async_client(url: str | None = None, *, blocking: bool = False, **options) -> redis.asyncio.Redis:
    """An asyncio client (it belongs to the running event loop); `blocking`: a full pool makes callers wait
    (max_connections, timeout) instead of failing."""
    url, sentinels = _settings_url(url)
    if not sentinels:
        if blocking:
            return redis.asyncio.Redis(connection_pool=redis.asyncio.BlockingConnectionPool.from_url(url, **options))
        return redis.asyncio.Redis.from_url(url, **options)
    name, params = master_params(url)
    manager = redis.asyncio.sentinel.Sentinel(sentinels, sentinel_kwargs=dict(SENTINEL_KWARGS))
    pool_class = _BlockingSentinelConnectionPool if blocking else redis.asyncio.sentinel.SentinelConnectionPool
    return manager.master_for(name, connection_pool_class=pool_class, **params, **options)


class SentinelCachePool(redis.sentinel.SentinelConnectionPool):
    """Django's RedisCache `pool_class` in Sentinel mode: its LOCATION is REDIS_URL and OPTIONS carry `sentinels`."""

    @classmethod
    def from_url(cls, url: str, *, sentinels, **options) -> "SentinelCachePool":
        name, params = master_params(url)
        manager = redis.sentinel.Sentinel([tuple(s) for s in sentinels], sentinel_kwargs=dict(SENTINEL_KWARGS))
        return cls(name, manager, **params, **options)
