"""The projection registry: the read models the projector keeps current, each with its own checkpoint.

A projection is a subclass of `Projection` listed (by dotted path) in PROJECTIONS below:

    class ReviewQueue(Projection):
        name = "review_queue"                       # its ProjectionCheckpoint row
        handles = frozenset({"TransactionSubmitted", "TransactionApproved", ...})

        def apply(self, events, *, through):        # the batch function
            ...                                     # write its tables; return its dashboard messages
        def rebuild(self, *, readers):              # -> Rebuilt(position, summary)
            ...
        def verify(self):                           # -> ["what differs", ...], [] when the tables agree with the log
            ...

The projector (analytics.projection.project_next_batch) locks every registered checkpoint row
(in name order), reads ONE batch of the log from the lowest checkpoint, and calls each projection's
`apply` with the events of that batch that it `handles` and that lie past its own checkpoint, in
position order, inside the projector's transaction; then it moves each checkpoint to the batch's end.
Every projection's rows and every checkpoint commit together or not at all: an exception from
any `apply` rolls the whole batch back (analytics.projection.ProjectionFailed names the projection),
and the next run tries it again. `apply` is not called when none of the batch's events are for it
(its checkpoint still moves). It must not commit, must not publish (the caller publishes after
commit) and must be deterministic: the same events give the same rows. Messages carry
`"seq": through`, the batch's last position, so a client never applies a stale value.

`rebuild` recomputes the projection from the whole log and moves its checkpoint; it may hold its
own checkpoint row lock (SELECT ... FOR UPDATE) only briefly, for a final catch-up and a swap: the
projector waits on that lock, so a long hold stalls every projection, not only this one. The other
projections' rows and checkpoints are not touched. `verify` re-derives the rows from the log with
arithmetic of its own and lists the differences; it takes no projector lock.

A projection that sends its writes as one multi-statement execute (PostgreSQL) should put
`take_checkpoint_move()` in front of them when it returns a statement: the projector's checkpoint
UPDATE then travels in the same round trip instead of one of its own. It returns None outside a
projector batch (a rebuild) or once taken; the projector runs it itself if no projection took it.

`config()` names the settings the rows were computed with (stored on the checkpoint row); when it
changes, the projector refuses to run (ProjectionConfigChanged) until that projection is rebuilt.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.utils.module_loading import import_string

# In this order: the first is the one the dashboard's `seq` and `min_position` speak about.
PROJECTIONS = (
    "analytics.projection.WeeklyIncomeProjection",
    "analytics.review_queue.ReviewQueue",
)


@dataclass(frozen=True)
class Rebuilt:
    position: int  # the checkpoint the rebuilt rows reflect
    summary: str  # one line for the operator


class Projection(ABC):
    """One read model: see the module docstring for the contract. A subclass missing one of the
    abstract methods cannot be instantiated, so the registry refuses it when it loads."""

    name: str = ""
    handles: frozenset[str] = frozenset()

    def config(self) -> str:
        """The settings the rows depend on; a change needs a rebuild. Weeks cut by zone and first day, by default."""
        return f"{settings.ANALYTICS_TIME_ZONE}/{settings.ANALYTICS_WEEK_START}"

    @abstractmethod
    def apply(self, events: list, *, through: int) -> list[dict]:
        """The batch's messages, after writing this projection's rows (inside the caller's transaction)."""

    @abstractmethod
    def rebuild(self, *, readers: int) -> Rebuilt:
        """Recompute from the whole log and move this projection's checkpoint."""

    @abstractmethod
    def verify(self) -> list[str]:
        """What differs between the stored rows and the log; [] when they agree."""

    def __repr__(self) -> str:
        return f"<projection {self.name}>"


# The projector's checkpoint UPDATE (sql, params) while a batch is applied, until a projection takes it.
checkpoint_move: ContextVar[tuple[str, list] | None] = ContextVar("checkpoint_move", default=None)


def take_checkpoint_move() -> tuple[str, list] | None:
    """The projector's checkpoint UPDATE for the caller to send ahead of its own statements, once; else None."""
    move = checkpoint_move.get()
    if move is not None:
        checkpoint_move.set(None)
    return move


class UnknownProjection(LookupError):
    """A name that is not registered."""


@lru_cache(maxsize=1)
def projections() -> tuple[Projection, ...]:
    """Every registered projection, one instance each, in PROJECTIONS order."""
    found = tuple(import_string(path)() for path in PROJECTIONS)
    names = [p.name for p in found]
    if len(set(names)) != len(names) or not all(names):
        raise RuntimeError(f"projection names must be unique and non-empty: {names}")
    return found


def names() -> list[str]:
    return [p.name for p in projections()]


def get(name: str) -> Projection:
    for projection in projections():
        if projection.name == name:
            return projection
    raise UnknownProjection(f"no projection named {name!r}; registered: {', '.join(names())}")


def selected(name: str | None) -> tuple[Projection, ...]:
    """`--projection NAME` for the commands: that one, or every projection when None."""
    return projections() if name is None else (get(name),)
