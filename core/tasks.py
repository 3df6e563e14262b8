"""Housekeeping tasks for the core."""
from celery import shared_task

from core.idempotency import idempotency_records_purge
from core.sessions import expired_sessions_purge


@shared_task(name="core.purge_idempotency_records")
def purge_idempotency_records() -> int:
    """Forget Idempotency-Keys older than 24 h (they are kept at least that long)."""
    return idempotency_records_purge()


@shared_task(name="core.purge_expired_sessions")
def purge_expired_sessions() -> int:
    """Delete sign-in sessions past their expiry."""
    return expired_sessions_purge()
