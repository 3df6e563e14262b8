"""Strict serializer fields: ASCII digits, ISO dates and clean text only, for query strings and JSON bodies."""
import re
from datetime import date
from decimal import Decimal

from rest_framework import serializers

from core.validation import text_problem


class ExponentNumber(Decimal):
    """A JSON number written with an exponent (1e3, 12.5e0), as core.parsers reads it.

    It keeps its value, but Decimal("12.5e0") alone could not be told from 12.5: this
    type lets every field refuse it instead of turning it into money or an integer.
    """


# int() and str.isdigit() also take "١٢٣", "１２", "²" and " 5": these take ASCII digits only.
_DIGITS = re.compile(r"[0-9]+")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# RFC 3339 / ISO 8601 extended format; the offset is checked by the field that needs one.
_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]{1,9})?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)?")
# Positions are PostgreSQL bigints: a larger value could only fail deeper down.
MAX_BIGINT = 2**63 - 1
# Dates the week arithmetic can always handle: a week start minus 11 weeks, or plus one week, stays a date.
EARLIEST_DATE = date(1900, 1, 1)
LATEST_DATE = date(9999, 12, 24)


def parse_digits(value) -> int | None:
    """The integer spelled by ASCII digits, or None for anything else (signs, spaces, other scripts)."""
    if isinstance(value, str) and len(value) <= 30 and _DIGITS.fullmatch(value):
        return int(value)
    return None


def is_iso_datetime(value) -> bool:
    return isinstance(value, str) and bool(_DATETIME.fullmatch(value))


class StrictIntegerField(serializers.IntegerField):
    """A non-negative integer: a JSON integer, or a string of ASCII digits; never 1.0, 1e3 or "١٢"."""

    default_error_messages = {"invalid": "Must be a whole number written with the ASCII digits 0-9."}

    def __init__(self, **kwargs):
        kwargs.setdefault("max_value", MAX_BIGINT)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        number = parse_digits(data)
        if number is None:
            self.fail("invalid")
        return number


class StrictDateField(serializers.DateField):
    """YYYY-MM-DD in ASCII digits, between EARLIEST_DATE and LATEST_DATE."""

    default_error_messages = {
        "invalid": "Date must be YYYY-MM-DD in ASCII digits.",
        "range": f"Date must be from {EARLIEST_DATE.isoformat()} to {LATEST_DATE.isoformat()}.",
    }

    def to_internal_value(self, value):
        if not isinstance(value, str) or not _DATE.fullmatch(value):
            self.fail("invalid")
        try:
            day = date.fromisoformat(value)
        except ValueError:
            self.fail("invalid")
        if not EARLIEST_DATE <= day <= LATEST_DATE:
            self.fail("range")
        return day


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 datetime in ASCII that must carry its UTC offset: a naive one is ambiguous."""

    default_error_messages = {
        "naive": "Datetime must include a UTC offset, e.g. 2026-11-21T09:30:00+01:00.",
        "ascii": "Datetime must be ISO 8601 in ASCII, e.g. 2026-11-21T09:30:00+01:00.",
    }

    def to_internal_value(self, value):
        if not is_iso_datetime(value):
            self.fail("ascii")
        return super().to_internal_value(value)

    def enforce_timezone(self, value):
        if value.tzinfo is None:
            self.fail("naive")
        return super().enforce_timezone(value)


class StrictTextField(serializers.CharField):
    """Free text as core.validation defines it: a string, no control or bidirectional formatting characters."""

    def __init__(self, *, multiline: bool = False, **kwargs):
        self.multiline = multiline
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        # Checked before CharField trims: str.strip() would silently drop "\x1f" at either end.
        problem = text_problem(data, max_length=self.max_length or 10**6, multiline=self.multiline)
        if problem:
            raise serializers.ValidationError(f"{self.field_name} {problem}", code="invalid")
        return super().to_internal_value(data)
