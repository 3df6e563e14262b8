"""Websocket tickets: short-lived, single-use, so no long-lived token ever travels in a URL."""
import hashlib
import secrets
from datetime import timedelta

from django.utils import timezone

from realtime.models import RealtimeTicket

TICKET_SECONDS = 60


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def ticket_issue(*, user) -> tuple[str, int]:
    ticket = secrets.token_urlsafe(32)
    RealtimeTicket.objects.create(
        digest=_digest(ticket), user=user, expires_at=timezone.now() + timedelta(seconds=TICKET_SECONDS)
    )
    return ticket, TICKET_SECONDS


def ticket_redeem(*, ticket: str):
    """The ticket's user, exactly once and before it expires; None otherwise."""
    if not ticket or len(ticket) > 128:
        return None
    digest = _digest(ticket)
    now = timezone.now()
    # One conditional UPDATE: of two sockets racing with one ticket, only one matches.
    claimed = RealtimeTicket.objects.filter(digest=digest, used_at__isnull=True, expires_at__gt=now).update(used_at=now)
    if not claimed:
        return None
    return RealtimeTicket.objects.select_related("user").get(digest=digest).user


def tickets_purge(*, older_than: timedelta = timedelta(hours=1)) -> int:
    deleted, _ = RealtimeTicket.objects.filter(expires_at__lt=timezone.now() - older_than).delete()
    return deleted
