"""Celery tasks: thin adapters around the projector, safe to run twice or concurrently; the commit hook that wakes them."""
import logging

from celery import shared_task

from analytics import projection, selectors, waiting, wakeup
from realtime.broadcast import publish

logger = logging.getLogger(__name__)

# Bounded work per run: after this many batches the task hands over to a fresh run.
MAX_BATCHES_PER_RUN = 20


def project_and_publish(*, max_batches: int = MAX_BATCHES_PER_RUN) -> int:
    """Project until caught up (or the bound), publishing each batch after it commits."""
    projected = 0
    for _ in range(max_batches):
        try:
            batch = projection.project_next_batch()
        except projection.ProjectionFailed as exc:
            # Logged here once, with the positions, and not raised: Celery would log the
            # same traceback again. The next wake-up or beat's catch-up retries the batch,
            # and /readyz turns 503 while the oldest unapplied event ages past its limit.
            logger.error("%s", exc, exc_info=exc.cause)
            return projected
        if batch is None:
            return projected
        projected += batch.event_count
        publish(batch.messages, after=batch.after, through=batch.through)
        waiting.announce_position(batch.through)
        if batch.short:
            # A short batch read everything that could be read: whatever commits (or was still
            # in flight) after that read wakes the projector itself, since the flag was cleared
            # before it. Asking again would cost a transaction per run for nothing.
            return projected
    project_weekly_income.delay()
    return projected


@shared_task(name="analytics.project_weekly_income")
def project_weekly_income() -> int:
    wakeup.clear()
    return project_and_publish()


def wake_projector(sender, last_position: int, **kwargs) -> None:
    """events_committed receiver: enqueue a projector run unless one is already pending."""
    if wakeup.claim(last_position):
        project_weekly_income.delay()


@shared_task(name="analytics.catch_up_projections")
def catch_up_projections() -> int:
    """Periodic (beat): whatever a lost wake-up left behind is projected within seconds.

    When there was nothing to project it still publishes an empty batch at the current
    position: a consumer whose last batch was lost (Redis restarting, say) sees that it
    is behind and resyncs, instead of waiting for the next approval to reveal the gap.
    """
    projected = project_and_publish()
    if not projected:
        position = selectors.projection_position()
        publish([], after=position, through=position)
    return projected
