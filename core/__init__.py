"""Project core: settings, the event store, errors, money and time helpers."""
# Load the Celery app with Django so that @shared_task binds to it (and to its
# eager mode in the embedded default) in every process, not only in workers.
from celery_app import app as celery_app

__all__ = ["celery_app"]
