"""Prometheus metrics: every series Ledgerpulse exposes, defined once here, and the small recorders that feed them.

prometheus_client decides at import whether values live in this process (no PROMETHEUS_MULTIPROC_DIR:
`make run`'s one process, the unit tests) or in per-process files that the /metrics view sums across
the web and worker processes (the Procfile sets the directory: core/metrics_dir.py). Every label here
takes values from a fixed set or from code (URL patterns, event types, task names), never from a
client, so the number of series stays bounded whatever is sent. See docs/metrics.md.
"""
from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Gauge, Histogram

from core.signals import events_committed

logger = logging.getLogger(__name__)

# Latency buckets (seconds) for HTTP requests and Celery tasks: 1 ms to 10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Commit -> publish: the projector usually runs within milliseconds; catch-up bounds it at seconds.
PUBLISH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)

# The transaction event types (transactions/events.py) counted as decisions; core names no domain module.
APPROVED_EVENT = "TransactionApproved"
REJECTED_EVENT = "TransactionRejected"

UNMATCHED_ROUTE = "<unmatched>"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Close codes worth a series of their own; any other (a client may send any 1000-4999) is "other".
KNOWN_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 1012, 1013, 4401, 4403, 4410, 4429})

HTTP_REQUESTS = Counter(
    "ledgerpulse_http_requests", "HTTP requests answered, by URL pattern, method and status code", ("route", "method", "status")
)
HTTP_DURATION = Histogram(
    "ledgerpulse_http_request_duration_seconds", "Time from the request reaching Django to its response, by URL pattern and method",
    ("route", "method"), buckets=LATENCY_BUCKETS,
)
APPROVALS = Counter("ledgerpulse_transaction_approvals", "Transactions approved (committed)")
REJECTIONS = Counter("ledgerpulse_transaction_rejections", "Transactions rejected (committed)")
EVENTS_APPENDED = Counter("ledgerpulse_events_appended", "Events committed to the event log, by type", ("type",))

PROJECTION_RUNS = Counter(
    "ledgerpulse_projection_runs", "Projector runs, by how they ended (caught_up, handed_over, failed)", ("projection", "outcome")
)
PROJECTION_RUN_DURATION = Histogram(
    "ledgerpulse_projection_run_duration_seconds", "Duration of one projector run (all its batches)", ("projection",), buckets=LATENCY_BUCKETS
)
PROJECTION_BATCH_EVENTS = Histogram(
    "ledgerpulse_projection_batch_events", "Events per projected batch", ("projection",), buckets=BATCH_SIZE_BUCKETS
)
PROJECTION_BATCH_DURATION = Histogram(
    "ledgerpulse_projection_batch_duration_seconds", "Time to project one batch (read, compute, write, commit)", ("projection",),
    buckets=LATENCY_BUCKETS,
)
COMMIT_TO_PUBLISH = Histogram(
    "ledgerpulse_commit_to_publish_seconds",
    "From the oldest event of a batch being recorded to the batch being handed to the channel layer",
    buckets=PUBLISH_BUCKETS,
)

# livesum: the sockets open now in the processes alive now (a dead process's count is dropped).
WEBSOCKET_CONNECTIONS = Gauge(
    "ledgerpulse_websocket_connections", "Dashboard websockets open (accepted and not yet closed)", multiprocess_mode="livesum"
)
WEBSOCKET_MESSAGES = Counter(
    "ledgerpulse_websocket_messages_sent", "Messages handed to dashboard sockets, by kind (update, snapshot, reply)", ("kind",)
)
WEBSOCKET_CLOSES = Counter(
    "ledgerpulse_websocket_closes", "Dashboard websockets closed, by close code and by which side closed", ("code", "by")
)

CELERY_TASK_DURATION = Histogram(
    "ledgerpulse_celery_task_duration_seconds", "Celery task run time in the worker, by task and final state", ("task", "state"),
    buckets=LATENCY_BUCKETS,
)
CELERY_TASK_FAILURES = Counter("ledgerpulse_celery_task_failures", "Celery tasks that raised, by task", ("task",))

# Children bound once: the fan-out path counts without a label lookup.
SENT_UPDATES = WEBSOCKET_MESSAGES.labels("update")
SENT_SNAPSHOTS = WEBSOCKET_MESSAGES.labels("snapshot")
SENT_REPLIES = WEBSOCKET_MESSAGES.labels("reply")


def close_code_label(code) -> str:
    return str(code) if code in KNOWN_CLOSE_CODES else "other"


def websocket_closed(code, *, by: str) -> None:
    WEBSOCKET_CLOSES.labels(close_code_label(code), by).inc()


def count_committed(sender=None, events=(), **kwargs) -> None:
    """events_committed receiver (after the commit, on the request's thread): events by type, and the decisions among them."""
    for event in events:
        counters = _by_type.get(event.type)
        if counters is None:
            counters = _by_type[event.type] = _counters_for(event.type)
        for counter in counters:
            counter.inc()


# Event type -> the counters one such event bumps, bound once (labels() validates and locks on every call).
_by_type: dict[str, tuple] = {}


def _counters_for(kind: str) -> tuple:
    decisions = {APPROVED_EVENT: (APPROVALS,), REJECTED_EVENT: (REJECTIONS,)}.get(kind, ())
    return (EVENTS_APPENDED.labels(kind), *decisions)


events_committed.connect(count_committed, dispatch_uid="core.metrics.count_committed")


class ProjectionRun:
    """Times one projector run and its batches: `with ProjectionRun("weekly_income") as run: ... run.batch(...)`."""

    def __init__(self, projection: str):
        self.projection = projection
        self.outcome = "caught_up"

    def __enter__(self) -> "ProjectionRun":
        self.started = time.perf_counter()
        return self

    def batch(self, *, started: float, event_count: int) -> None:
        PROJECTION_BATCH_DURATION.labels(self.projection).observe(time.perf_counter() - started)
        PROJECTION_BATCH_EVENTS.labels(self.projection).observe(event_count)

    def __exit__(self, exc_type, exc, tb) -> None:
        outcome = "failed" if exc_type is not None else self.outcome
        PROJECTION_RUN_DURATION.labels(self.projection).observe(time.perf_counter() - self.started)
        PROJECTION_RUNS.labels(self.projection, outcome).inc()


def observe_publish_latency(*, oldest, published_at: float) -> None:
    """Commit -> publish for a published batch: from its oldest event's recorded_at (`oldest`, set in the
    appending transaction just before its commit) to `published_at` (time.time() when the group_send
    returned)."""
    if oldest is not None:
        COMMIT_TO_PUBLISH.observe(max(0.0, published_at - oldest.timestamp()))
