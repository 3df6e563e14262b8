"""The documented first production start on an empty PostgreSQL database: migrate, the first admin, no demo data."""
import json
import subprocess
import sys
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import yaml
from django.db import connection

from tests.services import redis_available, require
from scripts.stack import stack_env
from tests.stack import REDIS_TEST_DB, ROOT, Browserless, Stack, flush_test_redis

pytestmark = [pytest.mark.e2e, pytest.mark.no_deadline, pytest.mark.needs_postgres, pytest.mark.needs_redis]

ADMIN = {"DJANGO_SUPERUSER_USERNAME": "ops-lead", "DJANGO_SUPERUSER_EMAIL": "ops-lead@example.com",
         "DJANGO_SUPERUSER_PASSWORD": "a-long-first-admin-password-42"}
# Tables the demo (manage.py seed_demo) fills; a first production start leaves them empty.
DATA_TABLES = ("transactions_transaction", "core_event", "analytics_weeklyincome", "analytics_weeklyincomehistory",
               "core_idempotency_record", "realtime_realtimeticket")


def server_conninfo(dbname: str) -> str:
    db = connection.settings_dict
    return f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} user={db['USER'] or 'postgres'} dbname={dbname}"


@pytest.fixture
def empty_database():
    """A database of its own, created empty (not the test database: nothing pytest-django migrated)."""
    require("PostgreSQL", connection.vendor == "postgresql")
    require("Redis", redis_available())
    name = f"lp_bootstrap_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_conninfo("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    db = connection.settings_dict
    try:
        yield name, f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}"
    finally:
        with psycopg.connect(server_conninfo("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def deployed_migration_command() -> list[str]:
    """What compose.yaml's `migrate` service runs; the Kubernetes Job runs the same."""
    service = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["migrate"]
    command = service["entrypoint"] + service["command"]
    job = yaml.safe_load((ROOT / "deploy" / "k8s" / "migrate-job.yaml").read_text())
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == command
    return command


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    if command[0] == "python":
        command = [sys.executable, *command[1:]]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


def run_side_by_side(*commands: tuple[list[str], dict[str, str]]) -> list[subprocess.CompletedProcess]:
    """run() for each (command, env) at once: independent start-ups (mostly Django importing) overlap."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: run(*args), commands))


def post_json(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


def get_json(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return json.loads(response.read())


@pytest.mark.timeout(300)
def test_it_migrates_creates_the_first_admin_and_seeds_nothing_on_the_first_start(empty_database, tmp_path):
    name, url = empty_database
    env = stack_env(
        database_url=url, redis_url=f"redis://127.0.0.1:6379/{REDIS_TEST_DB}", secret="bootstrap-" + uuid.uuid4().hex * 2,
        DJANGO_ENV_FILE="/dev/null", WEB_CONCURRENCY="1",
    )
    migrate = deployed_migration_command()
    first = run(migrate, env)
    assert first.returncode == 0, first.stdout + first.stderr
    created = run(["python", "manage.py", "createsuperuser", "--noinput"], {**env, **ADMIN})
    assert created.returncode == 0, created.stdout + created.stderr
    # Run twice by mistake, it refuses the existing name and changes nothing; after an upgrade the same
    # migration step runs again: nothing to do, nothing changed. (Independent of each other: run at once.)
    twice, again = run_side_by_side(
        (["python", "manage.py", "createsuperuser", "--noinput"], {**env, **ADMIN, "DJANGO_SUPERUSER_PASSWORD": "another-password-77"}),
        (migrate, env),
    )
    assert twice.returncode != 0 and "already taken" in twice.stderr, twice.stdout + twice.stderr
    assert again.returncode == 0 and "No migrations to apply" in again.stdout, again.stdout + again.stderr

    with psycopg.connect(server_conninfo(name)) as db:
        users = db.execute("SELECT username, is_staff, is_superuser, is_active FROM auth_user").fetchall()
        assert users == [("ops-lead", True, True, True)]  # and no demo `admin`
        for table in DATA_TABLES:
            assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table

    # The admin signs in to the API of the Procfile's web line, and sees an empty ledger, ready to serve.
    flush_test_redis()
    stack = Stack(env=env, log_dir=tmp_path)
    try:
        stack.start_server()
        status, tokens = post_json(f"{stack.base_url}/api/auth/token/",
                                   {"username": ADMIN["DJANGO_SUPERUSER_USERNAME"], "password": ADMIN["DJANGO_SUPERUSER_PASSWORD"]})
        assert status == 200
        assert get_json(f"{stack.base_url}/api/transactions/", tokens["access"])["results"] == []
        weekly = get_json(f"{stack.base_url}/api/analytics/weekly-income/", tokens["access"])
        assert weekly["results"] == [] and weekly["as_of"] == 0
        assert get_json(f"{stack.base_url}/readyz", tokens["access"])["status"] == "ok"
        # ... and signs in to the dashboard in a browser.
        browser = Browserless(stack.base_url).login(ADMIN["DJANGO_SUPERUSER_USERNAME"], ADMIN["DJANGO_SUPERUSER_PASSWORD"])
        dashboard = browser.get("/dashboard/")
        assert dashboard.status_code == 200 and dashboard.url.endswith("/dashboard/")
    finally:
        stack.stop()
        flush_test_redis()
