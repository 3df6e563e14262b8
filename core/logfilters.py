"""A log that cannot flood: identical records are let through a few times per interval, then counted.

Under a connection flood the server once wrote 239,000 "Too many open files" tracebacks (116 MB in
40 s), which buried everything else and could fill the disk. `RepeatThrottle` is installed on the
root handler (LOGGING in core/settings.py): of the records with the same logger, level and message
template (`record.msg` before its arguments are filled in), the first `limit` per `interval` seconds
pass; the rest are dropped and counted, and once the interval is over one line says

    core.logfilters WARNING last message repeated 2,391 more times in the last 10 s (uvicorn.error ERROR 'Exception in ASGI application\\n')

before the next record. Summaries of keys that went quiet are written with the next record of any key.
"""
from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import OrderedDict
from typing import Callable

SUMMARY_LOGGER = "core.logfilters"
_SUMMARY_FLAG = "_lp_repeat_summary"
_SEEN = "_lp_repeat_allowed"
# extra= for a record of every occurrence (one line per projected batch, as an access log has one per
# request): it shares its template with every other such record by design and is never summarized.
EVERY = {"_lp_every": True}
# Distinct templates remembered at once; the oldest is forgotten (and summarized) beyond this.
MAX_KEYS = 2048


class _Window:
    __slots__ = ("start", "passed", "dropped", "name", "level", "template")

    def __init__(self, start: float, name: str, level: int, template: str):
        self.start = start
        self.passed = 0
        self.dropped = 0
        self.name = name
        self.level = level
        self.template = template


class RepeatThrottle(logging.Filter):
    def __init__(
        self, limit: int = 10, interval: float = 10, clock: Callable[[], float] = time.monotonic, exempt: tuple[str, ...] = ("uvicorn.access",)
    ):
        super().__init__()
        # Loggers whose records all share one template by design: an access log, when it is on, is a
        # record of every request and is never summarized.
        self.exempt = frozenset(exempt)
        self.limit = int(limit)
        self.interval = float(interval)
        self.clock = clock
        self._windows: OrderedDict[tuple, _Window] = OrderedDict()
        self._lock = threading.Lock()
        self._local = threading.local()
        # What was dropped since the last summary is still told when the process exits (before
        # logging's own exit hook closes the handlers: atexit runs the later registration first).
        atexit.register(self._flush_at_exit)

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            getattr(record, _SUMMARY_FLAG, False) or getattr(self._local, "emitting", False) or record.name in self.exempt
            or getattr(record, "_lp_every", False)
        ):
            return True
        # Installed on a logger and on a handler, a record passes both: it is counted once.
        seen = getattr(record, _SEEN, None)
        if seen is not None:
            return seen
        allowed = self._count(record)
        setattr(record, _SEEN, allowed)
        return allowed

    def _count(self, record: logging.LogRecord) -> bool:
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        key = (record.name, record.levelno, template)
        now = self.clock()
        with self._lock:
            due = self._collect_due(now)
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window(now, record.name, record.levelno, template)
                if len(self._windows) > MAX_KEYS:
                    _, oldest = self._windows.popitem(last=False)
                    if oldest.dropped:
                        due.append(oldest)
            else:
                self._windows.move_to_end(key)
            window.passed += 1
            allowed = window.passed <= self.limit
            if not allowed:
                window.dropped += 1
        for ended in due:
            self._summarize(ended, now)
        return allowed

    def _collect_due(self, now: float) -> list[_Window]:
        """Windows that are over: forget them; those that dropped records get a summary line."""
        due = []
        for key in [key for key, window in self._windows.items() if now - window.start >= self.interval]:
            window = self._windows.pop(key)
            if window.dropped:
                due.append(window)
        return due

    def _summarize(self, window: _Window, now: float) -> None:
        elapsed = now - window.start
        seconds = f"{elapsed:.0f}" if elapsed >= 10 else f"{elapsed:.1f}"
        template = window.template if len(window.template) <= 120 else window.template[:117] + "..."
        summary = logging.LogRecord(
            SUMMARY_LOGGER, logging.WARNING, __file__, 0,
            "last message repeated %s more times in the last %s s (%s %s %r)",
            (f"{window.dropped:,}", seconds, window.name, logging.getLevelName(window.level), template),
            None,
        )
        setattr(summary, _SUMMARY_FLAG, True)
        # Through the summary logger, so it reaches the same handlers (and their other filters) as any line.
        self._local.emitting = True
        try:
            logging.getLogger(SUMMARY_LOGGER).handle(summary)
        finally:
            self._local.emitting = False

    def _flush_at_exit(self) -> None:
        # By now a handler's stream may already be closed (a test runner's captured stderr):
        # then the summary is lost quietly instead of printing "--- Logging error ---".
        previous, logging.raiseExceptions = logging.raiseExceptions, False
        try:
            self.flush()
        finally:
            logging.raiseExceptions = previous

    def flush(self) -> None:
        """Write the summaries still pending (at exit, or in tests)."""
        now = self.clock()
        with self._lock:
            pending = [window for window in self._windows.values() if window.dropped]
            self._windows.clear()
        for window in pending:
            self._summarize(window, now)
