"""The projector's coalescing wake-up flag in Redis: one pending wake-up at a time, so bursts become few runs."""
import atexit
import logging
import os
import threading
import time

from django.conf import settings

logger = logging.getLogger(__name__)

WAKE_KEY = "ledgerpulse:projector:wake-pending"
# If a wake-up is lost (broker hiccup), the flag expires and the next commit, or
# the periodic catch-up, wakes the projector again.
WAKE_TTL_SECONDS = 5
# Runs start at least this far apart. A lone commit (the last run started longer ago) wakes the
# projector at once; under load a run costs a few ms of worker CPU however few events it takes,
# on the cores the web and PostgreSQL need, so a short wait that gathers a batch is cheaper.
LAST_RUN_KEY = "ledgerpulse:projector:last-run"
MIN_GAP_MS = 20
# How long an exiting process waits for its last commits' wake-ups to be sent.
EXIT_DRAIN_SECONDS = 2

_redis = None


def redis_client():
    """This process's Redis client for the flag and the position announcements (short timeouts)."""
    global _redis
    if _redis is None:
        from core.redis import client  # REDIS_URL's server, or Sentinel's current master

        _redis = client(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    return _redis


def clear() -> None:
    """Called by a run before it reads the log: the next commit wakes the projector again.

    It also marks the run's start (LAST_RUN_KEY, living MIN_GAP_MS): a run enqueued within that
    time waits for the rest of it (wake()), so that under load the runs are spaced and each
    projects a batch, instead of running back to back for one or two events each.
    """
    if settings.REDIS_URL and not settings.CELERY_TASK_ALWAYS_EAGER:
        pipe = redis_client().pipeline(transaction=False)
        pipe.delete(WAKE_KEY)
        if MIN_GAP_MS:  # 0: no spacing (Redis refuses a 0 ms expiry)
            pipe.set(LAST_RUN_KEY, 1, px=MIN_GAP_MS)
        pipe.execute()


def claim_countdown(last_position: int) -> float | None:
    """None when a run is already pending; else the seconds the new run should wait (0: start at once).

    A lone commit always claims. The run clears the flag before it reads the log, so an event
    committed after that read claims again and is not missed. One round trip: the claim and what
    is left of the last run's gap (its key's TTL).
    """
    pipe = redis_client().pipeline(transaction=False)
    pipe.set(WAKE_KEY, last_position, nx=True, ex=WAKE_TTL_SECONDS)
    pipe.pttl(LAST_RUN_KEY)
    claimed, remaining_ms = pipe.execute()
    if not claimed:
        return None
    return max(0, min(int(remaining_ms), MIN_GAP_MS)) / 1000


# The claims are sent by one thread per process, never by the committing request: a request does
# not wait for Redis, and there is at most one claim in flight per process. A commit notes its
# position and wakes the thread; the thread claims for everything noted so far, then looks again.
# A claim sent before a commit may reach Redis too early to cover it (the run it found pending may
# read the log before that commit), so a commit noted while a claim is in flight gets a claim of
# its own afterwards, shared with every other commit noted meanwhile: under load one round trip
# per claim in flight instead of one per commit, and no wake-up is dropped.
_changed = threading.Condition()
_pause = time.sleep
_state = {"noted": 0, "busy": False, "task": None, "pid": None}


def wake(last_position: int, task) -> None:
    """After a commit: make sure a run of the projector's Celery `task` reads the log after it (soon, not before returning)."""
    if settings.CELERY_TASK_ALWAYS_EAGER or not settings.REDIS_URL:
        task.delay()
        return
    with _changed:
        _state["noted"] = max(_state["noted"], last_position)
        _state["task"] = task
        if _state["pid"] != os.getpid():  # first commit in this process (or in a forked child)
            _state["pid"], _state["busy"] = os.getpid(), False
            # The thread gets its state and condition as arguments: a thread stuck in a broker call that
            # hangs keeps only its own, never a fresh pair (tests give each test one).
            threading.Thread(target=_claimer, args=(_state, _changed), name="projector-wakeup", daemon=True).start()
            # A process that exits right after its last commit (a management command: seed_demo, an
            # import, a shell) must not take that commit's wake-up with it: without beat nothing else
            # would wake the projector until the next commit.
            atexit.register(drain, EXIT_DRAIN_SECONDS)
        _changed.notify_all()


def _claimer(state: dict, changed: threading.Condition) -> None:
    while True:
        with changed:
            while not state["noted"]:
                state["busy"] = False
                changed.notify_all()
                changed.wait()
            position, task = state["noted"], state["task"]
            state["noted"], state["busy"] = 0, True
        try:
            countdown = claim_countdown(position)
            if countdown is not None:
                if countdown:
                    # A run started moments ago: let the batch gather. Commits meanwhile find the
                    # flag claimed, and the run enqueued below clears it only when it starts.
                    _pause(countdown)
                task.delay()
        except Exception:  # noqa: BLE001 - this thread must live on
            # Redis or the broker failed: as for any lost wake-up, the flag expires and the next
            # commit, or the periodic catch-up, wakes the projector.
            logger.exception("could not wake the projector")


def drain(timeout: float = 5) -> bool:
    """Wait until every noted commit has been claimed for (tests, and a process about to exit)."""
    with _changed:
        return _changed.wait_for(lambda: not _state["noted"] and not _state["busy"], timeout)
