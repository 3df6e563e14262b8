"""Login lockouts (django-axes), JWTs refused after a password change, and response headers.

docs/operations.md, "Security model", says what applies to whom.
"""
from __future__ import annotations

import base64
import hashlib
import re

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpResponse
from django.template.loader import render_to_string
from rest_framework import exceptions
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt import tokens as jwt_tokens
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError
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


# Tokens whose signature and claims were checked, by their bytes: a token's bytes always decode to
# the same claims, so only the clock (exp) is checked again. Checking a signature afresh cost about a
# tenth of an approval's CPU (PyJWT tries the HMAC key as a DER key and scans the base64 per byte).
# The user is still read on every request: revocation (a new password, a deactivated account) is
# never cached. Bounded: emptied when full (tokens live 15 minutes).
_VALIDATED_TOKENS: dict[bytes, object] = {}
_VALIDATED_TOKENS_MAX = 4096


def _user_sql(model) -> tuple[str, list[str], bool]:
    """The user's row by USER_ID_FIELD, in SQL built once (the ORM compiling it cost more than the query),
    and, for a user model with Django's permissions, every "app_label.codename" the user holds (own and
    groups'), in the same round trip: the write endpoints' permission check then needs no query of its own."""
    from django.contrib.auth.models import Group, Permission, PermissionsMixin
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection

    quote = connection.ops.quote_name
    fields = model._meta.concrete_fields
    key = model._meta.get_field(jwt_settings.USER_ID_FIELD).column
    columns = ", ".join(f"u.{quote(field.column)}" for field in fields)
    with_perms = issubclass(model, PermissionsMixin)
    if with_perms:
        # ModelBackend's two queries (user permissions, group permissions) as one array.
        perm, ct = Permission._meta.db_table, ContentType._meta.db_table
        user_perms = model.user_permissions.through._meta.db_table
        user_groups, group_perms = model.groups.through._meta.db_table, Group.permissions.through._meta.db_table
        pk = quote(model._meta.pk.column)
        columns += (
            f", ARRAY(SELECT ct.app_label || '.' || p.codename FROM {user_perms} up JOIN {perm} p ON p.id = up.permission_id"
            f" JOIN {ct} ct ON ct.id = p.content_type_id WHERE up.user_id = u.{pk}"
            f" UNION SELECT ct.app_label || '.' || p.codename FROM {user_groups} ug JOIN {group_perms} gp ON gp.group_id = ug.group_id"
            f" JOIN {perm} p ON p.id = gp.permission_id JOIN {ct} ct ON ct.id = p.content_type_id WHERE ug.user_id = u.{pk})"
        )
    sql = f"SELECT {columns} FROM {quote(model._meta.db_table)} u WHERE u.{quote(key)} = %s"
    return sql, [field.attname for field in fields], with_perms


_USER_SQL: dict[type, tuple[str, list[str], bool]] = {}


class JWTAuthenticationRevocable(JWTAuthentication):
    """simplejwt's check answers its own code (password_changed); the API documents token_not_valid for every refused token."""

    def get_validated_token(self, raw_token):
        token = _VALIDATED_TOKENS.get(raw_token)
        if token is not None:
            try:
                # A token's own current_time is when it was first checked: pass the clock's.
                token.check_exp(current_time=jwt_tokens.aware_utcnow())
                return token
            except TokenError:  # expired now: validate afresh, which answers simplejwt's own error
                _VALIDATED_TOKENS.pop(raw_token, None)
        token = super().get_validated_token(raw_token)
        if len(_VALIDATED_TOKENS) >= _VALIDATED_TOKENS_MAX:
            _VALIDATED_TOKENS.clear()
        _VALIDATED_TOKENS[raw_token] = token
        return token

    def get_user(self, validated_token):
        try:
            return self._checked_user(validated_token)
        except exceptions.AuthenticationFailed as exc:
            detail = exc.detail  # simplejwt's errors carry {"detail", "code"}
            if isinstance(detail, dict) and str(detail.get("code")) == "password_changed":
                raise InvalidToken(PASSWORD_CHANGED) from None
            raise

    def _checked_user(self, validated_token):
        """simplejwt's get_user (user exists, is active, password unchanged), with the user read by plain SQL on PostgreSQL."""
        from django.db import connection

        if connection.vendor != "postgresql":
            return super().get_user(validated_token)
        try:
            user_id = validated_token[jwt_settings.USER_ID_CLAIM]
        except KeyError:
            raise InvalidToken("Token contained no recognizable user identification") from None
        model = self.user_model
        sql, attnames, with_perms = _USER_SQL.get(model) or _USER_SQL.setdefault(model, _user_sql(model))
        try:
            user_id = model._meta.get_field(jwt_settings.USER_ID_FIELD).to_python(user_id)
        except DjangoValidationError:
            raise AuthenticationFailed("User not found", code="user_not_found") from None
        from core.db import execute_prepared

        with connection.cursor() as cursor:
            # Every authenticated request runs this: prepared once per pooled connection, PostgreSQL only binds it.
            execute_prepared(cursor, sql, [user_id])
            row = cursor.fetchone()
        if row is None:
            raise AuthenticationFailed("User not found", code="user_not_found")
        user = model.from_db(connection.alias, attnames, list(row[: len(attnames)]))
        if with_perms:
            # ModelBackend's own cache attribute: user.has_perm() answers from it, as it would after its queries.
            user._perm_cache = set(row[len(attnames)])
        if jwt_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed("User is inactive", code="user_inactive")
        if jwt_settings.CHECK_REVOKE_TOKEN and token_predates_password(validated_token, user):
            raise AuthenticationFailed("The user's password has been changed.", code="password_changed")
        return user


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


# --- CSP, built once ------------------------------------------------------------------------

from csp.constants import HEADER as CSP_HEADER, HEADER_REPORT_ONLY as CSP_HEADER_RO  # noqa: E402
from csp.middleware import CSPMiddleware as _DjangoCSPMiddleware, CheckableLazyObject  # noqa: E402
from csp.utils import build_policy  # noqa: E402

_PER_RESPONSE = ("_csp_config", "_csp_update", "_csp_replace", "_csp_config_ro", "_csp_update_ro", "_csp_replace_ro")


class CSPMiddleware(_DjangoCSPMiddleware):
    """django-csp's middleware, with the settings' policy built once per process instead of twice per answer.

    An answer with a policy of its own (a nonce used, csp_update/replace/config, Swagger UI's hashes) or a
    DEBUG error page goes through django-csp unchanged; every other answer gets the very header django-csp
    would build (the settings' policy, the same exemptions and excluded prefixes). Building it cost about
    a twentieth of an approval's CPU.
    """

    _built: dict[bool, tuple[object, str]] = {}

    def process_response(self, request, response):
        if (
            getattr(request, "_csp_nonce", None) is not None
            or any(getattr(response, name, None) is not None for name in _PER_RESPONSE)
            or (settings.DEBUG and response.status_code in (500, 404))
        ):
            return super().process_response(request, response)
        for header, setting, exempt, report_only in (
            (CSP_HEADER, "CONTENT_SECURITY_POLICY", "_csp_exempt", False),
            (CSP_HEADER_RO, "CONTENT_SECURITY_POLICY_REPORT_ONLY", "_csp_exempt_ro", True),
        ):
            policy = getattr(settings, setting, None)
            value = self._policy(policy, report_only)
            excluded = request.path_info.startswith(tuple((policy or {}).get("EXCLUDE_URL_PREFIXES", None) or ()))
            if value and header not in response and getattr(response, exempt, False) is False and not excluded:
                response[header] = value
        # As django-csp does: a nonce asked for after the header is written is an error, not a silent gap.
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)
        return response

    @classmethod
    def _policy(cls, policy, report_only: bool) -> str:
        cached = cls._built.get(report_only)
        if cached is None or cached[0] is not policy:  # settings replaced (override_settings): build afresh
            cached = cls._built[report_only] = (policy, build_policy(report_only=report_only))
        return cached[1]
