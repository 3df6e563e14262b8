"""Celery application: `celery -A celery_app worker` and `celery -A celery_app beat`."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")

app = Celery("ledgerpulse")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["analytics", "core", "realtime"])
