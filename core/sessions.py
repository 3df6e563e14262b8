"""Sign-in sessions: the housekeeping Django leaves to `clearsessions`."""
from django.contrib.sessions.models import Session
from django.utils import timezone


def expired_sessions_purge() -> int:
    """Delete the sessions whose expiry has passed (by the expire_date index); how many were deleted.

    Django never deletes an expired session by itself: without this the table keeps every sign-in
    ever made. An expired session authenticates nobody, so nothing a user has is lost.
    """
    deleted, _ = Session.objects.filter(expire_date__lt=timezone.now()).delete()
    return deleted
