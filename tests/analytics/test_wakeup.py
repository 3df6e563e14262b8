"""Waking the projector: one pending wake-up at a time, so bursts coalesce into few task runs."""
import ast
from pathlib import Path

import pytest

from analytics import tasks, wakeup
from tests.stack import REDIS_TEST_DB, flush_test_redis

ANALYTICS = Path(__file__).resolve().parents[2] / "analytics"


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


@pytest.mark.needs_redis
def test_a_burst_of_commits_enqueues_one_projection(broker_mode):
    for position in range(1, 201):
        tasks.wake_projector(sender=None, last_position=position)
    assert len(broker_mode) == 1


@pytest.mark.needs_redis
def test_a_commit_after_the_task_started_wakes_it_again(broker_mode):
    tasks.wake_projector(sender=None, last_position=1)
    wakeup.clear()  # what the task does before it reads the log
    tasks.wake_projector(sender=None, last_position=2)
    assert len(broker_mode) == 2


def test_in_embedded_mode_every_commit_runs_the_projection_in_process(settings, monkeypatch):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    ran = []
    monkeypatch.setattr("analytics.tasks.project_weekly_income.delay", lambda: ran.append(1))
    tasks.wake_projector(sender=None, last_position=1)
    tasks.wake_projector(sender=None, last_position=2)
    assert len(ran) == 2


def _analytics_imports(module: str) -> set[str]:
    tree = ast.parse((ANALYTICS / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return {name for name in names if name.startswith("analytics.")}


def test_it_keeps_the_wake_up_flag_free_of_the_task_module():
    # tasks -> wakeup only: the flag module imports nothing of analytics, so no import cycle.
    assert _analytics_imports("wakeup") == set()
    assert not any(name.startswith("analytics.tasks") for name in _analytics_imports("waiting"))


def test_it_defines_the_projection_position_once():
    from analytics import projection, selectors

    defined = [module for module in ("projection", "selectors", "tasks", "waiting", "snapshot", "api")
               if "def projection_position(" in (ANALYTICS / f"{module}.py").read_text()]
    assert defined == ["selectors"] and not hasattr(projection, "projection_position")
    assert callable(selectors.projection_position)
