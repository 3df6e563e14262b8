"""REST views owned by the core: the global event feed and health checks."""
from django.http import JsonResponse
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core import eventstore
from core.health import readiness
from core.serializers import EventOutput


class EventFeedQuery(serializers.Serializer):
    after = serializers.IntegerField(min_value=0, required=False, default=0)
    limit = serializers.IntegerField(min_value=1, max_value=1000, required=False, default=100)


class EventFeedApi(APIView):
    """Gap-safe catch-up: page with ?after=<last_position> until results come back empty."""

    def get(self, request):
        query = EventFeedQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        after = query.validated_data["after"]
        events = eventstore.read_all(after=after, limit=query.validated_data["limit"])
        return Response(
            {
                "results": EventOutput(events, many=True).data,
                "last_position": events[-1].position if events else after,
            }
        )


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Readiness: database, channel layer and broker answer; projection lag is reported."""
    ready, body = readiness()
    return JsonResponse(body, status=200 if ready else 503)
