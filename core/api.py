"""REST views owned by the core: the global event feed and health checks."""
from django.http import JsonResponse
from drf_spectacular.utils import extend_schema, extend_schema_serializer, extend_schema_view
from django.contrib.auth import get_user_model
from rest_framework import exceptions, serializers
from rest_framework.permissions import AllowAny
from rest_framework.throttling import ScopedRateThrottle
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme, TokenRefreshSerializerExtension
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer, TokenRefreshSerializer
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView
from rest_framework.response import Response
from rest_framework.views import APIView

from core import eventstore
from core.fields import StrictIntegerField
from core.clientip import client_ip
from core.health import readiness, may_see_detail
from core.params import reject_blank_or_repeated, reject_unknown
from core.schema import PROBLEM_RESPONSES
from core.security import PASSWORD_CHANGED, LoginLockedOut, token_predates_password
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
            "Every stored event with position > `after`, oldest first, at most `limit`. Gap-safe: a page never "
            "goes past a position whose transaction may still commit, so paging with `after=last_position` never "
            "skips an event; a short or empty page is not the end of the log."
        ),
        parameters=[EventFeedQuery],
        responses={200: EventFeedOutput, **PROBLEM_RESPONSES(400, 401, 403)},
    )
    def get(self, request):
        reject_unknown(request.query_params, [*EventFeedQuery().fields, "format"])
        reject_blank_or_repeated(request.query_params, EventFeedQuery().fields)
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


class RevocableJWTScheme(SimpleJWTScheme):
    """The OpenAPI security scheme of core.security.JWTAuthenticationRevocable: simplejwt's bearer JWT."""

    target_class = "core.security.JWTAuthenticationRevocable"


class ClientAddressThrottle(ScopedRateThrottle):
    """DRF's scoped throttle keyed on core.clientip: X-Forwarded-For counts only from TRUSTED_PROXIES."""

    def get_ident(self, request):
        return client_ip(request) or "unknown"


@extend_schema_view(
    post=extend_schema(
        summary="Obtain a JWT pair",
        description=(
            "`access` lasts 15 minutes, `refresh` one day. Throttled per client address; after `LOGIN_FAILURE_LIMIT` (5) "
            "failures for one username or from one address, sign-ins are refused with 429 `login_locked_out` for "
            "`LOGIN_LOCKOUT_MINUTES` (15)."
        ),
        responses={200: TokenObtainPairSerializer, **PROBLEM_RESPONSES(400, 401, 429)},
    )
)
class TokenObtainApi(TokenObtainPairView):
    """Username and password in, a JWT pair out; throttled per client address and locked out (django-axes) against guessing."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [ClientAddressThrottle]
    throttle_scope = "auth"

    def post(self, request, *args, **kwargs):
        try:
            return super().post(request, *args, **kwargs)
        except exceptions.AuthenticationFailed:
            # simplejwt hands axes the DRF request, so the lockout flag is set on it, not on the
            # HttpRequest axes' middleware looks at: answer the lockout here.
            if getattr(request, "axes_locked_out", False):
                raise LoginLockedOut() from None
            raise


# simplejwt's refresh, also refusing a refresh token issued before its user's password changed.
@extend_schema_serializer(component_name="TokenRefresh")
class RevocableTokenRefreshSerializer(TokenRefreshSerializer):

    def validate(self, attrs):
        refresh = self.token_class(attrs["refresh"])
        user_id = refresh.payload.get(jwt_settings.USER_ID_CLAIM)
        user = get_user_model().objects.filter(**{jwt_settings.USER_ID_FIELD: user_id}).first() if user_id else None
        if user is None:
            raise exceptions.AuthenticationFailed("No active account found for the given token.", "no_active_account")
        if jwt_settings.CHECK_REVOKE_TOKEN and token_predates_password(refresh, user):
            raise InvalidToken(PASSWORD_CHANGED)
        return super().validate(attrs)


class RevocableTokenRefreshSerializerExtension(TokenRefreshSerializerExtension):
    """In the schema, the same as simplejwt's refresh serializer (`refresh` write-only)."""

    target_class = "core.api.RevocableTokenRefreshSerializer"


@extend_schema_view(
    post=extend_schema(summary="Refresh the access token", responses={200: TokenRefreshSerializer, **PROBLEM_RESPONSES(400, 401, 429)})
)
class TokenRefreshApi(TokenRefreshView):
    serializer_class = RevocableTokenRefreshSerializer
    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [ClientAddressThrottle]
    throttle_scope = "auth"


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Readiness: database, channel layer and broker answer; projection lag is reported.

    The checks and counts only to staff or a client in READYZ_DETAIL_NETWORKS; others get the bare status."""
    ready, body = readiness()
    if not may_see_detail(request):
        body = {"status": body["status"]}
    return JsonResponse(body, status=200 if ready else 503)
