"""`python core/metrics_dir.py web|worker $$`: an empty metrics directory for the process group about to start; prints its path.

The Procfile runs it before `exec uvicorn` / `exec celery` with the shell's pid, the process that
becomes the group's leader: the directory is METRICS_DIR/<kind>-<that pid>, made empty here once
for the whole group, before any worker process exists (never by a child, which would wipe its
siblings' values). Directories of groups whose leader is gone are removed too: a restarted server
starts its counters again from zero, which Prometheus reads as a counter reset. Standard library only
(no Django), and run as a file, not as core.metrics_dir, so the package (and Celery with it) is not imported.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile

KINDS = ("web", "worker")


def default_root() -> str:
    return os.path.join(tempfile.gettempdir(), "ledgerpulse-metrics")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare(kind: str, root: str, leader: int) -> str:
    """Create root/<kind>-<leader> empty; remove the directories of dead groups under root."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)} (got {kind!r})")
    if not os.path.isabs(root):
        raise ValueError(f"METRICS_DIR must be an absolute path (got {root!r})")
    os.makedirs(root, exist_ok=True)
    for name in os.listdir(root):
        group, _, pid = name.rpartition("-")
        if group in KINDS and pid.isdigit() and int(pid) != leader and not _alive(int(pid)):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    path = os.path.join(root, f"{kind}-{leader}")
    shutil.rmtree(path, ignore_errors=True)  # a pid reused from an earlier boot: its files are not ours
    os.makedirs(path)
    return path


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print(f"usage: python core/metrics_dir.py {'|'.join(KINDS)} LEADER_PID", file=sys.stderr)
        return 2
    root = os.environ.get("METRICS_DIR", "").strip() or default_root()
    try:
        print(prepare(argv[0], root, int(argv[1])))
    except (ValueError, OSError) as exc:
        print(f"core.metrics_dir: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
