"""What each event type's data must hold, registered by the app that owns the type: checked before an import writes a line."""
from __future__ import annotations

from collections.abc import Callable

# check(stream_id, data) raises PayloadError naming the field at fault; returns nothing when the data is sound.
PayloadCheck = Callable[[str, dict], None]

_CHECKS: dict[str, PayloadCheck] = {}


class PayloadError(ValueError):
    """An event's data that its type's readers could not take: the field (a key of data, or "type") and why."""

    def __init__(self, field: str, detail: str):
        self.field, self.detail = field, detail
        super().__init__(f"{field}: {detail}")


def register(event_type: str, check: PayloadCheck) -> None:
    """Called from an app's ready(); a second, different check for the same type is a programming error."""
    if _CHECKS.get(event_type, check) is not check:
        raise RuntimeError(f"event type {event_type!r} already has a payload check")
    _CHECKS[event_type] = check


def known_types() -> list[str]:
    return sorted(_CHECKS)


def check(event_type: str, stream_id: str, data: dict) -> None:
    """PayloadError unless `data` is what readers of `event_type` expect (extra keys are allowed: older logs carry some)."""
    try:
        type_check = _CHECKS[event_type]
    except KeyError:
        # A type no reader knows would stop every projection at its position: refuse it before it is stored.
        raise PayloadError("type", f"unknown event type {event_type!r}; this version knows {', '.join(known_types()) or 'none'}") from None
    type_check(stream_id, data)
