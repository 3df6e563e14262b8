"""Output serializer for stored events, shared by the stream and feed endpoints."""
from rest_framework import serializers


class EventOutput(serializers.Serializer):
    position = serializers.IntegerField()
    stream_id = serializers.UUIDField()
    version = serializers.IntegerField()
    type = serializers.CharField()
    data = serializers.JSONField()
    metadata = serializers.JSONField()
    recorded_at = serializers.DateTimeField()
