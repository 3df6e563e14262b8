"""The embedded mode (`make run`: SQLite, projections in process) runs the review queue's own tests, on SQLite."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(60)
def test_the_review_queue_behaves_on_sqlite_as_on_postgresql(tmp_path):
    # Its raw inserts once stored SQLite UUIDs with dashes, which the ORM's lookups never found:
    # decided transactions stayed pending forever on `make run`. The same tests, on SQLite this time
    # (those that need PostgreSQL itself deselected: they do not apply, they are not skipped).
    database = f"sqlite:///{tmp_path / 'embedded.sqlite3'}"
    # DATABASE_URL too: this process's test settings set it (to PostgreSQL), and the child would inherit that.
    env = {**os.environ, "TEST_DATABASE_URL": database, "DATABASE_URL": database, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not needs_postgres",
         "tests/analytics/test_review_queue.py", "tests/analytics/test_review_queue_api.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=55,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout and "deselected" in result.stdout
