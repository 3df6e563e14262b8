"""OpenAPI pieces shared by every view: the problem+json error body."""
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers


class FieldError(serializers.Serializer):
    field = serializers.CharField(allow_null=True, help_text="The field or parameter at fault (dotted path)")
    message = serializers.CharField()
    code = serializers.CharField()


class Problem(serializers.Serializer):
    """RFC 9457 problem details."""

    type = serializers.CharField(help_text="urn:ledgerpulse:problem:<code>")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField(help_text="Stable machine-readable code")
    instance = serializers.CharField(required=False)
    errors = FieldError(many=True, required=False)


_DESCRIPTIONS = {
    400: "Invalid input; `errors` names each field at fault",
    401: "No or invalid credentials",
    403: "Authenticated, but without the needed permission (or CSRF token)",
    404: "No such resource",
    409: "Conflict: not pending, stale expected_version, or an Idempotency-Key still in use",
    413: "Body larger than 1 MiB",
    422: "Idempotency-Key reused with a different request",
    429: "Too many requests; see Retry-After",
    503: "Temporarily unavailable (the projection is behind, or the event store is busy); retry after Retry-After",
}


def PROBLEM_RESPONSES(*statuses: int) -> dict:  # noqa: N802 - reads like a constant at call sites
    return {(status, "application/problem+json"): OpenApiResponse(Problem, description=_DESCRIPTIONS[status]) for status in statuses}


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"},
    location=OpenApiParameter.HEADER,
    required=False,
    description="Up to 255 printable characters. A retry with the same key and body returns the first answer "
    "(header Idempotent-Replayed: true) and changes nothing; another body is 422; while the first still runs, 409. "
    "Keys are kept 24 hours, per user.",
)

CURRENCY_PARAMETER = {"type": "string", "pattern": "^[A-Za-z]{3}$", "example": "EUR"}
