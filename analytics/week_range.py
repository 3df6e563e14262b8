"""The [from, to] week range that the weekly income and review-queue queries share: defaults and limits."""
from datetime import date, timedelta

from django.conf import settings
from rest_framework import serializers

from analytics.selectors import DEFAULT_WEEKS, MAX_WEEKS
from core.fields import LATEST_DATE

_FIRST_WEEKDAY = {"monday": 0, "sunday": 6}


def _week_of(day: date) -> date:
    return day - timedelta(days=(day.weekday() - _FIRST_WEEKDAY[settings.ANALYTICS_WEEK_START]) % 7)


def validate_week_range(attrs: dict) -> dict:
    """`from` alone must leave room for its DEFAULT_WEEKS weeks; `to` not before `from`; at most MAX_WEEKS weeks."""
    start, end = attrs.get("from"), attrs.get("to")
    if start and not end and start > LATEST_DATE - timedelta(weeks=DEFAULT_WEEKS - 1):
        # `from` alone means DEFAULT_WEEKS weeks from it: they must end within the date window too.
        latest = (LATEST_DATE - timedelta(weeks=DEFAULT_WEEKS - 1)).isoformat()
        raise serializers.ValidationError(
            {"from": f"from without to must be at most {latest}: the {DEFAULT_WEEKS} weeks it covers must end by {LATEST_DATE.isoformat()}"}
        )
    if start and end:
        if end < start:
            raise serializers.ValidationError({"to": "to must not be before from"})
        # Counted in the weeks the days fall in: a `from` late in its week adds that whole week.
        if (_week_of(end) - _week_of(start)).days // 7 + 1 > MAX_WEEKS:
            raise serializers.ValidationError({"to": f"at most {MAX_WEEKS} weeks per request"})
    return attrs
