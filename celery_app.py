"""Celery application: `celery -A celery_app worker` and `celery -A celery_app beat`."""
import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_init, worker_process_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")

app = Celery("ledgerpulse")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["analytics", "core", "realtime"])

# Task run times and failures for /metrics (docs/metrics.md).
from core.metrics_celery import connect as _connect_task_metrics  # noqa: E402

_connect_task_metrics()

# Lines through LOGGING, as JSON (Celery would put its own plain-text handler on the root logger), a task's
# lines with its id; with tracing on, a span per task run (docs/logs-and-traces.md).
from core import logconfig as _logconfig, tracing as _tracing  # noqa: E402

_logconfig.connect_celery()
_tracing.connect_celery()


@task_prerun.connect
@task_postrun.connect
def return_connections(sender=None, **kwargs):
    """Around every task in a worker: its database connections back to Django's pool, broken ones dropped.

    What Celery's Django fixup would do, minus closing the pool itself (CELERY_DB_REUSE_MAX).
    An eager task (embedded mode) runs inside a request, whose connection is left alone.
    """
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


@worker_process_init.connect
def start_projector_fast_lane(**kwargs):
    """Each pool process listens for the projector's wake-ups itself (analytics.wakeup, the fast lane);
    PROJECTOR_FAST_LANE=false leaves every wake-up to the broker. What the process imported is frozen
    out of the garbage collector first, as in the web processes (core/asgi.py): a full collection
    then no longer stalls a projection run for tens of milliseconds."""
    import gc

    from django.conf import settings

    gc.freeze()

    if settings.PROJECTOR_FAST_LANE:
        from analytics.tasks import start_listener

        start_listener()


@worker_process_shutdown.connect
def stop_projector_fast_lane(**kwargs):
    from analytics.tasks import stop_listener

    stop_listener()
