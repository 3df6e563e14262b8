"""Slow clients and floods against the Procfile's `web:` command, run for real (uvicorn + core/http.py).

Each test starts the production command line itself (on SQLite, so no other service is needed) on a
reserved loopback port, with short timeouts, and talks to it over raw sockets.
"""
import os
import signal
import socket
import time
from pathlib import Path

import pytest
import requests

from tests.stack import LiveStack, PortReservation

ROOT = Path(__file__).resolve().parents[2]


def web_command() -> str:
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web: ")]
    assert len(lines) == 1
    return lines[0][len("web: "):]


@pytest.fixture
def start_web(tmp_path):
    """Start the Procfile's web: line with extra environment; every process is stopped afterwards."""
    stacks = []

    def start(command: str | None = None, **extra: str) -> LiveStack:
        env = {key: value for key, value in os.environ.items() if key not in {"DJANGO_SETTINGS_MODULE", "REDIS_URL", "CELERY_BROKER_URL"}}
        stack = LiveStack(env=env, log_dir=tmp_path)
        stacks.append(stack)
        env.update(
            dict(
            PATH=f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
            DATABASE_URL=f"sqlite:///{tmp_path / 'web.sqlite3'}",
            DJANGO_SECRET_KEY="slow-client-test-key-" + "k" * 40,
            DJANGO_DEBUG="false",
            DJANGO_ENV_FILE="/dev/null",
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
            HOST="127.0.0.1",
            PORT=str(stack.port),
            WEB_CONCURRENCY="1",
            PYTHONUNBUFFERED="1",
            ),
            **extra,
        )
        process = stack.spawn(
            "web", "sh", "-c", command or web_command(),
            ready=lambda: requests.get(f"{stack.base_url}/healthz", timeout=1).status_code == 200,
        )
        stack.wait_ready(process)
        return stack

    yield start
    for stack in stacks:
        stack.stop()


def connect(stack: LiveStack) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", stack.port), timeout=30)
    return sock


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    sock.settimeout(limit)
    received = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return received, time.monotonic() - started
        received += chunk


def test_it_disconnects_a_client_that_sends_half_a_request_line_while_healthz_keeps_answering(start_web):
    stack = start_web(HTTP_HEADER_TIMEOUT_SECONDS="2")
    slow = [connect(stack) for _ in range(20)]
    for sock in slow:
        sock.sendall(b"GET /healthz HT")
    started = time.monotonic()
    # The server keeps serving others meanwhile.
    for _ in range(5):
        assert requests.get(f"{stack.base_url}/healthz", timeout=5).status_code == 200
    for sock in slow:
        received, _ = read_until_closed(sock, limit=10)
        assert received.startswith(b"HTTP/1.1 408 ")
        sock.close()
    elapsed = time.monotonic() - started
    assert 1.5 < elapsed < 6, elapsed
    assert requests.get(f"{stack.base_url}/healthz", timeout=5).status_code == 200
    # --no-access-log holds although Django's LOGGING gives uvicorn.access a handler.
    assert "GET /healthz" not in stack.processes["web"].output()


def test_it_disconnects_a_client_that_sends_nothing_or_trickles_its_headers(start_web):
    stack = start_web(HTTP_HEADER_TIMEOUT_SECONDS="2")
    silent = connect(stack)
    trickle = connect(stack)
    started = time.monotonic()
    trickle.settimeout(0.5)
    closed_at = None
    for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 100:
        try:
            trickle.sendall(bytes([byte]))
            if trickle.recv(4096) == b"":
                closed_at = time.monotonic()
                break
        except socket.timeout:
            continue  # nothing from the server yet: go on trickling
        except (BrokenPipeError, ConnectionResetError):
            closed_at = time.monotonic()
            break
    else:
        pytest.fail("a client trickling one byte every half second was never disconnected")
    assert closed_at - started < 6
    received, _ = read_until_closed(silent, limit=10)
    assert received.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 8


def test_it_disconnects_a_client_whose_body_stalls(start_web):
    stack = start_web(HTTP_BODY_TIMEOUT_SECONDS="2")
    sock = connect(stack)
    sock.sendall(
        b"POST /api/auth/token/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{\"username\": \"a"
    )
    received, elapsed = read_until_closed(sock, limit=10)
    assert received.startswith(b"HTTP/1.1 408 ") and 1.5 < elapsed < 6, (received[:200], elapsed)


def test_bodies_still_arriving_hold_no_request_thread(start_web):
    # One thread for Django's WSGI handler: a body is read on the event loop, so clients that stall
    # mid-body cannot take the thread away from everyone else.
    stack = start_web(WEB_THREADS="1", HTTP_BODY_TIMEOUT_SECONDS="20")
    stalled = [connect(stack) for _ in range(5)]
    for sock in stalled:
        sock.sendall(
            b"POST /api/auth/token/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{\"username\": \"a"
        )
    time.sleep(0.3)  # the server has read the heads and started waiting for the bodies
    started = time.monotonic()
    for _ in range(3):
        assert requests.get(f"{stack.base_url}/healthz", timeout=5).status_code == 200
    assert time.monotonic() - started < 3
    for sock in stalled:
        sock.close()


def test_it_answers_503_beyond_the_connection_limit_instead_of_holding_more(start_web):
    stack = start_web(WEB_LIMIT_CONCURRENCY="5", HTTP_HEADER_TIMEOUT_SECONDS="3")
    idle = [connect(stack) for _ in range(8)]
    time.sleep(0.3)  # the server has accepted them
    assert requests.get(f"{stack.base_url}/healthz", timeout=5).status_code == 503
    for sock in idle:
        read_until_closed(sock, limit=10)  # the head timeout frees them
        sock.close()
    assert requests.get(f"{stack.base_url}/healthz", timeout=5).status_code == 200


GRACEFUL_BOUND = "--timeout-graceful-shutdown 10"


def test_it_stops_within_the_graceful_bound_after_sigterm_with_a_request_still_sending_its_body(start_web):
    # The Procfile's line with its 10 s bound cut to 2 s: the same uvicorn option ends the request, and the
    # test waits out 2 s instead of 10 (the bound itself is the Procfile's, checked here as text).
    assert web_command().count(GRACEFUL_BOUND) == 1
    bound = 2
    command = web_command().replace(GRACEFUL_BOUND, f"--timeout-graceful-shutdown {bound}")
    stack = start_web(command, HTTP_BODY_TIMEOUT_SECONDS="300")  # only the graceful-shutdown bound can end this one
    sock = connect(stack)
    sock.sendall(b"POST /api/auth/token/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
    time.sleep(0.5)  # the request is in the application, waiting for its body
    process = stack.processes["web"]
    started = time.monotonic()
    os.kill(process.popen.pid, signal.SIGTERM)  # the uvicorn process itself (sh exec'd it), as a supervisor would
    try:
        process.popen.wait(timeout=25)
    except Exception:
        pytest.fail(f"uvicorn still running 25 s after SIGTERM:\n{process.output()[-3000:]}")
    elapsed = time.monotonic() - started
    assert elapsed < bound + 3, elapsed  # the graceful-shutdown bound, plus a little
    sock.close()


def test_the_production_command_refuses_to_start_without_a_secret_key(tmp_path):
    import subprocess

    env = {key: value for key, value in os.environ.items() if key not in {"DJANGO_SETTINGS_MODULE", "DJANGO_SECRET_KEY", "REDIS_URL"}}
    with PortReservation() as reservation:
        env.update(
            PATH=f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin", DJANGO_ENV_FILE="/dev/null", DJANGO_DEBUG="false",
            DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", HOST="127.0.0.1", PORT=str(reservation.port), WEB_CONCURRENCY="1",
        )
        result = subprocess.run(["sh", "-c", web_command()], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY must be set" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_it_stops_within_the_graceful_bound_after_sigterm_with_an_idle_websocket_that_never_answers_a_close(start_web):
    from django.db import connection

    from tests.services import require
    from tests.stack import Browserless, create_live_user

    require("PostgreSQL", connection.vendor == "postgresql")
    db = connection.settings_dict
    create_live_user("shutdown-admin", "shutdown-password-123")
    stack = start_web(DJANGO_SECURE_COOKIES="false", DATABASE_URL=f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}")
    cookie = Browserless(stack.base_url).login("shutdown-admin", "shutdown-password-123").cookie_header
    sock = connect(stack)
    sock.sendall(
        f"GET /ws/dashboard/ HTTP/1.1\r\nHost: 127.0.0.1:{stack.port}\r\nOrigin: {stack.base_url}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nCookie: {cookie}\r\n\r\n".encode()
    )
    sock.settimeout(10)
    assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")
    time.sleep(0.5)  # open; from now on the client reads nothing and never answers a close frame
    process = stack.processes["web"]
    started = time.monotonic()
    os.kill(process.popen.pid, signal.SIGTERM)
    try:
        process.popen.wait(timeout=25)
    except Exception:
        pytest.fail(f"uvicorn still running 25 s after SIGTERM:\n{process.output()[-3000:]}")
    assert time.monotonic() - started < 13
    sock.close()
