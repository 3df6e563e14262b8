"""REST views owned by the core: the global event feed and health checks."""
from django.db import connection
from django.http import JsonResponse
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core import eventstore
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
    """Readiness: the database answers (more checks join as components are added)."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"error: {exc.__class__.__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
