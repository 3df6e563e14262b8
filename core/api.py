"""REST views owned by the core: the global event feed and health checks."""
from django.http import JsonResponse
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.throttling import ScopedRateThrottle
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer, TokenRefreshSerializer
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView
from rest_framework.response import Response
from rest_framework.views import APIView

from core import eventstore
from core.fields import StrictIntegerField
from core.health import readiness
from core.params import reject_blank
from core.schema import PROBLEM_RESPONSES
from core.serializers import EventOutput


class EventFeedQuery(serializers.Serializer):
    after = StrictIntegerField(min_value=0, required=False, default=0, help_text="Last position already seen")
    limit = StrictIntegerField(min_value=1, max_value=1000, required=False, default=100)


class EventFeedOutput(serializers.Serializer):
    results = EventOutput(many=True)
    last_position = serializers.IntegerField(help_text="Pass as `after` to get the next page")


class EventFeedApi(APIView):
    """Gap-safe catch-up: page with ?after=<last_position> until results come back empty."""

    @extend_schema(
        summary="Event feed",
        description=(
            "Every stored event with position > `after`, oldest first, at most `limit`. Gap-safe: positions become "
            "visible in order, so paging with `after=last_position` never skips an event."
        ),
        parameters=[EventFeedQuery],
        responses={200: EventFeedOutput, **PROBLEM_RESPONSES(400, 401, 403)},
    )
    def get(self, request):
        reject_blank(request.query_params, EventFeedQuery().fields)
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


@extend_schema_view(
    post=extend_schema(
        summary="Obtain a JWT pair",
        description="`access` lasts 15 minutes, `refresh` one day. Throttled per client address.",
        responses={200: TokenObtainPairSerializer, **PROBLEM_RESPONSES(400, 401, 429)},
    )
)
class TokenObtainApi(TokenObtainPairView):
    """Username and password in, a JWT pair out; throttled per client address against guessing."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"


@extend_schema_view(
    post=extend_schema(summary="Refresh the access token", responses={200: TokenRefreshSerializer, **PROBLEM_RESPONSES(400, 401, 429)})
)
class TokenRefreshApi(TokenRefreshView):
    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Readiness: database, channel layer and broker answer; projection lag is reported."""
    ready, body = readiness()
    return JsonResponse(body, status=200 if ready else 503)
