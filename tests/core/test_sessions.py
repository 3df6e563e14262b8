"""Housekeeping of sign-in sessions: expired ones go, live ones stay."""
from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

pytestmark = pytest.mark.django_db


def a_session(expires_in: timedelta) -> str:
    store = SessionStore()
    store["_auth_user_id"] = "1"
    store.create()
    Session.objects.filter(session_key=store.session_key).update(expire_date=timezone.now() + expires_in)
    return store.session_key


def test_it_deletes_the_expired_sessions_hourly_and_keeps_the_live_ones(settings):
    from core.tasks import purge_expired_sessions

    expired = [a_session(timedelta(seconds=-1)), a_session(timedelta(days=-30))]
    live = a_session(timedelta(minutes=5))
    assert purge_expired_sessions.delay().get() == 2
    assert list(Session.objects.values_list("session_key", flat=True)) == [live]
    assert not Session.objects.filter(session_key__in=expired).exists()
    assert settings.CELERY_BEAT_SCHEDULE["purge-expired-sessions"] == {"task": "core.purge_expired_sessions", "schedule": 3600.0}
