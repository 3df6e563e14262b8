"""Input and output serializers for the analytics API."""
from rest_framework import serializers

from analytics.selectors import MAX_WEEKS
from core.money import MoneyError, normalize_currency


class WeeklyIncomeQuery(serializers.Serializer):
    currency = serializers.CharField(required=False)
    # `from` is a Python keyword, so it is declared through the class namespace.
    vars()["from"] = serializers.DateField(required=False)
    to = serializers.DateField(required=False)
    min_position = serializers.IntegerField(required=False, min_value=0)

    def validate_currency(self, value):
        try:
            return normalize_currency(value)
        except MoneyError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs):
        start, end = attrs.get("from"), attrs.get("to")
        if start and end:
            if end < start:
                raise serializers.ValidationError({"to": "to must not be before from"})
            if (end - start).days // 7 + 1 > MAX_WEEKS:
                raise serializers.ValidationError({"to": f"at most {MAX_WEEKS} weeks per request"})
        return attrs


class WeeklyIncomeRow(serializers.Serializer):
    week_start = serializers.DateField()
    currency = serializers.CharField()
    total = serializers.CharField()
    count = serializers.IntegerField()
