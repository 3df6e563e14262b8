"""Login lockouts (django-axes), JWTs refused after a password change, and response headers.

docs/operations.md, "Security model", says what applies to whom.
"""
from __future__ import annotations

import base64
import hashlib
import re

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.http import HttpResponse
from django.template.loader import render_to_string
from rest_framework import exceptions
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.utils import get_md5_hash_password

from core.dualmode import BothModesMiddleware

# --- login lockouts -----------------------------------------------------------------------


class LoginLimitBackend(AxesStandaloneBackend):
    """Refuses every sign-in of a locked-out account or client address (then ModelBackend checks the password).

    The login surfaces (/accounts/login/, /admin/login/, /api/auth/token/) always pass the request;
    code that calls authenticate() without one (a management command) is no login surface and is
    not counted, where axes itself would raise.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def lockout_username(request, credentials) -> str | None:
    """The username axes counts failures for: the one tried, as the users table can hold it (150 characters)."""
    field = settings.AXES_USERNAME_FORM_FIELD
    if credentials:
        username = credentials.get(field)
    else:
        data = getattr(request, "data", None) or getattr(request, "POST", {})
        username = data.get(field) if hasattr(data, "get") else None
    if not isinstance(username, str):
        return None
    return username.replace("\x00", "")[:150]


def lockout_seconds() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds())


class LoginLockedOut(exceptions.APIException):
    status_code = 429
    default_code = "login_locked_out"

    def __init__(self):
        minutes = max(1, round(lockout_seconds() / 60))
        super().__init__(
            f"Too many failed sign-ins for this account or from this address; try again in {minutes} minutes.", "login_locked_out"
        )
        self.wait = lockout_seconds()


def lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: what a locked-out sign-in gets. problem+json under /api/, a plain page elsewhere."""
    from core.problems import problem_response  # not at import: DRF imports this module while it loads

    seconds = lockout_seconds()
    if request.path.startswith("/api/"):
        exc = LoginLockedOut()
        response = problem_response(request, 429, "login_locked_out", str(exc.detail))
    else:
        body = render_to_string("registration/locked_out.html", {"minutes": max(1, round(seconds / 60))}, request=request)
        response = HttpResponse(body, status=429)
    response["Retry-After"] = str(seconds)
    return response


# --- JWTs issued before a password change --------------------------------------------------


def token_predates_password(token, user) -> bool:
    """simplejwt stores a hash of the password hash in every token (CHECK_REVOKE_TOKEN); a new password changes it."""
    return token.get(jwt_settings.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(user.password)


PASSWORD_CHANGED = "Token was issued before the password changed; sign in again."


class JWTAuthenticationRevocable(JWTAuthentication):
    """simplejwt's check answers its own code (password_changed); the API documents token_not_valid for every refused token."""

    def get_user(self, validated_token):
        try:
            return super().get_user(validated_token)
        except exceptions.AuthenticationFailed as exc:
            detail = exc.detail  # simplejwt's errors carry {"detail", "code"}
            if isinstance(detail, dict) and str(detail.get("code")) == "password_changed":
                raise InvalidToken(PASSWORD_CHANGED) from None
            raise


# --- headers ------------------------------------------------------------------------------


class SecurityHeadersMiddleware(BothModesMiddleware):
    """`Cache-Control: no-store` on every /api/ answer (problems included), and NUL refused in /admin/ query strings.

    Placed high in MIDDLEWARE, so that answers made by the middleware below it (problems from
    exception handling, lockouts) get the header too.
    """

    def before(self, request):
        return self._refuse(request)

    def after(self, request, response):
        return self._finish(request, response)

    @staticmethod
    def _refuse(request):
        # PostgreSQL refuses NUL in text: an admin filter or search with %00 would be a 500.
        if request.path.startswith("/admin/") and "\x00" in _decoded_query(request):
            return HttpResponse("Bad request: the query string contains a NUL character.", status=400, content_type="text/plain; charset=utf-8")
        return None

    @staticmethod
    def _finish(request, response):
        if request.path.startswith("/api/"):
            response["Cache-Control"] = "no-store"
        return response


def _decoded_query(request) -> str:
    try:
        return "".join(f"{key}{''.join(values)}" for key, values in request.GET.lists())
    except Exception:  # noqa: BLE001 - a query Django cannot decode is not ours to judge here
        return ""


# --- CSP for pages that carry inline script or style ----------------------------------------

_INLINE = re.compile(r"<(script|style)(?![^>]*\bsrc=)[^>]*>(.*?)</\1>", re.DOTALL | re.IGNORECASE)


def inline_hashes(html: str) -> dict[str, list[str]]:
    """'sha256-…' sources for each inline <script> and <style> of a page."""
    found: dict[str, list[str]] = {"script-src": [], "style-src": []}
    for tag, body in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        found[f"{tag.lower()}-src"].append(f"'sha256-{digest}'")
    return {key: value for key, value in found.items() if value}


def allow_own_inline_blocks(view):
    """For a view whose page is entirely its own template (Swagger UI): allow exactly the inline
    blocks it rendered, by hash, in this response's policy. Never for pages that show user data."""
    from functools import wraps

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)

        def add_hashes(rendered):
            rendered._csp_update = inline_hashes(rendered.content.decode())
            return rendered

        if hasattr(response, "add_post_render_callback") and not getattr(response, "is_rendered", True):
            response.add_post_render_callback(add_hashes)
        else:
            add_hashes(response)
        return response

    return wrapped
