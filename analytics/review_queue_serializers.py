"""Input and output serializers for the review-queue API."""
from rest_framework import serializers

from analytics.week_range import validate_week_range
from core.fields import StrictDateField


class ReviewQueueQuery(serializers.Serializer):
    # `from` is a Python keyword, so it is declared through the class namespace.
    vars()["from"] = StrictDateField(required=False, help_text="First week (any day in it); default: 11 weeks before `to`")
    to = StrictDateField(required=False, help_text="Last week (any day in it); default: this week, or 11 weeks after `from`")

    def validate(self, attrs):
        return validate_week_range(attrs)


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
