"""Signals the event store sends; subscribers (the projector's wake-up) live in other apps."""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable

from django.db import transaction
from django.dispatch import Signal

# Sent after the transaction that appended events has committed, with
# `last_position`: the highest position that transaction wrote, and `events`: the RecordedEvents of
# this append (receivers that count them, such as metrics, need no query).
events_committed = Signal()


class _Coalesced:
    """The commits heard inside one coalesced_commits() block, announced together once it ends."""

    def __init__(self):
        self.sender: Any = None
        self.last_position: int | None = None
        self.events: list = []
        self.sent = False

    def add(self, sender, last_position: int, events) -> bool:
        if self.sent:
            return False  # committed after the block's own announcement: announced on its own
        self.sender = self.sender or sender
        self.last_position = last_position if self.last_position is None else max(self.last_position, last_position)
        self.events.extend(events)
        return True

    def send(self) -> None:
        self.sent = True
        if self.last_position is not None:
            events_committed.send(sender=self.sender, last_position=self.last_position, events=self.events)


_coalescing: ContextVar[_Coalesced | None] = ContextVar("coalesced_commits", default=None)


def committed_announcement(*, sender, last_position: int, events) -> Callable[[], None]:
    """What an append hands to on_commit: send events_committed for its events.

    Inside coalesced_commits() (bound now, when the append runs, because the commit may come after
    the block has ended: a unit of work commits after its view returns) it adds them to the block's
    one announcement instead.
    """
    coalesced = _coalescing.get()

    def announce() -> None:
        if coalesced is None or not coalesced.add(sender, last_position, events):
            events_committed.send(sender=sender, last_position=last_position, events=events)

    return announce


@contextmanager
def coalesced_commits():
    """Commands run in this block announce their commits as ONE events_committed send when it ends.

    For a batch of commands (transactions.bulk): one projector wake-up and one run after the last
    commit, instead of one per command interleaved with the appends. The send carries the highest
    position and every committed event (metrics count them). It happens when the block ends, also
    when it ends with an exception (what committed must still wake the projector), or, inside a
    transaction, when that commits (never if it rolls back, and neither do the commits it held).
    A block inside another adds to the outer one.
    """
    if _coalescing.get() is not None:
        yield
        return
    coalesced = _Coalesced()
    token = _coalescing.set(coalesced)
    try:
        yield
    finally:
        _coalescing.reset(token)
        # Outside a transaction on_commit runs it at once (every command in the block has committed);
        # inside one it runs after the commands' own callbacks, which were registered before it.
        # robust: a failing receiver is logged, as for a single append's announcement.
        transaction.on_commit(coalesced.send, robust=True)
