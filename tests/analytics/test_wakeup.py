"""Waking the projector: one pending wake-up at a time, so bursts coalesce into few task runs."""
import ast
import threading
import time
from pathlib import Path
from types import SimpleNamespace

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
    # A claimer thread of its own: one an earlier test left inside a broker call that hangs must not
    # hold this test's claims (it keeps its own state and condition).
    monkeypatch.setattr(wakeup, "_changed", threading.Condition())
    monkeypatch.setattr(wakeup, "_state", {"noted": 0, "busy": False, "task": None, "pid": None, "checks": []})
    enqueued = []  # how long the claimer waited before enqueueing each run (0: at once)
    waited = []
    monkeypatch.setattr(wakeup, "_pause", waited.append)
    # The task itself is replaced, not its .delay: a shared_task is a proxy resolved per thread through
    # Celery's current app, and a test that made another app current leaves the claimer thread a
    # different task object than the one patched here (5 tests failed that way in the full suite).
    monkeypatch.setattr(tasks, "project_weekly_income", SimpleNamespace(delay=lambda: enqueued.append(waited.pop() if waited else 0)))
    yield enqueued
    monkeypatch.setattr(wakeup, "_redis", None)
    flush_test_redis()


@pytest.mark.needs_redis
def test_a_burst_of_commits_enqueues_one_projection(broker_mode):
    for position in range(1, 201):
        tasks.wake_projector(sender=None, last_position=position)
    assert wakeup.drain()
    assert len(broker_mode) == 1


@pytest.mark.needs_redis
def test_a_commit_after_the_task_started_wakes_it_again(broker_mode):
    tasks.wake_projector(sender=None, last_position=1)
    assert wakeup.drain()
    wakeup.clear()  # what the task does before it reads the log
    tasks.wake_projector(sender=None, last_position=2)
    assert wakeup.drain()
    assert len(broker_mode) == 2


@pytest.mark.needs_redis
def test_a_run_enqueued_soon_after_the_last_one_started_waits_out_the_gap_and_a_lone_commit_does_not(broker_mode, monkeypatch):
    monkeypatch.setattr(wakeup, "MIN_GAP_MS", 60_000)  # a gap no slow machine outlasts during the test
    tasks.wake_projector(sender=None, last_position=1)
    assert wakeup.drain() and broker_mode == [0]  # nothing ran lately: at once
    wakeup.clear()  # the run starts
    tasks.wake_projector(sender=None, last_position=2)
    assert wakeup.drain() and 50 < broker_mode[1] <= 60  # the rest of the gap, then enqueued
    wakeup.clear()
    wakeup.redis_client().delete(wakeup.LAST_RUN_KEY)  # as if the gap had passed
    tasks.wake_projector(sender=None, last_position=3)
    assert wakeup.drain() and broker_mode[2] == 0


@pytest.mark.needs_redis
def test_a_commit_during_a_claim_in_flight_sends_no_claim_of_its_own_but_is_claimed_after_it(broker_mode, monkeypatch):
    """The claim in flight may have reached Redis before this commit: a run it found pending
    could read the log too early. So the claimer claims once more afterwards, for it."""
    sent = []
    real_claim = wakeup.claim

    def claim(position):
        sent.append(position)
        claimed = real_claim(position)
        if position == 1:
            # While this claim is in flight: the pending run starts (clears the flag, reads the
            # log), then three more commits land, on other threads of this process.
            wakeup.clear()
            for later in (2, 3, 4):
                tasks.wake_projector(sender=None, last_position=later)
        return claimed

    monkeypatch.setattr(wakeup, "claim", claim)
    tasks.wake_projector(sender=None, last_position=1)
    assert wakeup.drain()
    assert sent == [1, 4]  # one follow-up claim for the three commits, never one each
    assert len(broker_mode) == 2  # the follow-up found no run pending: it enqueued one
    tasks.wake_projector(sender=None, last_position=5)
    assert wakeup.drain()
    assert sent == [1, 4, 5] and len(broker_mode) == 2  # the run enqueued last is still pending


@pytest.mark.needs_redis
def test_a_failed_claim_is_logged_and_the_next_commit_claims_again(broker_mode, monkeypatch, caplog):
    real_claim, down = wakeup.claim, [True]

    def claim(position):
        if down[0]:
            raise ConnectionError("redis is down")
        return real_claim(position)

    monkeypatch.setattr(wakeup, "claim", claim)
    with caplog.at_level("ERROR", logger="analytics.wakeup"):
        tasks.wake_projector(sender=None, last_position=1)  # the request is not failed by it
        assert wakeup.drain()
    assert "could not wake the projector" in caplog.text and broker_mode == []
    down[0] = False
    tasks.wake_projector(sender=None, last_position=2)  # the claimer lives on
    assert wakeup.drain()
    assert len(broker_mode) == 1


@pytest.fixture
def listener(broker_mode, monkeypatch):
    """A fast-lane listener thread on the test Redis; `runs` lists what each run found pending (the flag)."""
    monkeypatch.setattr(wakeup, "FALLBACK_CHECK_SECONDS", 0.2)
    runs, stop = [], threading.Event()

    def run():
        runs.append(wakeup.redis_client().get(wakeup.WAKE_KEY))
        wakeup.clear()
        wakeup.mark_published(int(runs[-1] or 0))  # what a run's batch publishes through: the claimed position

    thread = threading.Thread(target=wakeup.listen, args=(run, stop), daemon=True)
    thread.start()
    wait_for(lambda: wakeup.redis_client().exists(wakeup.LISTENER_KEY))
    yield SimpleNamespace(runs=runs, enqueued=broker_mode)
    stop.set()
    thread.join(5)


def wait_for(condition, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.needs_redis
def test_a_listening_worker_runs_the_projector_itself_and_no_task_is_enqueued(listener):
    tasks.wake_projector(sender=None, last_position=7)
    wait_for(lambda: listener.runs)
    assert wakeup.drain()  # the fallback check, made after the run published past 7
    assert listener.runs == [b"7"] and listener.enqueued == []
    tasks.wake_projector(sender=None, last_position=8)  # the run cleared the flag: the next commit wakes it again
    wait_for(lambda: len(listener.runs) == 2)
    assert wakeup.drain() and listener.enqueued == []


@pytest.mark.needs_redis
def test_a_burst_of_commits_wakes_the_listener_for_few_runs_not_one_each(listener):
    for position in range(1, 201):
        tasks.wake_projector(sender=None, last_position=position)
    assert wakeup.drain()
    wait_for(lambda: not wakeup.redis_client().exists(wakeup.WAKE_LIST))
    assert 1 <= len(listener.runs) <= 3 and listener.enqueued == []


@pytest.mark.needs_redis
def test_a_wake_up_handed_to_a_listener_that_never_publishes_falls_back_to_the_task(broker_mode, monkeypatch):
    monkeypatch.setattr(wakeup, "FALLBACK_CHECK_SECONDS", 0.2)
    # A listener advertised itself and died (or dies holding the wake-up): nothing takes the list.
    wakeup.redis_client().set(wakeup.LISTENER_KEY, 1, px=wakeup.LISTENER_TTL_MS)
    wakeup.mark_published(3)  # an earlier batch
    started = time.monotonic()
    tasks.wake_projector(sender=None, last_position=4)
    assert wakeup.drain()
    assert len(broker_mode) == 1 and time.monotonic() - started >= 0.2
    assert wakeup.redis_client().lrange(wakeup.WAKE_LIST, 0, -1) == [b"4"]


@pytest.mark.needs_redis
def test_an_idle_claim_with_a_listener_pushes_the_wake_up_in_its_own_round_trip_and_one_within_the_gap_does_not(
    broker_mode, monkeypatch,
):
    monkeypatch.setattr(wakeup, "MIN_GAP_MS", 60_000)  # a gap no slow machine outlasts during the test
    client = wakeup.redis_client()
    client.set(wakeup.LISTENER_KEY, 1, px=wakeup.LISTENER_TTL_MS)
    assert wakeup.claim(5) == (0, True, True)
    assert client.lrange(wakeup.WAKE_LIST, 0, -1) == [b"5"]
    assert wakeup.claim(6) is None  # the run is pending: nothing more is pushed
    wakeup.clear()  # the run starts, and its gap with it
    countdown, listening, pushed = wakeup.claim(7)
    assert 0 < countdown <= wakeup.MIN_GAP_MS / 1000 and listening and not pushed
    assert not client.exists(wakeup.WAKE_LIST)  # the claimer pushes after the pause


@pytest.mark.needs_redis
def test_without_a_listener_a_claim_enqueues_the_task_at_once(broker_mode):
    tasks.wake_projector(sender=None, last_position=1)
    assert wakeup.drain() and len(broker_mode) == 1
    assert not wakeup.redis_client().exists(wakeup.WAKE_LIST)


@pytest.mark.needs_redis
def test_a_run_clears_the_wake_ups_already_pushed_since_its_read_sees_their_commits(broker_mode):
    wakeup.redis_client().rpush(wakeup.WAKE_LIST, 5, 6)
    wakeup.clear()
    assert not wakeup.redis_client().exists(wakeup.WAKE_LIST)


def test_a_worker_process_starts_its_listener_unless_the_lane_is_turned_off(monkeypatch, settings):
    import celery_app

    started = []
    monkeypatch.setattr(tasks, "start_listener", lambda: started.append(True))
    settings.PROJECTOR_FAST_LANE = False
    celery_app.start_projector_fast_lane()
    assert started == []
    settings.PROJECTOR_FAST_LANE = True
    celery_app.start_projector_fast_lane()
    assert started == [True]


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


EXITING = """
import sys
from django.conf import settings
settings.configure(REDIS_URL=sys.argv[1], REDIS_SENTINELS=[], CELERY_TASK_ALWAYS_EAGER=False)
from analytics import wakeup

class Task:
    @staticmethod
    def delay():
        open(sys.argv[2], "w").write("enqueued")

wakeup.MIN_GAP_MS = 0
wakeup.wake(7, Task)
# and exit at once, as a management command does after its last commit
"""


@pytest.mark.needs_redis
def test_a_process_that_exits_right_after_its_commit_still_wakes_the_projector(tmp_path):
    import subprocess
    import sys

    flush_test_redis()
    marker = tmp_path / "enqueued"
    url = f"redis://127.0.0.1:6379/{REDIS_TEST_DB}"
    result = subprocess.run([sys.executable, "-c", EXITING, url, str(marker)], cwd=ANALYTICS.parent, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert marker.read_text() == "enqueued"
    flush_test_redis()
