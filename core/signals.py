"""Signals the event store sends; subscribers (the projector's wake-up) live in other apps."""
from django.dispatch import Signal

# Sent after the transaction that appended events has committed, with
# `last_position`: the highest position that transaction wrote, and `events`: the RecordedEvents of
# this append (receivers that count them, such as metrics, need no query).
events_committed = Signal()
