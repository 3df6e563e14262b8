"""A real stack for end-to-end tests: uvicorn (ASGI) and Celery worker processes on PostgreSQL + Redis."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import redis
import requests
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# One Redis database per pytest-xdist worker (gw0 -> 13, gw1 -> 14, ...): tests flush theirs.
REDIS_TEST_DB = int(os.environ.get("TEST_REDIS_DB", "13")) + int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)


class PortReservation:
    """A loopback TCP port held for as long as this object is open, with no window in which another
    process can take it.

    The socket is bound (SO_REUSEADDR) but never listens: connections to the port are refused until
    a server listens on it, and Linux lets a server that also sets SO_REUSEADDR (redis-server,
    uvicorn, listening_socket() below) bind and listen on it, including again after a restart.
    Meanwhile nothing else gets the port: plain binds fail with EADDRINUSE, and the kernel never
    picks it for a bind to port 0 or for an outgoing connection. (Binding port 0, closing, and
    letting the server bind the number later is a race that busy machines lose.)
    """

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.port: int = self._sock.getsockname()[1]

    def listening_socket(self, backlog: int = 512) -> socket.socket:
        """A socket listening on the reserved port, to hand to a server process (uvicorn --fd)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # uvicorn --fd wraps the descriptor as AF_UNIX, so asyncio never sets TCP_NODELAY on the
            # connections it accepts: each response then waits ~40 ms on Nagle and delayed ACK
            # (23 requests/s instead of 3,000 at one connection). Accepted sockets inherit it from here.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((self.host, self.port))
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "PortReservation":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def stack_env(**extra: str) -> dict[str, str]:
    """Environment for project processes: the test database, a private Redis database."""
    db = connection.settings_dict
    env = {key: value for key, value in os.environ.items() if key not in {"DJANGO_SETTINGS_MODULE"}}
    env.update(
        DATABASE_URL=f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        REDIS_URL=f"redis://127.0.0.1:6379/{REDIS_TEST_DB}",
        CHANNELS_PREFIX=f"lp-test-{uuid.uuid4().hex[:8]}",
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        DJANGO_DEBUG="false",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_COOKIES="false",
        PYTHONUNBUFFERED="1",
        PROJECTION_CATCH_UP_SECONDS="1",
        # tests/settings.py turns the pool off for the test process itself; servers use it.
        DATABASE_POOL="true",
    )
    env.update(extra)
    return env


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path
    ready: Callable[[], bool] | None = None  # a readiness check, for LiveStack.wait_ready()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig=signal.SIGTERM, timeout: float = 10) -> None:
        """Stop the whole process group (a Celery master and its pool too); SIGKILL after `timeout`.

        The group is killed even when the leader exited by itself: a pool process or any other
        child left behind must not outlive the test.
        """
        self.signal(sig)
        self.finish(time.monotonic() + timeout)

    def signal(self, sig) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def finish(self, deadline: float) -> None:
        """Wait for the leader until `deadline`, then SIGKILL whatever is left of the group."""
        try:
            self.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        finally:
            kill_group(self.popen)


def group_members(pgid: int) -> list[int]:
    """Live processes in process group `pgid` (Linux /proc)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may contain spaces and parentheses.
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def kill_group(popen: subprocess.Popen, timeout: float = 10) -> None:
    """SIGKILL a process group started with start_new_session=True (its leader and anything left of
    its children), and reap the leader. A group already gone is left alone."""
    if popen.poll() is None or group_members(popen.pid):
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        popen.wait(timeout)
    except subprocess.TimeoutExpired:
        pass


@dataclass
class LiveStack:
    """Processes of the project on the test database: uvicorn, Celery workers, beat.

    Every process runs in a process group of its own; stop() ends every group it started,
    whatever state the processes are in, and gives the server port back.
    """

    env: dict[str, str]
    log_dir: Path
    processes: dict[str, Process] = field(default_factory=dict)  # the latest of each name
    reservation: PortReservation | None = None
    spawned: list[Process] = field(default_factory=list)  # everything ever started, for stop()

    @property
    def port(self) -> int:
        return self._reserved().port

    def _reserved(self) -> PortReservation:
        if self.reservation is None:
            self.reservation = PortReservation()
        return self.reservation

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/dashboard/"

    def spawn(self, name: str, *args: str, pass_fds: tuple[int, ...] = (), ready: Callable[[], bool] | None = None) -> Process:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as handle:
            popen = subprocess.Popen(
                list(args), cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                pass_fds=pass_fds,
            )
        process = Process(name, popen, log, ready)
        self.processes[name] = process
        self.spawned.append(process)
        return process

    def start_server(self, name: str = "uvicorn", *, wait: bool = True) -> Process:
        """uvicorn on this stack's port; a restart (another name) gets the same port.

        The listening socket is bound here and inherited (--fd), so uvicorn never binds a port
        number itself; the test process keeps only the reservation, so connections are refused
        while no server runs, as they would be after a crash.
        """
        listener = self._reserved().listening_socket()
        try:
            process = self.spawn(
                name, str(BIN / "uvicorn"), "core.asgi:application", "--fd", str(listener.fileno()), "--no-access-log",
                pass_fds=(listener.fileno(),),
                ready=lambda: requests.get(f"{self.base_url}/healthz", timeout=1).status_code == 200,
            )
        finally:
            listener.close()  # uvicorn holds its own copy
        if wait:
            self.wait_ready(process)
        return process

    def start_worker(self, name: str = "worker", concurrency: int = 1, app: str = "celery_app", *, wait: bool = True) -> Process:
        log = self.log_dir / f"{name}.log"
        process = self.spawn(
            name,
            str(BIN / "celery"), "-A", app, "worker", "--pool=prefork", f"--concurrency={concurrency}",
            "--loglevel=info", "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h",
            ready=lambda: " ready." in log.read_text(errors="replace"),
        )
        if wait:
            self.wait_ready(process)
        return process

    def start_beat(self, name: str = "beat") -> Process:
        schedule = self.log_dir / "celerybeat-schedule"
        return self.spawn(name, str(BIN / "celery"), "-A", "celery_app", "beat", "--loglevel=info", "--schedule", str(schedule))

    def manage(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def wait_ready(self, *processes: Process, timeout: float = 30) -> None:
        """Wait until every one of `processes` is ready (started with wait=False, they boot side by side)."""
        deadline = time.monotonic() + timeout
        waiting = [p for p in processes if p.ready is not None]
        while waiting:
            for process in list(waiting):
                if process.popen.poll() is not None:
                    raise RuntimeError(f"{process.name} exited with {process.popen.returncode}:\n{process.output()[-4000:]}")
                try:
                    if process.ready():
                        waiting.remove(process)
                except (requests.RequestException, OSError):
                    pass
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "; ".join(f"{p.name} not ready after {timeout} s:\n{p.output()[-4000:]}" for p in waiting)
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM every process group at once, SIGKILL what is left after `timeout`, give the port back."""
        try:
            for process in reversed(self.spawned):
                process.signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for process in reversed(self.spawned):
                process.finish(deadline)
        finally:
            if self.reservation is not None:
                self.reservation.close()


def flush_test_redis() -> None:
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_TEST_DB).flushdb()


class Browserless:
    """An HTTP client logged in like a browser: session cookie plus CSRF token."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = requests.Session()

    def login(self, username: str, password: str) -> "Browserless":
        self.http.get(f"{self.base_url}/accounts/login/", timeout=30)
        response = self.http.post(
            f"{self.base_url}/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": self.http.cookies["csrftoken"]},
            headers={"Referer": f"{self.base_url}/accounts/login/"},
            allow_redirects=False,
            timeout=30,  # a deliberately slow password hash, maybe several at once on a busy machine
        )
        assert response.status_code == 302, f"login failed: {response.status_code}"
        return self

    def clone(self) -> "Browserless":
        """Another client on the same logged-in session, with connections of its own (one per thread)."""
        other = Browserless(self.base_url)
        other.http.cookies.update(self.http.cookies)
        return other

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.http.cookies)

    def post(self, path: str, body: dict) -> requests.Response:
        return self.http.post(
            f"{self.base_url}{path}", json=body, headers={"X-CSRFToken": self.http.cookies["csrftoken"]}, timeout=15
        )

    def get(self, path: str, **params) -> requests.Response:
        return self.http.get(f"{self.base_url}{path}", params=params, timeout=15)


def create_live_user(username: str, password: str, *, superuser: bool = True, staff: bool = True):
    """A user that the stack's processes can log in (their settings use PBKDF2)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    user = get_user_model().objects.create(
        username=username, is_staff=staff or superuser, is_superuser=superuser, email=f"{username}@example.com"
    )
    user.password = make_password(password, hasher="pbkdf2_sha256")
    user.save(update_fields=["password"])
    return user
