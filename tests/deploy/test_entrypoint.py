"""The image's entrypoint (scripts/procfile.sh) starting the real web line: the server becomes the entrypoint's process, so SIGTERM reaches it."""
import signal
from pathlib import Path

import pytest

from scripts.stack import PortReservation, Stack, group_members, http_ok, stack_env
from tests.services import redis_available, require
from tests.stack import REDIS_TEST_DB, ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.no_deadline, pytest.mark.needs_redis]


def test_it_execs_the_web_line_in_its_own_process_which_stops_cleanly_on_sigterm(tmp_path):
    require("Redis", redis_available())
    env = stack_env(
        database_url=f"sqlite:///{tmp_path / 'web.sqlite3'}", redis_url=f"redis://127.0.0.1:6379/{REDIS_TEST_DB}",
        secret="entrypoint-test-" + "k" * 40, DJANGO_ENV_FILE="/dev/null", WEB_CONCURRENCY="2", LOG_LEVEL="WARNING",
    )
    stack = Stack(env=env, log_dir=tmp_path)
    with PortReservation() as port:
        listener = port.listening_socket()
        try:
            # As a container runs it: the entrypoint and the process type, nothing else.
            web = stack.spawn(
                "web", str(ROOT / "scripts" / "procfile.sh"), "web", pass_fds=(listener.fileno(),),
                env={**env, "LISTEN_FD": str(listener.fileno())}, ready=lambda: http_ok(f"http://127.0.0.1:{port.port}/healthz"),
            )
        finally:
            listener.close()
        try:
            stack.wait_ready(web, timeout=60)
            # procfile.sh exec'd `sh -c`, which exec'd uvicorn: PID 1 of a container would be the server itself.
            cmdline = Path(f"/proc/{web.pid}/cmdline").read_bytes().split(b"\0")
            assert any(part.endswith(b"uvicorn") for part in cmdline[:2]), cmdline
            assert len(group_members(web.pid)) >= 3  # the master and its two worker processes
            web.popen.send_signal(signal.SIGTERM)  # what `docker stop` and the kubelet send
            assert web.popen.wait(timeout=30) == 0, web.output()[-3000:]
        finally:
            stack.stop()
    assert group_members(web.pid) == []
