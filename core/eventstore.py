"""Append-only event store: optimistic concurrency per stream, gap-safe global positions."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from core.errors import Conflict
from core.models import StoredEvent
from core.signals import events_committed


class ConcurrencyConflict(Conflict):
    """The stream moved on since the caller read it; nothing was written."""

    def __init__(self, stream_id, expected_version: int, actual_version: int | None):
        self.stream_id = stream_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(f"stream {stream_id} is at version {actual_version}, not the expected {expected_version}")


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
    obviously correct and each append holds it for well under a millisecond.
    SQLite needs nothing: it already admits one writer at a time.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("LOCK TABLE core_event IN EXCLUSIVE MODE")


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
