"""The weekly income projector: events after the checkpoint -> pandas -> rows + checkpoint, in one transaction."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd
from django.conf import settings
from django.db import transaction

from analytics.frames import weekly_totals
from analytics.models import ProjectionCheckpoint, WeeklyIncome
from core import eventstore
from core.money import format_minor_units, to_minor_units
from transactions import events as txn_events
from transactions.messages import transaction_messages

logger = logging.getLogger(__name__)

CHECKPOINT = "weekly_income"
BATCH_SIZE = 5000


class ProjectionConfigChanged(RuntimeError):
    """ANALYTICS_TIME_ZONE or ANALYTICS_WEEK_START changed since the rows were computed."""


@dataclass
class ProjectedBatch:
    # The batch covers positions (after, through]: consecutive batches chain without gaps,
    # which lets a consumer notice one it never received.
    after: int
    through: int
    event_count: int
    messages: list[dict] = field(default_factory=list)


def current_config() -> str:
    return f"{settings.ANALYTICS_TIME_ZONE}/{settings.ANALYTICS_WEEK_START}"


def approved_records(events: list[eventstore.RecordedEvent]) -> pd.DataFrame:
    rows = [
        (e.position, e.data["occurred_at"], e.data["currency"], to_minor_units(e.data["amount"], e.data["currency"]))
        for e in events
        if e.type == txn_events.APPROVED
    ]
    return pd.DataFrame(rows, columns=["position", "occurred_at", "currency", "amount_minor"])


def weekly_income_message(row: WeeklyIncome, seq: int) -> dict:
    return {
        "type": "weekly_income.updated",
        "seq": seq,
        "week_start": row.week_start.isoformat(),
        "currency": row.currency,
        "total": format_minor_units(row.total_minor, row.currency),
        "count": row.count,
    }


def _locked_checkpoint() -> ProjectionCheckpoint:
    # The row lock admits one projector at a time, so two workers never apply
    # the same events twice nor commit totals out of order.
    checkpoint, _ = ProjectionCheckpoint.objects.select_for_update().get_or_create(
        name=CHECKPOINT, defaults={"config": current_config()}
    )
    if checkpoint.config != current_config():
        raise ProjectionConfigChanged(
            f"weekly income was computed for {checkpoint.config!r} but settings say {current_config()!r}: "
            "run `manage.py rebuild_projections`"
        )
    return checkpoint


def _apply(frame: pd.DataFrame) -> list[WeeklyIncome]:
    """Add a batch's weekly deltas to the stored rows; returns the changed rows."""
    if frame.empty:
        return []
    keys = {(ws, cur) for ws, cur in zip(frame["week_start"], frame["currency"])}
    existing = {
        (row.week_start, row.currency): row
        for row in WeeklyIncome.objects.filter(
            week_start__in={k[0] for k in keys}, currency__in={k[1] for k in keys}
        )
    }
    changed = []
    for ws, cur, total, count, last in frame.itertuples(index=False, name=None):
        row = existing.get((ws, cur)) or WeeklyIncome(week_start=ws, currency=cur)
        row.total_minor += int(total)
        row.count += int(count)
        row.last_position = max(row.last_position, int(last))
        changed.append(row)
    WeeklyIncome.objects.bulk_create(
        changed,
        update_conflicts=True,
        unique_fields=["week_start", "currency"],
        update_fields=["total_minor", "count", "last_position"],
    )
    return changed


def project_next_batch(*, batch_size: int = BATCH_SIZE) -> ProjectedBatch | None:
    """Project the next batch of events; None when the projection is caught up."""
    with transaction.atomic():
        checkpoint = _locked_checkpoint()
        after = checkpoint.position
        batch = eventstore.read_all(after=after, limit=batch_size)
        if not batch:
            return None
        frame = weekly_totals(
            approved_records(batch),
            time_zone=settings.ANALYTICS_TIME_ZONE,
            week_start=settings.ANALYTICS_WEEK_START,
        )
        changed = _apply(frame)
        through = batch[-1].position
        checkpoint.position = through
        checkpoint.save(update_fields=["position", "updated_at"])
        messages = transaction_messages(batch)
        messages.extend(weekly_income_message(row, through) for row in changed)
    return ProjectedBatch(after=after, through=through, event_count=len(batch), messages=messages)


def projection_position() -> int:
    return ProjectionCheckpoint.objects.filter(name=CHECKPOINT).values_list("position", flat=True).first() or 0


def rebuild_weekly_income(*, batch_size: int = 50_000) -> int:
    """Replay the whole log into fresh rows, in one transaction; returns the new checkpoint."""
    with transaction.atomic():
        checkpoint, _ = ProjectionCheckpoint.objects.select_for_update().get_or_create(name=CHECKPOINT)
        WeeklyIncome.objects.all().delete()
        checkpoint.position = 0
        checkpoint.config = current_config()
        checkpoint.save()
        position = 0
        while batch := eventstore.read_all(after=position, limit=batch_size):
            frame = weekly_totals(
                approved_records(batch), time_zone=settings.ANALYTICS_TIME_ZONE, week_start=settings.ANALYTICS_WEEK_START
            )
            _apply(frame)
            position = batch[-1].position
        checkpoint.position = position
        checkpoint.save(update_fields=["position", "updated_at"])
    return position


def recompute_from_log(*, through: int) -> dict[tuple, tuple[int, int]]:
    """Weekly (total_minor, count) per (week_start, currency) from events up to `through`."""
    frames = []
    position = 0
    while position < through and (batch := eventstore.read_all(after=position, limit=50_000)):
        batch = [e for e in batch if e.position <= through]
        if not batch:
            break
        frames.append(approved_records(batch))
        position = batch[-1].position
    records = pd.concat(frames) if frames else approved_records([])
    frame = weekly_totals(records, time_zone=settings.ANALYTICS_TIME_ZONE, week_start=settings.ANALYTICS_WEEK_START)
    return {(ws, cur): (int(t), int(c)) for ws, cur, t, c, _ in frame.itertuples(index=False, name=None)}


def verify_weekly_income() -> list[str]:
    """Differences between the stored rows and a recomputation from the log; empty when they agree."""
    with transaction.atomic():
        # Hold the checkpoint so the rows cannot move while we compare them.
        checkpoint = ProjectionCheckpoint.objects.select_for_update().filter(name=CHECKPOINT).first()
        through = checkpoint.position if checkpoint else 0
        stored = {(r.week_start, r.currency): (r.total_minor, r.count) for r in WeeklyIncome.objects.all()}
        expected = recompute_from_log(through=through)
    problems = []
    if checkpoint and checkpoint.config != current_config():
        problems.append(f"config: rows are for {checkpoint.config}, settings say {current_config()}")
    for key in sorted(set(stored) | set(expected)):
        have, want = stored.get(key, (0, 0)), expected.get(key, (0, 0))
        if have != want:
            week, currency = key
            problems.append(
                f"{week} {currency}: stored total={format_minor_units(have[0], currency)} count={have[1]}, "
                f"log says total={format_minor_units(want[0], currency)} count={want[1]}"
            )
    return problems
