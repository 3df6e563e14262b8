"""The projector's coalescing wake-up flag in Redis (one pending wake-up at a time, so bursts become few runs) and its fast lane."""
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

# The fast lane: a worker process's listener thread (listen()) blocks on WAKE_LIST and runs the
# projector the moment a claim pushes to it, skipping the broker's hops (web -> Redis -> the worker's
# consumer -> its pool child, and the task's own machinery): a few ms of an idle approve -> dashboard,
# more on a loaded machine, where each hop waits for a core. It is advertised by LISTENER_KEY, which
# it refreshes at least every LISTEN_BLOCK_SECONDS and which expires LISTENER_TTL_MS after its last
# refresh: a claim that finds no listener enqueues the Celery task at once, as without the lane.
WAKE_LIST = "ledgerpulse:projector:wake-list"
LISTENER_KEY = "ledgerpulse:projector:listening"
LISTEN_BLOCK_SECONDS = 1
LISTENER_TTL_MS = 3000
# The at-least-once fallback: this long after a claim handed to a listener, the claiming process
# checks that the projector has published past the claimed position (PROJECTED_KEY, set after every
# published batch) and enqueues the Celery task if not (a listener that died holding the wake-up or
# in the middle of its run, Redis losing the list). One GET per check, and no broker traffic while
# the lane works: a Celery task per wake-up would cost the worker more CPU than the lane saves.
FALLBACK_CHECK_SECONDS = 1.0
PROJECTED_KEY = "ledgerpulse:projector:published-through"

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
        # Every wake-up pushed so far came from a commit this run's read will see: they are served.
        pipe.delete(WAKE_LIST)
        if MIN_GAP_MS:  # 0: no spacing (Redis refuses a 0 ms expiry)
            pipe.set(LAST_RUN_KEY, 1, px=MIN_GAP_MS)
        pipe.execute()


# The claim, in one round trip: the flag (SET NX), what is left of the last run's gap, whether a listener
# advertises itself, and when one does and no gap is left, the push that wakes it (the idle case: the
# commit's wake-up reaches the listener in the claim's own round trip).
_CLAIM = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return {0, 0, 0, 0} end
local remaining = redis.call('PTTL', KEYS[2])
local listening = redis.call('EXISTS', KEYS[3])
if listening == 1 and remaining <= 0 then
    redis.call('RPUSH', KEYS[4], ARGV[1])
    redis.call('EXPIRE', KEYS[4], ARGV[2])
    return {1, remaining, 1, 1}
end
return {1, remaining, listening, 0}
"""
_claim_script = None


def claim(last_position: int) -> tuple[float, bool, bool] | None:
    """None when a run is already pending; else (the seconds the new run should wait, 0: start at once;
    whether a listener is there to take it; whether it was handed the run already).

    A lone commit always claims. The run clears the flag before it reads the log, so an event
    committed after that read claims again and is not missed. One round trip (a script): the
    claim, what is left of the last run's gap (its key's TTL), whether a listener advertises
    itself, and with a listener and no gap left, the push that starts the run.
    """
    global _claim_script
    client = redis_client()
    if _claim_script is None:
        _claim_script = client.register_script(_CLAIM)
    claimed, remaining_ms, listening, pushed = _claim_script(
        keys=[WAKE_KEY, LAST_RUN_KEY, LISTENER_KEY, WAKE_LIST], args=[last_position, WAKE_TTL_SECONDS], client=client,
    )
    if not claimed:
        return None
    return max(0, min(int(remaining_ms), MIN_GAP_MS)) / 1000, bool(listening), bool(pushed)


def _push(position: int) -> None:
    """Hand a claimed run to a listener: one round trip; the list expires with the flag if nobody takes it."""
    pipe = redis_client().pipeline(transaction=False)
    pipe.rpush(WAKE_LIST, position)
    pipe.expire(WAKE_LIST, WAKE_TTL_SECONDS)
    pipe.execute()


def published_through() -> int:
    """How far the projector has published (0 when unknown: Redis flushed, nothing published yet)."""
    value = redis_client().get(PROJECTED_KEY)
    return int(value) if value else 0


def mark_published(through: int, *, announce_channel: str | None = None) -> None:
    """After a batch is published: record how far (the fallback checks read it), and announce the position
    on `announce_channel` (analytics.waiting's hint to waiting readers) in the same round trip."""
    if not settings.REDIS_URL or settings.CELERY_TASK_ALWAYS_EAGER:
        return
    pipe = redis_client().pipeline(transaction=False)
    pipe.set(PROJECTED_KEY, through)
    if announce_channel:
        pipe.publish(announce_channel, through)
    pipe.execute()


# The claims are sent by one thread per process, never by the committing request: a request does
# not wait for Redis, and there is at most one claim in flight per process. A commit notes its
# position and wakes the thread; the thread claims for everything noted so far, then looks again.
# A claim sent before a commit may reach Redis too early to cover it (the run it found pending may
# read the log before that commit), so a commit noted while a claim is in flight gets a claim of
# its own afterwards, shared with every other commit noted meanwhile: under load one round trip
# per claim in flight instead of one per commit, and no wake-up is dropped.
_changed = threading.Condition()
_pause = time.sleep
# checks: (due on time.monotonic(), position, task) per claim handed to a listener, oldest first.
_state = {"noted": 0, "busy": False, "task": None, "pid": None, "checks": []}


def wake(last_position: int, task) -> None:
    """After a commit: make sure a run of the projector's Celery `task` reads the log after it (soon, not before returning)."""
    if settings.CELERY_TASK_ALWAYS_EAGER or not settings.REDIS_URL:
        task.delay()
        return
    with _changed:
        _state["noted"] = max(_state["noted"], last_position)
        _state["task"] = task
        if _state["pid"] != os.getpid():  # first commit in this process (or in a forked child)
            _state["pid"], _state["busy"], _state["checks"] = os.getpid(), False, []
            # The thread gets its state and condition as arguments: a thread stuck in a broker call that
            # hangs keeps only its own, never a fresh pair (tests give each test one).
            threading.Thread(target=_claimer, args=(_state, _changed), name="projector-wakeup", daemon=True).start()
            # A process that exits right after its last commit (a management command: seed_demo, an
            # import, a shell) must not take that commit's wake-up with it: without beat nothing else
            # would wake the projector until the next commit.
            atexit.register(drain, EXIT_DRAIN_SECONDS)
        _changed.notify_all()


def _due(state: dict) -> list[tuple]:
    """The checks whose time has come, taken off the list (the caller holds the condition)."""
    now = time.monotonic()
    due = [check for check in state["checks"] if check[0] <= now]
    state["checks"] = state["checks"][len(due):]
    return due


def _claimer(state: dict, changed: threading.Condition) -> None:
    while True:
        with changed:
            while not state["noted"] and not (state["checks"] and state["checks"][0][0] <= time.monotonic()):
                state["busy"] = False
                changed.notify_all()
                changed.wait(max(0.0, state["checks"][0][0] - time.monotonic()) if state["checks"] else None)
            position, task = state["noted"], state["task"]
            due = _due(state)
            state["noted"], state["busy"] = 0, True
        try:
            if due:
                _check(due)
            if position:
                claimed = claim(position)
                if claimed is not None:
                    countdown, listening, pushed = claimed
                    if countdown:
                        # A run started moments ago: let the batch gather. Commits meanwhile find the
                        # flag claimed, and the run started below clears it only when it starts.
                        _pause(countdown)
                    if listening:
                        if not pushed:
                            _push(position)
                        with changed:
                            state["checks"].append((time.monotonic() + FALLBACK_CHECK_SECONDS, position, task))
                    else:
                        task.delay()
        except Exception:  # noqa: BLE001 - this thread must live on
            # Redis or the broker failed: as for any lost wake-up, the flag expires and the next
            # commit, or the periodic catch-up, wakes the projector.
            logger.exception("could not wake the projector")


def _check(due: list[tuple]) -> None:
    """The fallback: enqueue the Celery task once if the fast lane has not published past these claims."""
    position = max(check[1] for check in due)
    through = published_through()
    if through < position:
        logger.warning("the projector's fast lane has not published position %d (only %d) a while after its wake-up; "
                       "enqueueing the task", position, through)
        due[-1][2].delay()


def drain(timeout: float = 5) -> bool:
    """Wait until every noted commit has been claimed for and every fallback check made (tests, and a process about to exit)."""
    with _changed:
        return _changed.wait_for(lambda: not _state["noted"] and not _state["busy"] and not _state["checks"], timeout)


def listen(run, stop: threading.Event) -> None:
    """The fast lane's loop (a worker process's thread, until `stop` is set): advertise, block for a
    wake-up, call `run()` (which clears the flag and projects), and again.

    A blocking client of its own: the shared one's short timeouts would cut the wait. Redis failing
    costs only the lane: the key expires, claims go back to the broker, and the loop retries.
    """
    from core.redis import client

    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = client(settings.REDIS_URL, socket_timeout=LISTEN_BLOCK_SECONDS + 5, socket_connect_timeout=1)
            # The advertisement and the wait in one round trip.
            pipe = conn.pipeline(transaction=False)
            pipe.set(LISTENER_KEY, os.getpid(), px=LISTENER_TTL_MS)
            pipe.blpop([WAKE_LIST], timeout=LISTEN_BLOCK_SECONDS)
            if pipe.execute()[1] is None:
                continue
        except Exception:  # noqa: BLE001 - this thread must live on
            logger.warning("the projector's fast lane lost Redis; wake-ups go through the broker meanwhile", exc_info=True)
            conn = None
            stop.wait(1)
            continue
        try:
            run()
        except Exception:  # noqa: BLE001 - the fallback task (and the periodic catch-up) retries
            logger.exception("a fast-lane projector run failed")
