"""Wake the projector after events commit, coalescing bursts into few task runs."""
import logging

from django.conf import settings

logger = logging.getLogger(__name__)

WAKE_KEY = "ledgerpulse:projector:wake-pending"
# If a wake-up is lost (broker hiccup), the flag expires and the next commit, or
# the periodic catch-up, wakes the projector again.
WAKE_TTL_SECONDS = 5

_redis = None


def _redis_client():
    global _redis
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    return _redis


def on_events_committed(sender, last_position: int, **kwargs) -> None:
    from analytics.tasks import project_weekly_income

    if settings.CELERY_TASK_ALWAYS_EAGER:
        project_weekly_income.delay()
        return
    # One pending wake-up at a time: the task clears the flag before it reads the
    # log, so an event committed after that read sets it again and is not missed.
    if settings.REDIS_URL and not _redis_client().set(WAKE_KEY, last_position, nx=True, ex=WAKE_TTL_SECONDS):
        return
    project_weekly_income.delay()


def clear_wake_flag() -> None:
    if settings.REDIS_URL and not settings.CELERY_TASK_ALWAYS_EAGER:
        _redis_client().delete(WAKE_KEY)
