"""Input and output serializers for the review-queue API."""
from datetime import timedelta

from rest_framework import serializers

from analytics.selectors import DEFAULT_WEEKS, MAX_WEEKS
from core.fields import LATEST_DATE, StrictDateField


class ReviewQueueQuery(serializers.Serializer):
    # `from` is a Python keyword, so it is declared through the class namespace.
    vars()["from"] = StrictDateField(required=False, help_text="First week (any day in it); default: 11 weeks before `to`")
    to = StrictDateField(required=False, help_text="Last week (any day in it); default: this week, or 11 weeks after `from`")

    def validate(self, attrs):
        start, end = attrs.get("from"), attrs.get("to")
        if start and not end and start > LATEST_DATE - timedelta(weeks=DEFAULT_WEEKS - 1):
            latest = (LATEST_DATE - timedelta(weeks=DEFAULT_WEEKS - 1)).isoformat()
            raise serializers.ValidationError({"from": f"from without to must be at most {latest}: the {DEFAULT_WEEKS} weeks it covers must end by {LATEST_DATE.isoformat()}"})
        if start and end:
            if end < start:
                raise serializers.ValidationError({"to": "to must not be before from"})
            if (end - start).days // 7 + 1 > MAX_WEEKS:
                raise serializers.ValidationError({"to": f"at most {MAX_WEEKS} weeks per request"})
        return attrs


class AdminDecisions(serializers.Serializer):
    actor = serializers.CharField()
    decisions = serializers.IntegerField()


class ReviewQueueWeekOutput(serializers.Serializer):
    week_start = serializers.DateField()
    approved = serializers.IntegerField()
    rejected = serializers.IntegerField()
    reversed = serializers.IntegerField(help_text="Reversals recorded in this week")
    decisions = serializers.IntegerField(help_text="approved + rejected + reversed")
    time_to_decision_p50_seconds = serializers.IntegerField(
        allow_null=True, help_text="Median whole seconds from submission to approval or rejection (nearest rank); null without any"
    )
    time_to_decision_p90_seconds = serializers.IntegerField(allow_null=True, help_text="90th percentile, nearest rank; null without any")
    by_admin = AdminDecisions(many=True, help_text="Decisions per actor, most first")


class ReviewQueuePendingOutput(serializers.Serializer):
    count = serializers.IntegerField(help_text="Pending and awaiting a second approval")
    oldest_submitted_at = serializers.DateTimeField(allow_null=True)
    oldest_age_seconds = serializers.IntegerField(allow_null=True, help_text="Age of the oldest pending transaction when this was read")


class ReviewQueueOutput(serializers.Serializer):
    as_of = serializers.IntegerField(help_text="The last event position these rows reflect")
    time_zone = serializers.CharField()
    week_start_day = serializers.ChoiceField(choices=["monday", "sunday"])
    pending = ReviewQueuePendingOutput()
    weeks = ReviewQueueWeekOutput(many=True)


class ReviewQueueSnapshotOutput(serializers.Serializer):
    """The dashboard snapshot's `review_queue` part."""

    pending = ReviewQueuePendingOutput()
    this_week = ReviewQueueWeekOutput()
