"""The projector's coalescing wake-up flag in Redis: one pending wake-up at a time, so bursts become few runs."""
import logging

from django.conf import settings

logger = logging.getLogger(__name__)

WAKE_KEY = "ledgerpulse:projector:wake-pending"
# If a wake-up is lost (broker hiccup), the flag expires and the next commit, or
# the periodic catch-up, wakes the projector again.
WAKE_TTL_SECONDS = 5

_redis = None


def redis_client():
    """This process's Redis client for the flag and the position announcements (short timeouts)."""
    global _redis
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    return _redis


def claim(last_position: int) -> bool:
    """True when a commit must enqueue a projector run; False when one is already pending.

    A lone commit always claims (no added latency). The run clears the flag before it
    reads the log, so an event committed after that read claims again and is not missed.
    In embedded mode (no broker) every commit runs the projector in-process.
    """
    if settings.CELERY_TASK_ALWAYS_EAGER or not settings.REDIS_URL:
        return True
    return bool(redis_client().set(WAKE_KEY, last_position, nx=True, ex=WAKE_TTL_SECONDS))


def clear() -> None:
    """Called by a run before it reads the log: the next commit wakes the projector again."""
    if settings.REDIS_URL and not settings.CELERY_TASK_ALWAYS_EAGER:
        redis_client().delete(WAKE_KEY)
