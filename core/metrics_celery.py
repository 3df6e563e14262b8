"""Celery task metrics: run time by task and final state, failures; a pool process that exits drops its live gauges."""
from __future__ import annotations

import os
import time

from celery.signals import (
    task_failure, task_postrun, task_prerun, worker_process_init, worker_process_shutdown, worker_ready, worker_shutdown,
)

from core import metrics

# task id -> perf_counter at its start, in this process (a prefork pool process runs one task at a time).
_started: dict[str, float] = {}


def task_started(task_id=None, **kwargs) -> None:
    _started[task_id] = time.perf_counter()


def task_finished(task_id=None, task=None, state=None, **kwargs) -> None:
    started = _started.pop(task_id, None)
    if started is not None and task is not None:
        metrics.CELERY_TASK_DURATION.labels(task.name, state or "UNKNOWN").observe(time.perf_counter() - started)


def task_failed(sender=None, **kwargs) -> None:
    metrics.CELERY_TASK_FAILURES.labels(getattr(sender, "name", "unknown")).inc()


def pool_process_exiting(**kwargs) -> None:
    """A prefork pool process exiting normally: its live-mode gauges stop counting at once (a killed one
    is noticed by the next scrape, core/metrics_collect.py)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(os.getpid())


def connect() -> None:
    """Called by celery_app: the receivers, once per process whatever imports it."""
    task_prerun.connect(task_started, dispatch_uid="core.metrics_celery.task_started", weak=False)
    task_postrun.connect(task_finished, dispatch_uid="core.metrics_celery.task_finished", weak=False)
    task_failure.connect(task_failed, dispatch_uid="core.metrics_celery.task_failed", weak=False)
    worker_process_shutdown.connect(pool_process_exiting, dispatch_uid="core.metrics_celery.pool_process_exiting", weak=False)
    # The worker's own endpoint when METRICS_PORT is set (containers: web cannot read this group's files).
    from core import metrics_worker

    worker_ready.connect(metrics_worker.start, dispatch_uid="core.metrics_worker.start", weak=False)
    worker_shutdown.connect(metrics_worker.stop, dispatch_uid="core.metrics_worker.stop", weak=False)
    worker_process_init.connect(metrics_worker.pool_process_started, dispatch_uid="core.metrics_worker.pool_process_started", weak=False)
