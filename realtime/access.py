"""Who may keep a dashboard socket open, decided from the database each time it is asked.

A socket is checked when it opens, whenever realtime.revocation says its user changed, and every
REALTIME_ACCESS_RECHECK_SECONDS (changes made outside the ORM, sessions that expired or were deleted).
`verdicts` answers for many sockets at once with a few queries (the hub's sweeps and handshake storms).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import import_module

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.core.exceptions import ValidationError
from django.utils.crypto import constant_time_compare

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
# An open socket's session stopped being valid without a logout we saw (renewed, deleted, expired,
# signed with an old password): the browser may be signed in under another key, so it reconnects,
# and the handshake says whether it still is. Changing your password renews your session's key.
CLOSE_SESSION_ENDED = 4410
SESSION_ENDED_REASON = "session ended; reconnect"


@dataclass(frozen=True)
class Refusal:
    code: int
    reason: str
    # The socket's session is not valid any more (the user may still be): see CLOSE_SESSION_ENDED.
    session_ended: bool = False


@dataclass(frozen=True)
class Grant:
    user_id: object = None


def session_digest(session_key: str | None) -> str | None:
    """How a session is named on the channel layer: never the key itself, which is a credential."""
    if not session_key:
        return None
    return hashlib.sha256(session_key.encode()).hexdigest()


def hash_matches(user, session_hash: str) -> bool:
    """Whether a session auth hash (a session's, or a ticket's) is the user's: it changes with the password."""
    if not session_hash:
        return False
    if constant_time_compare(session_hash, user.get_session_auth_hash()):
        return True
    # Sessions signed before a SECRET_KEY rotation stay valid as long as Django accepts them.
    return any(
        constant_time_compare(session_hash, user._get_session_auth_hash(secret=secret))
        for secret in getattr(settings, "SECRET_KEY_FALLBACKS", ())
    )


def _load_session(session_key: str) -> dict:
    engine = import_module(settings.SESSION_ENGINE)
    return engine.SessionStore(session_key).load()  # {} when deleted or expired; creates nothing


def _load_sessions(session_keys) -> dict[str, dict]:
    """Each session's data ({} when gone); one query with the database engine, one load per key otherwise."""
    keys = list(dict.fromkeys(k for k in session_keys if k))
    if not keys:
        return {}
    if settings.SESSION_ENGINE != "django.contrib.sessions.backends.db":
        return {key: _load_session(key) for key in keys}
    from django.contrib.sessions.backends.db import SessionStore
    from django.utils import timezone

    store = SessionStore()
    model = store.model
    data = {key: {} for key in keys}
    for start in range(0, len(keys), 1000):
        rows = model.objects.filter(session_key__in=keys[start:start + 1000], expire_date__gt=timezone.now())
        for key, encoded in rows.values_list("session_key", "session_data"):
            data[key] = store.decode(encoded)
    return data


def _session_refusal(user, session_key: str, data: dict | None = None) -> Refusal | None:
    """The session the socket was opened with must still exist and still sign in this user."""
    if data is None:
        data = _load_session(session_key)
    if data.get(SESSION_KEY) != user._meta.pk.value_to_string(user):
        return Refusal(CLOSE_UNAUTHENTICATED, "signed out", session_ended=True)
    if data.get(BACKEND_SESSION_KEY) not in settings.AUTHENTICATION_BACKENDS:
        return Refusal(CLOSE_UNAUTHENTICATED, "signed out", session_ended=True)
    if not hash_matches(user, data.get(HASH_SESSION_KEY, "")):
        return Refusal(CLOSE_UNAUTHENTICATED, "password changed; sign in again", session_ended=True)
    return None


def verdict(*, user_id, session_key: str | None = None, auth_hash: str | None = None) -> Refusal | Grant:
    """Refusal (4401: not signed in any more; 4403: signed in, not allowed) or Grant.

    session_key: the socket came with this session cookie; it must still be valid for the user.
    auth_hash: the user's session auth hash when the socket's ticket was issued (ticket sockets): a
    password change since then ends the socket.
    """
    user = get_user_model()._default_manager.filter(pk=user_id).first()
    return _judge(user, session_key, auth_hash)


def _judge(user, session_key: str | None, auth_hash: str | None, session_data: dict | None = None) -> Refusal | Grant:
    if user is None:
        return Refusal(CLOSE_UNAUTHENTICATED, "account removed")
    if not getattr(user, "is_active", True):
        return Refusal(CLOSE_UNAUTHENTICATED, "account deactivated")
    if session_key is not None:
        refusal = _session_refusal(user, session_key, session_data)
        if refusal is not None:
            return refusal
    elif auth_hash is not None and not hash_matches(user, auth_hash):
        return Refusal(CLOSE_UNAUTHENTICATED, "password changed; sign in again")
    if not getattr(user, "is_staff", False):
        return Refusal(CLOSE_FORBIDDEN, "staff only")
    permission = settings.REALTIME_VIEW_PERMISSION
    if permission and not user.has_perm(permission):
        return Refusal(CLOSE_FORBIDDEN, f"needs the {permission} permission")
    return Grant(user_id=user.pk)


def _session_user_id(data: dict):
    """The user a session signs in, or None (anonymous, or a value that is not a valid key)."""
    try:
        return get_user_model()._meta.pk.to_python(data[SESSION_KEY])
    except (KeyError, ValidationError):
        return None


def verdicts(requests: list[tuple]) -> list[Refusal | Grant]:
    """verdict() for many (user_id, session_key, auth_hash) at once: one query for the sessions (database
    engine), one for the users, and a permission check per distinct user only when one is required.
    A user_id of None means "whoever the session signs in" (a socket authenticated by its cookie alone):
    a session that signs nobody in is refused with 4401 "authentication required"."""
    sessions = _load_sessions(session_key for _, session_key, _ in requests)
    wanted = {user_id if user_id is not None else _session_user_id(sessions.get(session_key, {})) for user_id, session_key, _ in requests}
    users = get_user_model()._default_manager.in_bulk(wanted - {None})
    answers: dict[tuple, Refusal | Grant] = {}
    result = []
    for request in requests:
        answer = answers.get(request)
        if answer is None:
            user_id, session_key, auth_hash = request
            data = sessions.get(session_key, {})
            if user_id is None:
                user_id = _session_user_id(data)
                if user_id is None:
                    answer = Refusal(CLOSE_UNAUTHENTICATED, "authentication required")
            if answer is None:
                answer = _judge(users.get(user_id), session_key, auth_hash, data)
            answers[request] = answer
        result.append(answer)
    return result
