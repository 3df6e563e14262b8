"""The launcher the end-to-end tests, the chaos soak and the benchmarks stand on (scripts/stack.py): reserved
ports, process groups, and the Procfile's lines as the commands."""
import errno
import socket
import subprocess
import sys
import time

import pytest

from scripts.stack import PortReservation, Process, Stack, group_members, kill_group, procfile, stack_env
from tests.services import redis_available, require
from tests.stack import REDIS_TEST_DB


def connect_error(port: int) -> int | None:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError as exc:
        return exc.errno
    return None


def test_it_keeps_a_reserved_port_from_every_other_bind_until_it_is_closed():
    with PortReservation() as reservation:
        plain = socket.socket()
        with pytest.raises(OSError) as refused:
            plain.bind(("127.0.0.1", reservation.port))
        plain.close()
        assert refused.value.errno == errno.EADDRINUSE
        # What the old free_port() did, thousands of times over: the kernel never hands it out.
        handed_out = set()
        for _ in range(5000):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                handed_out.add(probe.getsockname()[1])
        assert reservation.port not in handed_out
    with socket.socket() as after:
        after.bind(("127.0.0.1", reservation.port))  # given back


def test_it_refuses_connections_until_a_server_listens_and_again_once_it_has_stopped():
    with PortReservation() as reservation:
        assert connect_error(reservation.port) == errno.ECONNREFUSED
        for _ in range(2):  # a restart gets the same port
            listener = reservation.listening_socket()
            assert connect_error(reservation.port) is None
            listener.close()
            assert connect_error(reservation.port) == errno.ECONNREFUSED


def test_it_stops_a_whole_process_group_even_when_its_leader_has_already_exited(tmp_path):
    log = tmp_path / "group.log"
    # The leader starts a child in its group and exits at once, leaving the child behind.
    popen = subprocess.Popen(["bash", "-c", "sleep 300 & echo $!"], stdout=log.open("w"), start_new_session=True)
    process = Process("group", popen, log)
    popen.wait(10)
    deadline = time.monotonic() + 10
    while not log.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.01)
    child = int(log.read_text())
    try:
        assert group_members(popen.pid) == [child]
        process.stop(timeout=1)
        assert group_members(popen.pid) == []
    finally:
        kill_group(popen)


def test_it_reads_the_commands_from_the_procfile_and_appends_extra_arguments_to_the_worker_and_beat_lines(tmp_path):
    # A stand-in Procfile whose lines only say how they were called: no Django to boot.
    echo = f"exec {sys.executable} -c 'import sys, time; print(\" ready.\", sys.argv[1:], flush=True); time.sleep(60)'"
    (tmp_path / "Procfile").write_text(f"# comment: not a process\nworker: {echo} worker\nbeat: {echo} beat\n")
    stack = Stack(env=stack_env(database_url="sqlite:///unused", redis_url="redis://127.0.0.1:6379/0", secret="s" * 50),
                  log_dir=tmp_path / "logs", commands=procfile(tmp_path / "Procfile"))
    try:
        assert set(stack.commands) == {"worker", "beat"}
        worker = stack.start_worker("w1", concurrency=3, include="tests.e2e.small_batches")
        beat = stack.start_beat()
        stack.wait_ready(Process("beat-ready", beat.popen, beat.log, ready=lambda: "ready." in beat.output()))
        said = worker.output()
        assert "'worker', '--pool=prefork', '--without-heartbeat', '-n'" in said and "'w1-" in said
        assert "'--concurrency=3', '--include=tests.e2e.small_batches'" in said
        assert f"'beat', '--schedule', '{tmp_path / 'logs' / 'beat-schedule'}'" in beat.output()
    finally:
        stack.stop(timeout=5)
    assert group_members(worker.pid) == [] and group_members(beat.pid) == []


def test_it_serves_the_procfile_web_line_on_an_inherited_socket_and_a_restart_gets_the_same_port(tmp_path):
    require("Redis", redis_available())
    env = stack_env(
        database_url=f"sqlite:///{tmp_path / 'web.sqlite3'}", redis_url=f"redis://127.0.0.1:6379/{REDIS_TEST_DB}",
        secret="stack-test-secret-" + "k" * 40, DJANGO_ENV_FILE="/dev/null", LOG_LEVEL="WARNING",
    )
    stack = Stack(env=env, log_dir=tmp_path)
    assert stack.commands == procfile()  # read from the Procfile when the stack is made
    try:
        port = stack.port
        first = stack.start_server(concurrency=2)
        assert first.popen.args[:2] == ["sh", "-c"] and first.popen.args[2] == stack.commands["web"]
        # The Procfile's web line with two worker processes: more than one process in the group.
        assert len(group_members(first.pid)) >= 3
        first.stop()
        assert group_members(first.pid) == []
        assert connect_error(port) == errno.ECONNREFUSED  # nothing listens, nothing else took the port
        second = stack.start_server("web-again", concurrency=1)
        assert stack.port == port and connect_error(port) is None
    finally:
        stack.stop()
    assert group_members(second.pid) == [] and connect_error(port) == errno.ECONNREFUSED


def test_it_waits_for_a_worker_that_logs_only_warnings_to_say_it_is_ready(tmp_path):
    # LOG_LEVEL=WARNING (what the benchmarks run with) must not hide the line the stack waits for.
    require("Redis", redis_available())
    env = stack_env(
        database_url=f"sqlite:///{tmp_path / 'worker.sqlite3'}", redis_url=f"redis://127.0.0.1:6379/{REDIS_TEST_DB}",
        secret="stack-test-secret-" + "k" * 40, DJANGO_ENV_FILE="/dev/null", LOG_LEVEL="WARNING",
    )
    stack = Stack(env=env, log_dir=tmp_path)
    try:
        worker = stack.start_worker(concurrency=1)
        assert b" ready." in (tmp_path / "worker.log").read_bytes()
    finally:
        stack.stop()
    assert group_members(worker.pid) == []
