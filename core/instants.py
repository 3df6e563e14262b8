"""The one text form a stored instant takes: what `datetime.isoformat()` writes for an aware datetime.

Why one form: the projector reads occurred_at with Python (small batches) or pandas (large ones), the
rebuild with PostgreSQL's `::timestamptz`, the verifier with Python again. Each accepts forms the
others refuse or read differently (ISO week dates, the basic format without separators, seven
fractional digits that PostgreSQL rounds up across midnight, offsets beyond PostgreSQL's ±15:59).
Within this form all of them read the same instant, so a week never depends on which one ran.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta

_FORM = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(?P<offset>Z|[+-]\d{2}:\d{2}(:\d{2})?)?", re.ASCII)
# PostgreSQL refuses a UTC offset of 16 hours or more ("time zone displacement out of range").
_LARGEST_OFFSET = timedelta(hours=15, minutes=59, seconds=59)
EXAMPLE = "2026-11-16T09:30:00+00:00"


def parse_instant(text: str) -> datetime:
    """The aware datetime `text` names; ValueError saying what is wrong unless it is in the one form."""
    match = _FORM.fullmatch(text)
    if not match:
        raise ValueError(f"must be an ISO 8601 date and time like {EXAMPLE} (at most 6 fractional digits), not {text!r}")
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"must be an ISO 8601 date and time like {EXAMPLE}, not {text!r}") from None
    if match["offset"] is None:
        raise ValueError("must carry its UTC offset")
    if abs(instant.utcoffset()) > _LARGEST_OFFSET:
        raise ValueError(f"must carry a UTC offset between -15:59 and +15:59, not {text[-6:]!r}")
    return instant
