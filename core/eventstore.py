"""Append-only event store: optimistic concurrency per stream, gap-safe global positions."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from core.errors import Conflict, DomainError
from core.models import StoredEvent
from core.signals import events_committed


class ConcurrencyConflict(Conflict):
    """The stream moved on since the caller read it; nothing was written."""

    def __init__(self, stream_id, expected_version: int, actual_version: int | None):
        self.stream_id = stream_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(f"stream {stream_id} is at version {actual_version}, not the expected {expected_version}")


class EventStoreBusy(DomainError):
    """The append lock was not free within EVENT_STORE_LOCK_TIMEOUT_MS; nothing was written."""

    status_code = 503
    code = "event_store_busy"
    title = "Event store busy"
    retry_after = 1


@dataclass(frozen=True)
class NewEvent:
    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class RecordedEvent:
    position: int
    stream_id: uuid.UUID
    version: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime

    @classmethod
    def from_row(cls, row: StoredEvent) -> "RecordedEvent":
        return cls(row.position, row.stream_id, row.version, row.type, row.data, row.metadata, row.recorded_at)


def _lock_for_append() -> None:
    """Serialize appends so that positions become visible in the order they were taken.

    A sequence hands out positions at INSERT time but transactions commit in any
    order, so without this a reader could see position 11 commit before 10 and
    skip 10 forever. The EXCLUSIVE lock (as the eventsourcing library does) lets
    readers through but admits one appender at a time until it commits. We chose
    it over reading below the oldest in-flight transaction id because it is
    obviously correct. It is not free: from LOCK to COMMIT an approval holds it
    for the INSERT, the read-model UPDATE and the COMMIT's WAL flush. Measured on
    PostgreSQL 15 (2 vCPUs, shared with other load): one thread approving 2,000
    transactions, p50 3.0 ms / p99 7.6 ms; 8 threads, p50 4-14 ms / p99 10-33 ms;
    through the API with an Idempotency-Key (the answer is stored before COMMIT),
    8 threads, p50 13-20 ms / p99 45-150 ms. So appends top out near 1/hold
    (100-200 a second here), and the wait is bounded by EVENT_STORE_LOCK_TIMEOUT_MS.
    SQLite needs nothing: it already admits one writer at a time.
    """
    if connection.vendor != "postgresql":
        return
    # Bounded wait: a holder that never lets go (a stuck session, an operator's open
    # transaction) turns into a retryable 503 instead of requests piling up behind it.
    # The timeout covers only this statement; later waits in the transaction keep the default.
    timeout_ms = int(settings.EVENT_STORE_LOCK_TIMEOUT_MS)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SET LOCAL lock_timeout = '{timeout_ms}ms'; "
                "LOCK TABLE core_event IN EXCLUSIVE MODE; "
                "SET LOCAL lock_timeout TO DEFAULT"
            )
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) == "55P03":  # lock_not_available
            raise EventStoreBusy(f"The event store stayed locked for {timeout_ms} ms; nothing was written, retry.") from exc
        raise


def stream_version(stream_id) -> int:
    row = StoredEvent.objects.filter(stream_id=stream_id).order_by("-version").values_list("version", flat=True).first()
    return row or 0


def append(*, stream_id, expected_version: int, events: Iterable[NewEvent], metadata: dict[str, Any]) -> list[RecordedEvent]:
    """Append events to a stream at `expected_version`, inside the caller's transaction.

    Raises ConcurrencyConflict (and the caller's transaction rolls back) when the
    stream is not at `expected_version`. Subscribers hear of the events only
    after the surrounding transaction commits.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("append() must run inside transaction.atomic()")
    events = list(events)
    if not events:
        return []
    _lock_for_append()
    actual = stream_version(stream_id)
    if actual != expected_version:
        raise ConcurrencyConflict(stream_id, expected_version, actual)
    now = timezone.now()
    rows = [
        StoredEvent(
            stream_id=stream_id,
            version=expected_version + offset,
            type=event.type,
            data=event.data,
            metadata=metadata,
            recorded_at=now,
        )
        for offset, event in enumerate(events, start=1)
    ]
    try:
        StoredEvent.objects.bulk_create(rows)
    except IntegrityError:
        # Only reachable if something appended without the lock; still a conflict.
        # The transaction is aborted now, so the actual version cannot be read.
        raise ConcurrencyConflict(stream_id, expected_version, None) from None
    recorded = [RecordedEvent.from_row(row) for row in rows]
    last_position = recorded[-1].position
    transaction.on_commit(
        lambda: events_committed.send(sender=StoredEvent, last_position=last_position),
        robust=True,
    )
    return recorded


def read_all(*, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
    """Events with position > `after`, in position order: safe to resume from the last one seen."""
    rows = StoredEvent.objects.filter(position__gt=after).order_by("position")[:limit]
    return [RecordedEvent.from_row(row) for row in rows]


def read_stream(stream_id) -> list[RecordedEvent]:
    rows = StoredEvent.objects.filter(stream_id=stream_id).order_by("version")
    return [RecordedEvent.from_row(row) for row in rows]


def last_position() -> int:
    return StoredEvent.objects.order_by("-position").values_list("position", flat=True).first() or 0
