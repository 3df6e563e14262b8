"""The harness the end-to-end tests stand on: reserved ports and process groups (tests/stack.py)."""
import errno
import socket
import subprocess
import time

import pytest

from tests.stack import PortReservation, Process, group_members, kill_group


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
