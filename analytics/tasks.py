"""Celery tasks: thin adapters around the projector, safe to run twice or concurrently; the commit hook that wakes them."""
import logging
import threading
import time
import uuid

from celery import shared_task
from structlog.contextvars import bind_contextvars, clear_contextvars

from analytics import projection, selectors, waiting, wakeup
from core import logconfig, metrics, tracing
from core.logfilters import EVERY
from realtime.broadcast import publish

logger = logging.getLogger(__name__)

# Bounded work per run: after this many batches the task hands over to a fresh run.
MAX_BATCHES_PER_RUN = 20


def project_and_publish(*, max_batches: int = MAX_BATCHES_PER_RUN) -> int:
    """Project every registered projection until caught up (or the bound), publishing each batch after it commits."""
    # One run serves every projection (one batch, one transaction): its metrics keep the label they
    # always had, the first projection's, so dashboards and alerts on it go on working.
    with metrics.ProjectionRun(projection.CHECKPOINT) as run:
        return _project_and_publish(run, max_batches)


def _project_and_publish(run: metrics.ProjectionRun, max_batches: int) -> int:
    projected = 0
    for _ in range(max_batches):
        started = time.perf_counter()
        try:
            batch = projection.project_next_batch()
        except projection.ProjectionFailed as exc:
            run.outcome = "failed"
            # Logged here once, with the positions, and not raised: Celery would log the
            # same traceback again. The next wake-up or beat's catch-up retries the batch,
            # and /readyz turns 503 while the oldest unapplied event ages past its limit.
            logger.error("%s", exc, exc_info=exc.cause)
            return projected
        if batch is None:
            return projected
        run.batch(started=started, event_count=batch.event_count)
        projected += batch.event_count
        request_ids = _log_batch(batch)
        publish(batch.messages, after=batch.after, through=batch.through, request_ids=request_ids)
        published_at = time.time()
        _mark_published(batch.through)
        metrics.observe_publish_latency(oldest=min(event.recorded_at for event in batch.events), published_at=published_at)
        if batch.short:
            # A short batch read everything that could be read: whatever commits (or was still
            # in flight) after that read wakes the projector itself, since the flag was cleared
            # before it. Asking again would cost a transaction per run for nothing.
            return projected
    run.outcome = "handed_over"
    project_weekly_income.delay()
    return projected


def _mark_published(through: int) -> None:
    """The fast lane's fallback checks read how far batches were published; waiting readers hear of it (one round trip)."""
    try:
        wakeup.mark_published(through, announce_channel=waiting.announcement_channel())
    except Exception:  # noqa: BLE001 - both are hints: a fallback check enqueues a spare run, waiters poll
        logger.warning("announcing projection position %d failed; waiters will poll", through, exc_info=True)


def _log_batch(batch: projection.ProjectedBatch) -> list[str]:
    """One line per batch, naming the requests whose events it projected (the first few: a rebuild-sized
    batch is counted, not listed); with tracing on, the task's span links to their traces."""
    limit = tracing.MAX_LINKS if tracing.active() else logconfig.MAX_LISTED_IDS
    metadatas = [event.metadata or {} for event in batch.events[:limit]]
    tracing.link_events(metadatas)
    request_ids = logconfig.request_ids(metadatas)
    logger.info(
        "projected a weekly income batch",
        extra={**EVERY, "after": batch.after, "through": batch.through, "events": batch.event_count, "request_ids": request_ids},
    )
    return request_ids


@shared_task(name="analytics.project_weekly_income")
def project_weekly_income() -> int:
    wakeup.clear()
    return project_and_publish()


def run_woken() -> int:
    """What the fast lane's listener runs per wake-up: the task's body, on the listener's own connection."""
    from django.db import connection

    connection.close_if_unusable_or_obsolete()
    # Its lines carry the task's name and a run id of their own, as a task run's do (the listener's
    # thread has its own context: the pool process's task lines are untouched).
    clear_contextvars()
    bind_contextvars(task=project_weekly_income.name, task_id=f"fast-lane-{uuid.uuid4().hex}")
    try:
        wakeup.clear()
        return project_and_publish()
    finally:
        clear_contextvars()
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


_listener: tuple[threading.Thread, threading.Event] | None = None


def start_listener() -> None:
    """Start this worker process's fast-lane listener (celery_app, in each pool process); not in embedded mode."""
    global _listener
    from django.conf import settings

    if settings.CELERY_TASK_ALWAYS_EAGER or not settings.REDIS_URL or _listener is not None:
        return
    stop = threading.Event()
    thread = threading.Thread(target=wakeup.listen, args=(run_woken, stop), name="projector-fast-lane", daemon=True)
    thread.start()
    _listener = (thread, stop)


def stop_listener(timeout: float = 5) -> None:
    """Let a run in progress finish (its publish included) and end the listener."""
    global _listener
    if _listener is None:
        return
    thread, stop = _listener
    stop.set()
    thread.join(timeout)
    _listener = None


def wake_projector(sender, last_position: int, **kwargs) -> None:
    """events_committed receiver: enqueue a projector run unless one is already pending."""
    wakeup.wake(last_position, project_weekly_income)


@shared_task(name="analytics.catch_up_projections")
def catch_up_projections() -> int:
    """Periodic (beat): whatever a lost wake-up left behind is projected within seconds.

    When there was nothing to project it still publishes an empty batch at the current
    position (the lowest checkpoint: never ahead of what any projection has applied): a consumer whose last batch was lost (Redis restarting, say) sees that it
    is behind and resyncs, instead of waiting for the next approval to reveal the gap.
    """
    projected = project_and_publish()
    if not projected:
        position = selectors.projection_position()
        publish([], after=position, through=position)
    return projected
