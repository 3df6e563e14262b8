"""How the real stack is started: the Procfile's web, worker and beat lines as process groups on a reserved port.

The one place that knows how to run Ledgerpulse's processes for the end-to-end tests (tests/stack.py),
the chaos soak (scripts/chaos.py) and the benchmarks (bench/harness.py). It needs no Django settings:
callers hand it a database URL, a Redis URL, a secret and a log directory (stack_env), and every
process is the Procfile's own command run by `sh -c`, as a process manager would run it:

- `web`: with LISTEN_FD set to a listening socket bound here and inherited, so the server never binds
  a port number itself (no race for a free port, and a restart gets the same port);
- `worker` and `beat`: with extra Celery arguments appended ("$@": a node name, a pool size, a
  schedule file in the log directory), so the Procfile stays the source of the commands.

Each process runs in a process group of its own; Stack.stop() ends every group it started, whatever
state the processes are in (a Celery master's pool and uvicorn's worker processes included).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
BIN = Path(sys.executable).parent  # the virtualenv's bin: where `uvicorn` and `celery` come from

# Variables of the caller's environment that must never reach the stack's processes: they would
# point a process at other settings, another broker or another socket than the ones given here.
NOT_INHERITED = frozenset({
    "DJANGO_SETTINGS_MODULE", "CELERY_BROKER_URL", "LISTEN_FD", "PORT", "HOST", "PYTEST_CURRENT_TEST",
    "METRICS_DIR", "PROMETHEUS_MULTIPROC_DIR",
})


def procfile(path: Path = PROCFILE) -> dict[str, str]:
    """The Procfile's process types and their commands (`name: command` lines; # starts a comment line)."""
    commands = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, command = line.partition(":")
        commands[name.strip()] = command.strip()
    return commands


def stack_env(
    *, database_url: str, redis_url: str, secret: str, prefix: str | None = None, base: dict[str, str] | None = None, **extra: str
) -> dict[str, str]:
    """The environment of the stack's processes: production settings on the given database and Redis.

    `prefix` namespaces the channel layer (a fresh one by default, so two stacks on one Redis database
    never hear each other); `extra` adds or overrides variables (WEB_CONCURRENCY, LOG_LEVEL, ...).
    """
    env = {key: value for key, value in (os.environ if base is None else base).items() if key not in NOT_INHERITED}
    env.update(
        DJANGO_SETTINGS_MODULE="core.settings",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        CHANNELS_PREFIX=prefix or f"lp-stack-{uuid.uuid4().hex[:8]}",
        DJANGO_SECRET_KEY=secret,
        DJANGO_DEBUG="false",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_COOKIES="false",  # plain HTTP on loopback
        PYTHONUNBUFFERED="1",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', os.defpath)}",
    )
    env.update(extra)
    return env


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

    def listening_socket(self, backlog: int = 1024) -> socket.socket:
        """A socket listening on the reserved port, to hand to a server process (the web line's LISTEN_FD)."""
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


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path
    ready: Callable[[], bool] | None = None  # a readiness check, for Stack.wait_ready()

    @property
    def pid(self) -> int:
        """The process the Procfile line exec'd into (`sh -c "exec ..."`): the group's leader."""
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig=signal.SIGTERM, timeout: float = 10) -> None:
        """Stop the whole process group (a Celery master and its pool too); SIGKILL after `timeout`.

        The group is killed even when the leader exited by itself: a pool process or any other
        child left behind must not outlive the caller.
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
    its children), reap the leader, and wait until no member is left. A group already gone is left alone."""
    if popen.poll() is None or group_members(popen.pid):
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    try:
        popen.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    # SIGKILL is delivered asynchronously: a member (say multiprocessing's resource tracker, which
    # outlives uvicorn's master for a moment) can still be running right after killpg returns.
    while group_members(popen.pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def http_ok(url: str, timeout: float = 1) -> bool:
    """True when GET `url` answers 200 (a readiness probe; any error is "not yet")."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class Stack:
    """The project's processes on one database and Redis: web, Celery workers, beat.

    Every process runs in a process group of its own; stop() (or leaving the `with` block) ends every
    group it started, whatever state the processes are in, and gives the server port back.
    """

    env: dict[str, str]
    log_dir: Path
    processes: dict[str, Process] = field(default_factory=dict)  # the latest of each name
    reservation: PortReservation | None = None
    spawned: list[Process] = field(default_factory=list)  # everything ever started, for stop()
    commands: dict[str, str] = field(default_factory=procfile)

    def __post_init__(self) -> None:
        self.log_dir = Path(self.log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The stack's metrics files (core/metrics_dir.py) live with its logs: two stacks on one machine
        # never sum, or empty, each other's.
        self.env.setdefault("METRICS_DIR", str(self.log_dir.resolve() / "metrics"))

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

    def spawn(
        self, name: str, *args: str, pass_fds: tuple[int, ...] = (), ready: Callable[[], bool] | None = None,
        env: dict[str, str] | None = None,
    ) -> Process:
        """Start `args` in a process group of its own, output to <log_dir>/<name>.log."""
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as handle:
            popen = subprocess.Popen(
                list(args), cwd=ROOT, env=self.env if env is None else env, stdout=handle, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, pass_fds=pass_fds,
            )
        process = Process(name, popen, log, ready)
        self.processes[name] = process
        self.spawned.append(process)
        return process

    def procfile_line(self, kind: str, name: str, *extra_args: str, pass_fds: tuple[int, ...] = (),
                      ready: Callable[[], bool] | None = None, env: dict[str, str] | None = None) -> Process:
        """The Procfile's `kind:` command under `sh -c`, with `extra_args` appended to it ("$@")."""
        command = self.commands[kind] + (' "$@"' if extra_args else "")
        return self.spawn(name, "sh", "-c", command, kind, *extra_args, pass_fds=pass_fds, ready=ready, env=env)

    def start_server(self, name: str = "web", *, concurrency: int | None = None, wait: bool = True, **env: str) -> Process:
        """The Procfile's `web:` line on this stack's port; a restart (same or another name) gets the same port.

        The listening socket is bound here and inherited (LISTEN_FD), so the server never binds a
        port number itself; this process keeps only the reservation, so connections are refused
        while no server runs, as they would be after a crash. `concurrency` sets WEB_CONCURRENCY
        (default: the environment's, else the Procfile's own default); `env` adds variables for
        this process only.
        """
        listener = self._reserved().listening_socket()
        try:
            process_env = dict(self.env, LISTEN_FD=str(listener.fileno()), **env)
            if concurrency is not None:
                process_env["WEB_CONCURRENCY"] = str(concurrency)
            process = self.procfile_line(
                "web", name, pass_fds=(listener.fileno(),), env=process_env,
                ready=lambda: http_ok(f"{self.base_url}/healthz"),
            )
        finally:
            listener.close()  # the server holds its own copy
        if wait:
            self.wait_ready(process)
        return process

    def start_worker(
        self, name: str = "worker", concurrency: int | None = 1, *, include: str | None = None, wait: bool = True,
        extra_args: tuple[str, ...] = (),
    ) -> Process:
        """The Procfile's `worker:` line with a unique node name, `concurrency` prefork processes (None: the
        Procfile's default, one per core) and no heartbeats; `include` imports one more module in the worker
        (a test app's signal handlers, say). Ready once Celery prints " ready.".
        """
        log = self.log_dir / f"{name}.log"
        start = log.stat().st_size if log.exists() else 0
        args = ["--pool=prefork", "--without-heartbeat", "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h"]
        if concurrency is not None:
            args.append(f"--concurrency={concurrency}")
        if include:
            args.append(f"--include={include}")
        process = self.procfile_line(
            "worker", name, *args, *extra_args,
            ready=lambda: " ready." in log.read_bytes()[start:].decode(errors="replace"),
        )
        if wait:
            self.wait_ready(process)
        return process

    def start_beat(self, name: str = "beat") -> Process:
        """The Procfile's `beat:` line with its schedule file in the log directory (never shared between stacks)."""
        return self.procfile_line("beat", name, "--schedule", str(self.log_dir / f"{name}-schedule"))

    def manage(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """`manage.py <args>` with the stack's environment."""
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
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
                except OSError:
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
                self.reservation = None

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class Browserless:
    """An HTTP client logged in like a browser: session cookie plus CSRF token."""

    def __init__(self, base_url: str):
        import requests

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

    @property
    def csrf_token(self) -> str:
        return self.http.cookies["csrftoken"]

    def post(self, path: str, body: dict):
        return self.http.post(f"{self.base_url}{path}", json=body, headers={"X-CSRFToken": self.csrf_token}, timeout=15)

    def get(self, path: str, **params):
        return self.http.get(f"{self.base_url}{path}", params=params, timeout=15)


_live_password_hashes: dict[str, str] = {}


def create_live_user(username: str, password: str, *, superuser: bool = True, staff: bool = True):
    """A user that the stack's processes can log in (their settings use PBKDF2). Needs Django set up.

    A password is hashed once per process and the encoded hash reused for every user that has it: the
    hash takes ~1 s of CPU (the deliberate cost of PBKDF2's iterations), and logging in still pays it."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    user = get_user_model().objects.create(
        username=username, is_staff=staff or superuser, is_superuser=superuser, email=f"{username}@example.com"
    )
    if password not in _live_password_hashes:
        _live_password_hashes[password] = make_password(password, hasher="pbkdf2_sha256")
    user.password = _live_password_hashes[password]
    user.save(update_fields=["password"])
    return user
