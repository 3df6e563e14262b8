"""What one scrape of /metrics exposes: every process's series (multiprocess files or this process) plus the projection lag.

With PROMETHEUS_MULTIPROC_DIR set (the Procfile's web and worker lines), each process writes its
values to files in a directory of its own process group under one root (core/metrics_dir.py):
root/web-<pid>/ for the web server's worker processes, root/worker-<pid>/ for a Celery worker's pool.
A scrape reads every directory under the root and sums them, so whichever web process answers, it
answers the same totals, Celery's included. Without it (`make run`, unit tests) this process's own
registry is the whole truth.
"""
from __future__ import annotations

import glob
import logging
import os
import re

from django.conf import settings
from django.utils.module_loading import import_string
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

logger = logging.getLogger(__name__)

_LIVE_FILE = re.compile(r"gauge_live[a-z]+_(?P<pid>[0-9]+)\.db")


def multiprocess_root() -> str | None:
    """The directory that holds every process group's directory, or None in single-process mode."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return os.path.dirname(os.path.abspath(path)) if path else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def forget_dead_processes(root: str) -> None:
    """Drop the live-gauge files of processes that are gone (a uvicorn worker restarted, a pool process
    killed): neither server offers a hook in the parent to do it when they die. Counters stay summed."""
    for directory in glob.glob(os.path.join(root, "*", "")):
        for name in os.listdir(directory):
            match = _LIVE_FILE.fullmatch(name)
            if match and not pid_alive(int(match.group("pid"))):
                mark_process_dead(int(match.group("pid")), directory)


class MultiProcessRoot:
    """Every process group's files under `root`, merged into one set of series."""

    def __init__(self, root: str):
        self.root = root

    def collect(self):
        forget_dead_processes(self.root)
        return MultiProcessCollector.merge(glob.glob(os.path.join(self.root, "*", "*.db")), accumulate=True)


class ThisProcess:
    """Single-process mode: this process's default registry (our series plus Python's process and GC ones)."""

    def collect(self):
        return REGISTRY.collect()


class ProjectionLag:
    """How far each projection is behind the log, read at scrape time.

    Computed here rather than set by the projector after each run: a projector that is stuck or
    down runs no more, and a gauge it set would stay frozen at its last good value exactly when the
    lag matters. The reading is the one /readyz uses (settings.HEALTH_PROJECTION_LAG: a few small
    indexed queries). A failed read leaves the series out of this scrape; the rest still answers.
    """

    def collect(self):
        try:
            lag = import_string(settings.HEALTH_PROJECTION_LAG)()
        except Exception:  # noqa: BLE001 - the database is away: a scrape without the lag beats no scrape
            logger.warning("reading the projection lag for /metrics failed", exc_info=True)
            return []
        events = GaugeMetricFamily(
            "ledgerpulse_projection_lag_events", "Events committed to the log that the projection has not applied yet", labels=("projection",)
        )
        seconds = GaugeMetricFamily(
            "ledgerpulse_projection_lag_seconds", "Age of the oldest event the projection has not applied yet (0 when caught up)",
            labels=("projection",),
        )
        for name, info in lag.items():
            events.add_metric((name,), info["behind"])
            seconds.add_metric((name,), info["seconds"])
        return [events, seconds]


def registry() -> CollectorRegistry:
    """The registry one scrape renders."""
    root = multiprocess_root()
    scrape = CollectorRegistry(auto_describe=False)
    if root is not None:
        scrape.register(MultiProcessRoot(root))
    else:
        scrape.register(ThisProcess())
    scrape.register(ProjectionLag())
    return scrape
