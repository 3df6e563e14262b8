"""Read-your-writes on a real server: waiting readers hold no pooled connection and no thread, so writers are never starved."""
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.db import connection

from tests.services import redis_available, require
from tests.stack import Browserless, LiveStack, create_live_user, flush_test_redis, stack_env

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
READERS = 100


def server_threads(stack) -> int:
    status = Path(f"/proc/{stack.processes['uvicorn'].popen.pid}/status").read_text()
    return int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))


@pytest.fixture
def small_pool_server(tmp_path):
    """uvicorn with two pooled connections and no worker yet: nothing gets projected until the test says so."""
    require("PostgreSQL", connection.vendor == "postgresql")
    require("Redis", redis_available())
    flush_test_redis()
    # One web process: the thread count below is that process's (with several, they live in the children).
    stack = LiveStack(env=stack_env(DATABASE_POOL_SIZE="2", WEB_CONCURRENCY="1"), log_dir=tmp_path)
    try:
        stack.start_server()
        yield stack
    finally:
        stack.stop()
        flush_test_redis()


def test_a_hundred_readers_waiting_on_min_position_leave_writers_the_pool_and_park_no_threads(small_pool_server):
    stack = small_pool_server
    create_live_user("ryw-admin", "ryw-password-123")
    browser = Browserless(stack.base_url).login("ryw-admin", "ryw-password-123")
    # Another user submits: nobody approves their own submission.
    create_live_user("ryw-clerk", "ryw-password-123")
    clerk = Browserless(stack.base_url).login("ryw-clerk", "ryw-password-123")
    created = clerk.post("/api/transactions/", {"amount": "10.00", "currency": "EUR"})
    approval = browser.post(f"/api/transactions/{created.json()['id']}/approve/", {})
    target = approval.json()["position"]

    def read_my_write(_):
        with requests.Session() as reader:  # one client per reader, logged in as the same admin
            reader.cookies.update(browser.http.cookies)
            return reader.get(f"{stack.base_url}/api/analytics/weekly-income/", params={"min_position": target}, timeout=30)

    with ThreadPoolExecutor(READERS) as pool:
        readers = [pool.submit(read_my_write, i) for i in range(READERS)]
        # The readers wait for a projection that cannot happen yet (no worker): with the old
        # polling wait each held one of the two pooled connections, and these writes got 500.
        for _ in range(3):
            more = browser.post("/api/transactions/", {"amount": "1.00", "currency": "EUR"})
            assert more.status_code == 201, more.text
        assert not any(reader.done() for reader in readers)
        # Nor a thread each: 8 threads in all here, 108 when each request kept its executor thread.
        assert server_threads(stack) < READERS // 4
        stack.start_worker()
        answers = [reader.result() for reader in readers]

    assert [a.status_code for a in answers] == [200] * READERS
    assert all(a.json()["as_of"] >= target for a in answers)
    assert "couldn't get a connection" not in stack.processes["uvicorn"].output()
