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

import redis
import requests
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REDIS_TEST_DB = int(os.environ.get("TEST_REDIS_DB", "13"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig=signal.SIGTERM, timeout: float = 10) -> None:
        if self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout)


@dataclass
class LiveStack:
    env: dict[str, str]
    log_dir: Path
    port: int = 0
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/dashboard/"

    def spawn(self, name: str, *args: str) -> Process:
        log = self.log_dir / f"{name}.log"
        handle = log.open("ab")
        popen = subprocess.Popen(
            list(args), cwd=ROOT, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        process = Process(name, popen, log)
        self.processes[name] = process
        return process

    def start_server(self, name: str = "uvicorn") -> Process:
        self.port = self.port or free_port()
        process = self.spawn(
            name, str(BIN / "uvicorn"), "core.asgi:application", "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log"
        )
        self._wait(process, lambda: requests.get(f"{self.base_url}/healthz", timeout=1).status_code == 200)
        return process

    def start_worker(self, name: str = "worker", concurrency: int = 1) -> Process:
        process = self.spawn(
            name,
            str(BIN / "celery"), "-A", "celery_app", "worker", "--pool=prefork", f"--concurrency={concurrency}",
            "--loglevel=info", "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h",
        )
        self._wait(process, lambda: " ready." in process.output())
        return process

    def start_beat(self, name: str = "beat") -> Process:
        schedule = self.log_dir / "celerybeat-schedule"
        return self.spawn(name, str(BIN / "celery"), "-A", "celery_app", "beat", "--loglevel=info", "--schedule", str(schedule))

    def manage(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def _wait(self, process: Process, ready, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise RuntimeError(f"{process.name} exited with {process.popen.returncode}:\n{process.output()[-4000:]}")
            try:
                if ready():
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{process.name} not ready after {timeout} s:\n{process.output()[-4000:]}")

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()


def flush_test_redis() -> None:
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_TEST_DB).flushdb()


class Browserless:
    """An HTTP client logged in like a browser: session cookie plus CSRF token."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = requests.Session()

    def login(self, username: str, password: str) -> "Browserless":
        self.http.get(f"{self.base_url}/accounts/login/", timeout=5)
        response = self.http.post(
            f"{self.base_url}/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": self.http.cookies["csrftoken"]},
            headers={"Referer": f"{self.base_url}/accounts/login/"},
            allow_redirects=False,
            timeout=5,
        )
        assert response.status_code == 302, f"login failed: {response.status_code}"
        return self

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
