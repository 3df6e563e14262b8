"""Who may keep a dashboard socket open, decided from the database each time it is asked.

A socket is checked when it opens, whenever realtime.revocation says its user changed, and every
REALTIME_ACCESS_RECHECK_SECONDS (changes made outside the ORM, sessions that expired or were deleted).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import import_module

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


@dataclass(frozen=True)
class Refusal:
    code: int
    reason: str


@dataclass(frozen=True)
class Grant:
    # What the user's sessions are signed with: it changes when the password does.
    auth_hash: str


def session_digest(session_key: str | None) -> str | None:
    """How a session is named on the channel layer: never the key itself, which is a credential."""
    if not session_key:
        return None
    return hashlib.sha256(session_key.encode()).hexdigest()


def _hash_matches(user, session_hash: str) -> bool:
    if not session_hash:
        return False
    if constant_time_compare(session_hash, user.get_session_auth_hash()):
        return True
    # Sessions signed before a SECRET_KEY rotation stay valid as long as Django accepts them.
    return any(
        constant_time_compare(session_hash, user._get_session_auth_hash(secret=secret))
        for secret in getattr(settings, "SECRET_KEY_FALLBACKS", ())
    )


def _session_refusal(user, session_key: str) -> Refusal | None:
    """The session the socket was opened with must still exist and still sign in this user."""
    engine = import_module(settings.SESSION_ENGINE)
    data = engine.SessionStore(session_key).load()  # {} when deleted or expired; creates nothing
    if data.get(SESSION_KEY) != user._meta.pk.value_to_string(user):
        return Refusal(CLOSE_UNAUTHENTICATED, "signed out")
    if data.get(BACKEND_SESSION_KEY) not in settings.AUTHENTICATION_BACKENDS:
        return Refusal(CLOSE_UNAUTHENTICATED, "signed out")
    if not _hash_matches(user, data.get(HASH_SESSION_KEY, "")):
        return Refusal(CLOSE_UNAUTHENTICATED, "password changed; sign in again")
    return None


def verdict(*, user_id, session_key: str | None = None, auth_hash: str | None = None) -> Refusal | Grant:
    """Refusal (4401: not signed in any more; 4403: signed in, not allowed) or Grant.

    session_key: the socket came with this session cookie; it must still be valid for the user.
    auth_hash: the user's session auth hash when the socket opened (ticket sockets): a password
    change since then ends the socket.
    """
    User = get_user_model()
    user = User._default_manager.filter(pk=user_id).first()
    if user is None:
        return Refusal(CLOSE_UNAUTHENTICATED, "account removed")
    if not getattr(user, "is_active", True):
        return Refusal(CLOSE_UNAUTHENTICATED, "account deactivated")
    if session_key is not None:
        refusal = _session_refusal(user, session_key)
        if refusal is not None:
            return refusal
    elif auth_hash is not None and not constant_time_compare(auth_hash, user.get_session_auth_hash()):
        return Refusal(CLOSE_UNAUTHENTICATED, "password changed; sign in again")
    if not getattr(user, "is_staff", False):
        return Refusal(CLOSE_FORBIDDEN, "staff only")
    permission = settings.REALTIME_VIEW_PERMISSION
    if permission and not user.has_perm(permission):
        return Refusal(CLOSE_FORBIDDEN, f"needs the {permission} permission")
    return Grant(auth_hash=user.get_session_auth_hash())
