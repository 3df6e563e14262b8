"""Bulk decisions: many approve/reject/reverse commands in one call, each its own atomic command."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from django.db import OperationalError

from core import tracing
from core.db import commands_one_by_one
from core.errors import Conflict, DomainError, InvalidInput
from core.signals import coalesced_commits
from transactions import services

MAX_DECISIONS = 500

# action -> the single-item command it runs: a bulk item means exactly what its own request would.
COMMANDS: dict[str, Callable[..., services.Decision]] = {
    "approve": services.transaction_approve,
    "reject": services.transaction_reject,
    "reverse": services.transaction_reverse,
}
ACTIONS = tuple(COMMANDS)
_DEADLOCK_DETECTED = "40P01"


class DecisionDeadlocked(Conflict):
    """Under one unit of work a batch holds every row it decided until it commits, so two batches that
    take the same rows in another order can deadlock; PostgreSQL undoes one item's statement."""

    code = "conflict"


@dataclass(frozen=True)
class BulkItemOutcome:
    """One item's result: its decision, or the refusal its own request would have answered."""

    id: uuid.UUID
    action: str
    decision: services.Decision | None = None
    error: DomainError | None = None


@dataclass(frozen=True)
class BulkOutcome:
    items: list[BulkItemOutcome]
    position: int | None  # the highest position appended, None when nothing was


def transaction_bulk_decide(
    *,
    decisions: Iterable[Mapping],
    actor: str,
    request_id: str | None = None,
    client_request_id: str | None = None,
) -> BulkOutcome:
    """Run each decision ({id, action, reason?, expected_version?}) in order, as its own command.

    A refused item (404, 409, 403, 400) keeps its error and the others go on; items run in the
    order given, so a second decision on the same id sees what the first one did (usually a 409).
    Anything else (a bug, a lost database) propagates: the items before it stay decided (unless the
    caller's unit of work rolls them all back). The projector hears of the batch once, after the
    last commit (core.signals.coalesced_commits).
    """
    decisions = list(decisions)
    _check(decisions)
    outcomes: list[BulkItemOutcome] = []
    with tracing.span("transaction_bulk_decide", attributes={"ledgerpulse.decisions": len(decisions)}):
        # Under an Idempotency-Key the view runs inside a unit of work: each command is then a
        # savepoint of it, and all commit with the stored answer. Otherwise each commits alone.
        with coalesced_commits(), commands_one_by_one():
            for item in decisions:
                outcomes.append(_decide_one(item, actor, request_id, client_request_id))
    positions = [outcome.decision.position for outcome in outcomes if outcome.decision is not None]
    return BulkOutcome(items=outcomes, position=max(positions, default=None))


def _check(decisions: list) -> None:
    """The shape the view's serializer already enforces, checked again for any other caller."""
    if not 1 <= len(decisions) <= MAX_DECISIONS:
        raise InvalidInput("decisions", f"decisions must hold 1 to {MAX_DECISIONS} items, not {len(decisions)}")
    for index, item in enumerate(decisions):
        if not isinstance(item, Mapping):
            raise InvalidInput(f"decisions[{index}]", "each decision must be an object")
        if not isinstance(item.get("id"), uuid.UUID):
            raise InvalidInput(f"decisions[{index}].id", "id must be a transaction id (a UUID)")
        if item.get("action") not in COMMANDS:
            raise InvalidInput(f"decisions[{index}].action", f"action must be one of {', '.join(ACTIONS)}")


def _decide_one(item: Mapping, actor: str, request_id, client_request_id) -> BulkItemOutcome:
    transaction_id, action = item["id"], item["action"]
    try:
        decision = COMMANDS[action](
            transaction_id=transaction_id,
            actor=actor,
            reason=item.get("reason") or "",
            expected_version=item.get("expected_version"),
            request_id=request_id,
            client_request_id=client_request_id,
        )
    except DomainError as exc:
        return BulkItemOutcome(id=transaction_id, action=action, error=exc)
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != _DEADLOCK_DETECTED:
            raise
        # Only this item's savepoint was undone (the rows locked before it stay ours), and the other
        # batch goes on once we commit: this item is a lost race, like a concurrent decision (409).
        error = DecisionDeadlocked(f"another request was deciding transaction {transaction_id} at the same time; nothing was written, retry")
        return BulkItemOutcome(id=transaction_id, action=action, error=error)
    return BulkItemOutcome(id=transaction_id, action=action, decision=decision)
