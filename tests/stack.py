"""The real stack for end-to-end tests: scripts/stack.py (the Procfile's web, worker and beat lines) on the
test database and this test worker's own Redis database."""
from __future__ import annotations

import os
import uuid

import redis
from django.conf import settings
from django.db import connection

from scripts.stack import (  # noqa: F401 - the tests' names for the stack module's parts
    BIN,
    ROOT,
    Browserless,
    PortReservation,
    Process,
    Stack,
    create_live_user,
    group_members,
    kill_group,
)
from scripts.stack import stack_env as production_env

# One Redis database per pytest-xdist worker (gw0 -> 13, gw1 -> 14, ...): tests flush theirs.
REDIS_TEST_DB = int(os.environ.get("TEST_REDIS_DB", "13")) + int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
# Web processes per live server. Two, as on the 2-core machines this runs on (the Procfile's default is
# one per core): a message must reach the sockets of every process, and a test with one process would
# never see it miss one. Pinned rather than left to nproc, so a bigger CI machine runs the same stack.
WEB_CONCURRENCY = os.environ.get("TEST_WEB_CONCURRENCY", "2")


def stack_env(**extra: str) -> dict[str, str]:
    """Environment for project processes: the test database, a private Redis database and channel prefix."""
    db = connection.settings_dict
    return production_env(
        database_url=f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        redis_url=f"redis://127.0.0.1:6379/{REDIS_TEST_DB}",
        secret=settings.SECRET_KEY,
        prefix=f"lp-test-{uuid.uuid4().hex[:8]}",
        **{
            "PROJECTION_CATCH_UP_SECONDS": "1",
            # tests/settings.py turns the pool off for the test process itself; servers use it.
            "DATABASE_POOL": "true",
            "WEB_CONCURRENCY": WEB_CONCURRENCY,
            **extra,
        },
    )


class LiveStack(Stack):
    """scripts.stack.Stack with the names the tests use: the web server is "uvicorn", workers run one pool
    process, and `app` names a module that wraps the project's Celery app (imported with --include)."""

    def start_server(self, name: str = "uvicorn", **kwargs) -> Process:
        return super().start_server(name, **kwargs)

    def start_worker(self, name: str = "worker", concurrency: int | None = 1, app: str = "celery_app", *, wait: bool = True) -> Process:
        return super().start_worker(name, concurrency, include=None if app == "celery_app" else app, wait=wait)

    def stop(self, timeout: float = 10) -> None:
        """Stack.stop(), with every process group (web, workers, beat) killed outright first.

        The test is over: nothing a process could still finish is looked at, its broker is flushed or
        gone, and PostgreSQL rolls back whatever a killed connection had open. A warm shutdown of a
        prefork worker takes ~2.5 s on a busy 2-core machine, and uvicorn's graceful one ~0.4 s (each
        web process closes its sockets and its channel-layer subscription), once per stack per test.
        Tests that check a shutdown (tests/core/test_slow_clients.py, tests/deploy/test_entrypoint.py,
        tests/e2e/test_stack.py) signal the process themselves."""
        for process in self.spawned:
            kill_group(process.popen)
        super().stop(timeout)


def flush_test_redis() -> None:
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_TEST_DB).flushdb()
