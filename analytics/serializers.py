"""Input and output serializers for the analytics API."""
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from analytics.review_queue_serializers import ReviewQueueSnapshotOutput
from analytics.week_range import validate_week_range
from core.fields import StrictDateField, StrictIntegerField
from core.money import MoneyError, normalize_currency
from core.schema import CURRENCY_PARAMETER


@extend_schema_field(CURRENCY_PARAMETER)
class CurrencyField(serializers.CharField):
    pass


class WeeklyIncomeQuery(serializers.Serializer):
    currency = CurrencyField(required=False)
    # `from` is a Python keyword, so it is declared through the class namespace.
    vars()["from"] = StrictDateField(required=False)
    to = StrictDateField(required=False)
    min_position = StrictIntegerField(required=False, min_value=0, help_text="Wait until the projection has applied this position")
    at = StrictIntegerField(required=False, min_value=0, help_text="Answer as of this event position (time travel)")

    def validate_currency(self, value):
        try:
            return normalize_currency(value)
        except MoneyError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs):
        if "at" in attrs and "min_position" in attrs:
            raise serializers.ValidationError({"at": "use either at or min_position, not both"})
        return validate_week_range(attrs)


class WeeklyIncomeRow(serializers.Serializer):
    week_start = serializers.DateField()
    currency = serializers.CharField()
    total = serializers.CharField(help_text="The net: gross - reversed (negative when reversals outweigh the week's income)")
    count = serializers.IntegerField(help_text="Approvals whose occurred_at falls in the week")
    gross = serializers.CharField(help_text="Approved amounts whose occurred_at falls in the week")
    reversed = serializers.CharField(help_text="Amounts reversed during the week (when the reversal was recorded)")
    reversed_count = serializers.IntegerField(help_text="Reversals recorded during the week")
    net = serializers.CharField(help_text="gross - reversed; the same as total")


class WeeklyIncomeOutput(serializers.Serializer):
    time_zone = serializers.CharField()
    week_start_day = serializers.ChoiceField(choices=["monday", "sunday"])
    as_of = serializers.IntegerField(help_text="The last event position these totals reflect")
    results = WeeklyIncomeRow(many=True)


class PeriodTotal(serializers.Serializer):
    week_start = serializers.DateField()
    total = serializers.CharField(help_text="Net: gross - reversed")
    gross = serializers.CharField()
    reversed = serializers.CharField()


class RangeTotal(serializers.Serializer):
    total = serializers.CharField(help_text="Net: gross - reversed")
    gross = serializers.CharField()
    reversed = serializers.CharField()
    # "from" is a keyword, see WeeklyIncomeQuery.
    vars()["from"] = serializers.DateField()


class CurrencySummary(serializers.Serializer):
    currency = serializers.CharField()
    this_week = PeriodTotal()
    last_week = PeriodTotal()
    change_percent = serializers.CharField(allow_null=True)
    last_4_weeks = RangeTotal()
    previous_4_weeks = RangeTotal()
    change_percent_4_weeks = serializers.CharField(allow_null=True)


class SummaryOutput(serializers.Serializer):
    as_of = serializers.IntegerField()
    results = CurrencySummary(many=True)


class PendingOutput(serializers.Serializer):
    count = serializers.IntegerField()
    latest = serializers.ListField(child=serializers.DictField())
    as_of = serializers.IntegerField(help_text="The last event position the pending list reflects (may be ahead of seq)")


class SnapshotOutput(serializers.Serializer):
    type = serializers.ChoiceField(choices=["snapshot"])
    seq = serializers.IntegerField()
    time_zone = serializers.CharField()
    week_start_day = serializers.CharField()
    weekly_income = WeeklyIncomeRow(many=True)
    pending = PendingOutput()
    review_queue = ReviewQueueSnapshotOutput(help_text="Pending now and this week's decisions (GET /api/analytics/review-queue/)")
