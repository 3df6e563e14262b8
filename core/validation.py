"""Checks shared by the REST serializers and the commands: free text and the occurred_at window."""
from __future__ import annotations

import unicodedata
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from core.errors import InvalidInput

# Bidirectional formatting characters: "INV\u202eFDP.exe" displays as "INVexe.PDF".
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# The only control characters a multi-line field (description, reason) may hold.
LINE_BREAKS = frozenset("\n\r\t")
# Letters and symbols that draw nothing (Hangul fillers, the blank Braille pattern, Khmer inherent
# vowels, variation selectors, the combining grapheme joiner): str.strip() keeps them all.
INVISIBLE = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u2800\u3164\uffa0"
    + "".join(map(chr, range(0xFE00, 0xFE10)))
    + "".join(map(chr, range(0xE0100, 0xE01F0)))
)


def text_problem(value, *, max_length: int, multiline: bool) -> str | None:
    """Why `value` cannot be stored as free text, or None when it can."""
    if not isinstance(value, str):
        return "must be a string"
    if len(value) > max_length:
        return f"must be at most {max_length} characters"
    for char in value:
        if char in BIDI_CONTROLS:
            return f"must not contain the bidirectional control character U+{ord(char):04X}"
        category = unicodedata.category(char)
        if category == "Cc" and not (multiline and char in LINE_BREAKS):
            return f"must not contain the control character U+{ord(char):04X}"
        if category in ("Zl", "Zp") and not multiline:
            # U+2028 and U+2029 break a line as surely as "\n" does.
            return f"must be one line: no line or paragraph separator U+{ord(char):04X}"
        if category == "Cs":
            return "must not contain unpaired surrogates"
    return None


def looks_blank(value: str) -> bool:
    """True when `value` would show nothing: only spaces, format characters (U+200B, U+FEFF) or INVISIBLE ones."""
    return all(char.isspace() or char in INVISIBLE or unicodedata.category(char) in ("Cf", "Zs", "Zl", "Zp") for char in value)


def clean_text(value, *, field: str, max_length: int, multiline: bool = False) -> str:
    problem = text_problem(value, max_length=max_length, multiline=multiline)
    if problem:
        raise InvalidInput(field, f"{field} {problem}")
    return value


def occurred_at_window(now: datetime | None = None) -> tuple[datetime, datetime]:
    """The earliest and latest occurred_at accepted now (both inclusive)."""
    now = now or timezone.now()
    return settings.OCCURRED_AT_EARLIEST, now + settings.OCCURRED_AT_MAX_AHEAD


def occurred_at_problem(value: datetime, now: datetime | None = None) -> str | None:
    if timezone.is_naive(value):
        return "must carry a UTC offset"
    earliest, latest = occurred_at_window(now)
    if value < earliest:
        return f"must not be before {earliest.date().isoformat()}"
    if value > latest:
        hours = int(settings.OCCURRED_AT_MAX_AHEAD.total_seconds() // 3600)
        return f"must not be more than {hours} hours in the future"
    return None


def check_occurred_at(value: datetime, *, field: str = "occurred_at", now: datetime | None = None) -> datetime:
    problem = occurred_at_problem(value, now)
    if problem:
        raise InvalidInput(field, f"{field} {problem}")
    return value
