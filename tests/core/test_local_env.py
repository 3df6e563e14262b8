"""The secret key: never a published default; `make run` writes a random one per checkout into .env.local,
which every process of the checkout (server, Celery, manage.py) reads without overriding the environment."""
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.stack import LiveStack

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED_KEY = "dev-only-insecure-key-do-not-use-in-production"


def clean_env(**extra: str) -> dict[str, str]:
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "core.settings", "DJANGO_ENV_FILE": "/dev/null"}
    env.update(extra)
    return env


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text.strip() else ""


def private_file(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("debug", ["true", "false"])
def test_it_refuses_to_start_without_a_secret_key_in_every_mode(debug):
    result = run_python("import django; django.setup()", clean_env(DJANGO_DEBUG=debug))
    assert result.returncode != 0
    assert last_line(result.stderr).startswith("django.core.exceptions.ImproperlyConfigured: DJANGO_SECRET_KEY must be set")


def test_it_refuses_the_key_that_was_published_in_the_repository():
    result = run_python("import django; django.setup()", clean_env(DJANGO_DEBUG="true", DJANGO_SECRET_KEY=PUBLISHED_KEY))
    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in last_line(result.stderr)


def test_it_reads_the_local_env_file_without_overriding_the_environment(tmp_path):
    env_file = private_file(
        tmp_path / ".env.local",
        "# a comment\n\nDJANGO_SECRET_KEY=key-from-the-file-0123456789\nexport LOG_LEVEL='warning'\nANALYTICS_WEEK_START=\"sunday\"\n",
    )
    code = "import django; django.setup(); from django.conf import settings as s; print(s.SECRET_KEY, s.LOGGING['root']['level'], s.ANALYTICS_WEEK_START)"
    result = run_python(code, clean_env(DJANGO_ENV_FILE=str(env_file), LOG_LEVEL="ERROR"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["key-from-the-file-0123456789", "ERROR", "sunday"]
    result = run_python(code, clean_env(DJANGO_ENV_FILE=str(env_file), DJANGO_SECRET_KEY="key-from-the-environment-0123"))
    assert result.stdout.split()[0] == "key-from-the-environment-0123"


def test_manage_py_and_celery_read_the_same_file(tmp_path):
    env_file = private_file(tmp_path / ".env.local", "DJANGO_SECRET_KEY=shared-by-every-process-0123456789\n")
    env = clean_env(DJANGO_ENV_FILE=str(env_file), DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    env.pop("DJANGO_SETTINGS_MODULE")  # manage.py and celery_app.py choose it themselves
    manage = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert manage.stdout.strip().splitlines()[-1] == "shared-by-every-process-0123456789", manage.stderr
    celery = run_python("from celery_app import app; print(app.conf.broker_url, app.loader.import_default_modules() is not None); "
                        "from django.conf import settings; print(settings.SECRET_KEY)", env)
    assert celery.stdout.strip().splitlines()[-1] == "shared-by-every-process-0123456789", celery.stderr


def test_it_refuses_a_local_env_file_that_other_users_can_read_or_that_is_not_name_value(tmp_path):
    env_file = tmp_path / ".env.local"
    env_file.write_text("DJANGO_SECRET_KEY=readable-by-everyone\n")
    env_file.chmod(0o644)
    result = run_python("import django; django.setup()", clean_env(DJANGO_ENV_FILE=str(env_file)))
    assert result.returncode != 0 and "DJANGO_ENV_FILE" in last_line(result.stderr) and "chmod 600" in result.stderr
    private_file(env_file, "DJANGO_SECRET_KEY=fine\nthis line leaks hunter2\n")
    result = run_python("import django; django.setup()", clean_env(DJANGO_ENV_FILE=str(env_file)))
    assert result.returncode != 0 and "DJANGO_ENV_FILE: line 2" in last_line(result.stderr)
    assert "hunter2" not in result.stderr
    result = run_python("import django; django.setup()", clean_env(DJANGO_ENV_FILE=str(tmp_path / "missing")))
    assert result.returncode != 0 and "DJANGO_ENV_FILE" in last_line(result.stderr)


def test_make_run_writes_a_random_private_secret_once_and_serves_with_debug_on(tmp_path):
    """scripts/run.sh for real (embedded mode on a SQLite file of its own), twice."""
    env_file = tmp_path / "checkout.env.local"
    env = {
        key: value for key, value in os.environ.items()
        if key not in {"DJANGO_SETTINGS_MODULE", "DJANGO_SECRET_KEY", "DJANGO_DEBUG", "REDIS_URL", "CELERY_BROKER_URL", "DATABASE_URL"}
    }
    stack = LiveStack(env=env, log_dir=tmp_path)
    env.update(DJANGO_ENV_FILE=str(env_file), DATABASE_URL=f"sqlite:///{tmp_path / 'dev.sqlite3'}", HOST="127.0.0.1", PORT=str(stack.port))
    keys = []
    try:
        for run in ("first", "second"):
            process = stack.spawn(
                f"make-run-{run}", "bash", "scripts/run.sh",
                ready=lambda: requests.get(f"{stack.base_url}/healthz", timeout=1).status_code == 200,
            )
            stack.wait_ready(process, timeout=90)
            assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
            lines = [line for line in env_file.read_text().splitlines() if line.startswith("DJANGO_SECRET_KEY=")]
            assert len(lines) == 1
            keys.append(lines[0].split("=", 1)[1])
            # DEBUG is on for make run: Django's technical 404 page.
            page = requests.get(f"{stack.base_url}/no-such-page/", timeout=10)
            assert page.status_code == 404 and "DEBUG = True" in page.text
            assert "not seeding demo data" in process.output()  # DATABASE_URL is set: not make run's own database
            process.signal(signal.SIGTERM)
            process.finish(time.monotonic() + 20)
    finally:
        stack.stop()
    assert keys[0] == keys[1] and len(keys[0]) >= 50 and keys[0] != PUBLISHED_KEY
