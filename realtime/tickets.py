"""Websocket tickets: short-lived, single-use, so no long-lived token ever travels in a URL.

A ticket that was presented is spent, whatever happens next: redeemed, refused at the Origin check,
or sent next to another ticket. A ticket whose user changed password, or was deactivated, demoted
or deleted before it was used, is dead too (realtime.revocation). A ticket carries its user's
session auth hash, so a password changed without a signal (raw SQL) kills it as well, and the socket
it opens is judged against that hash for as long as it is open.
"""
import hashlib
import re
import secrets
from datetime import timedelta

from django.utils import timezone

from realtime.access import hash_matches
from realtime.models import RealtimeTicket

TICKET_SECONDS = 60
# secrets.token_urlsafe(32) is 43 characters of this alphabet; anything else was never issued.
TICKET_FORMAT = re.compile(r"[A-Za-z0-9_-]{20,128}")


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def well_formed(ticket: str) -> bool:
    return bool(ticket) and TICKET_FORMAT.fullmatch(ticket) is not None


def ticket_issue(*, user) -> tuple[str, int]:
    ticket = secrets.token_urlsafe(32)
    RealtimeTicket.objects.create(
        digest=_digest(ticket),
        user=user,
        auth_hash=user.get_session_auth_hash(),
        expires_at=timezone.now() + timedelta(seconds=TICKET_SECONDS),
    )
    return ticket, TICKET_SECONDS


def ticket_redeem(*, ticket: str) -> RealtimeTicket | None:
    """The ticket (its `user` as they are now, its `auth_hash` as issued), exactly once, before it
    expires, and only while that user is active and has the password they had then; None otherwise.

    The ticket is spent even when its user is refused."""
    if not well_formed(ticket):
        return None
    digest = _digest(ticket)
    now = timezone.now()
    # One conditional UPDATE: of two sockets racing with one ticket, only one matches.
    claimed = RealtimeTicket.objects.filter(digest=digest, used_at__isnull=True, expires_at__gt=now).update(used_at=now)
    if not claimed:
        return None
    # The user as they are now, not as they were when the ticket was issued.
    redeemed = RealtimeTicket.objects.select_related("user").get(digest=digest)
    user = redeemed.user
    if not getattr(user, "is_active", True) or not hash_matches(user, redeemed.auth_hash):
        return None
    return redeemed


def ticket_burn(*, ticket: str) -> bool:
    """Spend a ticket without using it (it was presented and refused). True if it was still valid."""
    if not well_formed(ticket):
        return False
    return bool(RealtimeTicket.objects.filter(digest=_digest(ticket), used_at__isnull=True).update(used_at=timezone.now()))


def tickets_revoke(*, user_id) -> int:
    """Spend every unused ticket of a user (their password or access changed)."""
    return RealtimeTicket.objects.filter(user_id=user_id, used_at__isnull=True).update(used_at=timezone.now())


def tickets_purge(*, older_than: timedelta = timedelta(hours=1)) -> int:
    deleted, _ = RealtimeTicket.objects.filter(expires_at__lt=timezone.now() - older_than).delete()
    return deleted
