"""Waking the projector: one pending wake-up at a time, so bursts coalesce into few task runs."""
import pytest

from analytics import wakeup
from tests.stack import REDIS_TEST_DB, flush_test_redis

pytestmark = pytest.mark.needs_redis


@pytest.fixture
def broker_mode(settings, monkeypatch):
    flush_test_redis()
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_TEST_DB}"
    monkeypatch.setattr(wakeup, "_redis", None)
    enqueued = []
    monkeypatch.setattr("analytics.tasks.project_weekly_income.delay", lambda: enqueued.append(1))
    yield enqueued
    monkeypatch.setattr(wakeup, "_redis", None)
    flush_test_redis()


def test_a_burst_of_commits_enqueues_one_projection(broker_mode):
    for position in range(1, 201):
        wakeup.on_events_committed(sender=None, last_position=position)
    assert len(broker_mode) == 1


def test_a_commit_after_the_task_started_wakes_it_again(broker_mode):
    wakeup.on_events_committed(sender=None, last_position=1)
    wakeup.clear_wake_flag()  # what the task does before it reads the log
    wakeup.on_events_committed(sender=None, last_position=2)
    assert len(broker_mode) == 2


def test_in_embedded_mode_every_commit_runs_the_projection_in_process(settings, monkeypatch):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    ran = []
    monkeypatch.setattr("analytics.tasks.project_weekly_income.delay", lambda: ran.append(1))
    wakeup.on_events_committed(sender=None, last_position=1)
    wakeup.on_events_committed(sender=None, last_position=2)
    assert len(ran) == 2
