"""Housekeeping tasks for realtime."""
from celery import shared_task

from realtime.tickets import tickets_purge


@shared_task(name="realtime.purge_tickets")
def purge_tickets() -> int:
    """Delete tickets that expired more than an hour ago."""
    return tickets_purge()
