"""RFC 9457 problem details for every API error, with the fields at fault listed."""
from http import HTTPStatus

from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from core.errors import DomainError, InvalidInput

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_body(*, status: int, code: str, detail: str, title: str | None = None, errors=None, instance: str | None = None) -> dict:
    body = {
        "type": f"urn:ledgerpulse:problem:{code}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return body


def _flatten(detail, path: str = "") -> list[dict]:
    """DRF's nested error dicts/lists -> [{"field": "items.0.amount", "message", "code"}]."""
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            field = key if key != "non_field_errors" else ""
            out.extend(_flatten(value, f"{path}.{field}" if path and field else (field or path)))
        return out
    if isinstance(detail, list):
        if all(isinstance(item, exceptions.ErrorDetail | str) for item in detail):
            return [{"field": path or None, "message": str(item), "code": getattr(item, "code", "invalid")} for item in detail]
        out = []
        for index, item in enumerate(detail):
            out.extend(_flatten(item, f"{path}.{index}" if path else str(index)))
        return out
    return [{"field": path or None, "message": str(detail), "code": getattr(detail, "code", "invalid")}]


def problem_exception_handler(exc, context):
    request = context.get("request")
    instance = request.path if request is not None else None

    if isinstance(exc, DomainError):
        errors = [{"field": exc.field, "message": exc.detail, "code": "invalid"}] if isinstance(exc, InvalidInput) else None
        response = Response(
            problem_body(status=exc.status_code, code=exc.code, title=exc.title, detail=exc.detail, errors=errors, instance=instance),
            status=exc.status_code,
            content_type=PROBLEM_CONTENT_TYPE,
        )
        if getattr(exc, "retry_after", None):
            response["Retry-After"] = str(exc.retry_after)
        return response
    if isinstance(exc, RequestDataTooBig):
        return Response(
            problem_body(status=413, code="body_too_large", detail="The request body is larger than 1 MiB.", instance=instance),
            status=413,
            content_type=PROBLEM_CONTENT_TYPE,
        )

    response = exception_handler(exc, context)
    if response is None:
        return None  # a bug: let Django's 500 handling (and logging) take it

    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        fields = [e["field"] for e in errors if e["field"]]
        detail = "Invalid " + ", ".join(dict.fromkeys(fields)) + "." if fields else (errors[0]["message"] if errors else "Invalid request.")
        body = problem_body(status=400, code="invalid_request", title="Invalid request", detail=detail, errors=errors, instance=instance)
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        body = problem_body(status=response.status_code, code=str(code), detail=str(detail), instance=instance)
    response.data = body
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def problem_response(request, status: int, code: str, detail: str) -> JsonResponse:
    """Plain Django views (404/500 handlers under /api/) answer in the same shape."""
    return JsonResponse(
        problem_body(status=status, code=code, detail=detail, instance=request.path),
        status=status,
        content_type=PROBLEM_CONTENT_TYPE,
    )
