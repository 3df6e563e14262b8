"""RFC 9457 problem details for every API error, with the fields at fault listed."""
import logging
from http import HTTPStatus

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler

from core.errors import DomainError, InvalidInput

PROBLEM_CONTENT_TYPE = "application/problem+json"

# Every `code` the API answers, with its status: docs/api.md has the same table, and a
# test keeps the two (and every DomainError subclass) in step.
PROBLEM_CODES = {
    "invalid_request": 400,
    "parse_error": 400,
    "bad_request": 400,
    "not_authenticated": 401,
    "authentication_failed": 401,
    "token_not_valid": 401,
    "bad_authorization_header": 401,
    "no_active_account": 401,
    "user_not_found": 401,
    "user_inactive": 401,
    "permission_denied": 403,
    "own_submission": 403,
    "second_approver_required": 403,
    "not_found": 404,
    "transaction_not_found": 404,
    "method_not_allowed": 405,
    "not_acceptable": 406,
    "conflict": 409,
    "transaction_not_pending": 409,
    "transaction_not_approved": 409,
    "stale_version": 409,
    "idempotency_key_in_use": 409,
    "body_too_large": 413,
    "unsupported_media_type": 415,
    "idempotency_key_reused": 422,
    "throttled": 429,
    "login_locked_out": 429,
    "server_error": 500,
    "projection_behind": 503,
    "projection_rebuild_pending": 503,
    "event_store_busy": 503,
}


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
    """DRF's nested error dicts/lists -> [{"field": "items[0].amount", "message", "code"}]."""
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            if isinstance(key, int):  # a list's items by index (DRF's ListSerializer and ListField)
                out.extend(_flatten(value, f"{path}[{key}]"))
                continue
            field = key if key != "non_field_errors" else ""
            out.extend(_flatten(value, f"{path}.{field}" if path and field else (field or path)))
        return out
    if isinstance(detail, list):
        if all(isinstance(item, exceptions.ErrorDetail | str) for item in detail):
            return [{"field": path or None, "message": str(item), "code": getattr(item, "code", "invalid")} for item in detail]
        out = []
        for index, item in enumerate(detail):
            out.extend(_flatten(item, f"{path}[{index}]"))  # decisions[3].action, as clients write it
        return out
    return [{"field": path or None, "message": str(detail), "code": getattr(detail, "code", "invalid")}]


def _unwrap(exc) -> tuple[str, str | None]:
    """A readable detail and its code, whatever shape the exception's detail has.

    simplejwt's errors carry a dict ({"detail", "code", "messages"}); str() of that
    would answer a Python repr.
    """
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    if isinstance(detail, dict) and "detail" in detail:
        text = str(detail["detail"])
        reasons = [str(m["message"]) for m in detail.get("messages") or [] if isinstance(m, dict) and m.get("message")]
        if reasons:
            text = f"{text.rstrip('.')}: {'; '.join(dict.fromkeys(reasons))}"
        code = detail.get("code") or getattr(detail["detail"], "code", None)
        return _sentence(text), str(code) if code else None
    if isinstance(detail, dict | list):
        flat = _flatten(detail)
        return _sentence(flat[0]["message"] if flat else "The request failed"), (flat[0]["code"] if flat else None)
    return _sentence(str(detail)), getattr(detail, "code", None)


def _sentence(text: str) -> str:
    """ "no transaction 3f0c" -> "No transaction 3f0c.": `detail` is read by people."""
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else f"{text}."


def _known_code(exc, code: str | None, status: int) -> str:
    """The detail's code when it is documented, else the nearest documented one."""
    if code in PROBLEM_CODES:
        return code
    for cls in type(exc).__mro__:
        if getattr(cls, "default_code", None) in PROBLEM_CODES:
            return cls.default_code
    return "server_error" if status >= 500 else "invalid_request"


def problem_exception_handler(exc, context):
    request = context.get("request")
    response = _problem_response(exc, context, request)
    if response is not None and request is not None:
        _render_as_json(request)
    return response


def _render_as_json(request) -> None:
    """A problem is JSON whatever the view answers otherwise (the schema's YAML, Swagger UI's HTML, CSV).

    DRF renders an error with the renderer negotiated for the request, or, when negotiation itself
    failed (`/api/schema/?format=xml`), with the view's first one: YAML under a problem+json label.
    """
    renderer = getattr(request, "accepted_renderer", None)
    if type(renderer) is JSONRenderer:
        return  # keeps `Accept: application/json; indent=2`
    request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type


def _problem_response(exc, context, request):
    instance = request.path if request is not None else None

    if isinstance(exc, DomainError):
        errors = [{"field": exc.field, "message": exc.detail, "code": "invalid"}] if isinstance(exc, InvalidInput) else None
        response = Response(
            problem_body(status=exc.status_code, code=exc.code, title=exc.title, detail=_sentence(exc.detail), errors=errors, instance=instance),
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

    if isinstance(exc, SuspiciousOperation):
        # E.g. over DATA_UPLOAD_MAX_NUMBER_FIELDS query parameters. Answered here: left to
        # DRF, DEBUG would turn it into an AttributeError (no renderer chosen yet), a 500.
        logging.getLogger(f"django.security.{exc.__class__.__name__}").error(str(exc))
        return Response(
            problem_body(status=400, code="bad_request", detail="The request was refused as malformed.", instance=instance),
            status=400,
            content_type=PROBLEM_CONTENT_TYPE,
        )
    # As DRF's own handler does, so that the detail read below is DRF's and not str(Http404()).
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = exception_handler(exc, context)
    if response is None:
        return None  # a bug: core.middleware answers it with a logged 500 problem

    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        fields = [e["field"] for e in errors if e["field"]]
        detail = "Invalid " + ", ".join(dict.fromkeys(fields)) + "." if fields else (errors[0]["message"] if errors else "Invalid request.")
        body = problem_body(status=400, code="invalid_request", title="Invalid request", detail=detail, errors=errors, instance=instance)
    else:
        detail, code = _unwrap(exc)
        errors = None
        if getattr(exc, "field", None):  # a duplicate JSON key names the key
            errors = [{"field": exc.field, "message": detail, "code": "duplicate_key"}]
        body = problem_body(status=response.status_code, code=_known_code(exc, code, response.status_code), detail=detail, errors=errors, instance=instance)
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
