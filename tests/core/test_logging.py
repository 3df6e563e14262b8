"""Log lines: one JSON object per line from every logger, the request id bound, no secret in any field, each line once."""
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import logconfig
from core.models import StoredEvent

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Hunter2-correct-horse-battery"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXBheWxvYWQ.c2lnbmF0dXJl"


def formatted(log_format="json", level=logging.INFO, **extra):
    """A private logger writing through the project's formatter to a StringIO."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logconfig.formatter(log_format))
    log = logging.getLogger(f"tests.logging.{log_format}")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(level)
    return log, stream


def lines(stream):
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def run_python(code, **env):
    base = {
        "PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "core.settings", "DJANGO_SECRET_KEY": "logging-test-key-" + "x" * 40,
        "DJANGO_ENV_FILE": "/dev/null",
    }
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=60)


@pytest.fixture(autouse=True)
def unbound():
    logconfig.clear_contextvars()
    yield
    logconfig.clear_contextvars()


def test_it_writes_one_json_object_per_line_with_time_level_logger_event_and_the_bound_request_id():
    log, stream = formatted()
    logconfig.bind_request("4f1c0ffee")
    log.warning("approved %s of %d", "txn-1", 3, extra={"position": 42})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("it failed\non two lines")
    first, second = lines(stream)
    assert list(first)[:5] == ["timestamp", "level", "logger", "event", "request_id"]
    assert first["timestamp"].endswith("Z") and first["timestamp"][:2] == "20"
    assert first["level"] == "warning" and first["logger"] == "tests.logging.json"
    assert first["event"] == "approved txn-1 of 3" and first["request_id"] == "4f1c0ffee" and first["position"] == 42
    assert first["process"] == "other" and first["pid"] == os.getpid()
    # A traceback and a multi-line message stay inside their one line.
    assert second["event"] == "it failed\non two lines" and "RuntimeError: boom" in second["exception"]
    assert len(stream.getvalue().splitlines()) == 2


def test_it_names_the_kind_of_process_from_its_command_line():
    assert logconfig.process_kind(["/venv/bin/uvicorn", "core.asgi:application"]) == "web"
    assert logconfig.process_kind(["/venv/bin/celery", "-A", "celery_app", "worker"]) == "worker"
    assert logconfig.process_kind(["/venv/bin/celery", "-A", "celery_app", "beat"]) == "beat"
    assert logconfig.process_kind(["manage.py", "rebuild_projections"]) == "manage"


@pytest.mark.parametrize(
    ("message", "args", "extra"),
    [
        ("login %s", (f"username=admin&password={PASSWORD}",), {}),
        ("payload %s", ({"username": "admin", "password": PASSWORD},), {}),
        ("headers %s", (f"Authorization: Bearer {TOKEN}",), {}),
        ("call with %s", (f"Bearer {TOKEN}",), {}),
        ("refresh", (), {"refresh_token": TOKEN}),
        ("pin", (), {"password": 918273645, "token_ttl": None}),
        ("signed in", (), {"credentials": {"user": "admin", "password": PASSWORD}}),
        ("headers", (), {"headers": {"Cookie": f"sessionid={TOKEN}", "Idempotency-Key": TOKEN}}),
        ("got %s", (f"/ws/dashboard/?ticket={TOKEN}",), {}),
        ("cookie header %s", (f"csrftoken=abc; sessionid={TOKEN}",), {}),
    ],
)
def test_it_never_writes_a_password_token_ticket_or_cookie_in_any_field(message, args, extra):
    log, stream = formatted()
    log.info(message, *args, extra=extra)
    text = stream.getvalue()
    assert PASSWORD not in text and TOKEN not in text and "918273645" not in text and "[redacted]" in text
    assert len(lines(stream)) == 1


def test_it_redacts_secrets_from_a_traceback_and_from_structlogs_own_loggers():
    import structlog

    log, stream = formatted()
    try:
        raise ValueError(f"bad login password={PASSWORD}")
    except ValueError:
        log.exception("sign-in failed")
    logconfig.configure_structlog()
    structlog.get_logger("tests.logging.json").info("issued", token=TOKEN, user="admin")
    text = stream.getvalue()
    assert PASSWORD not in text and TOKEN not in text
    issued = lines(stream)[-1]
    assert issued["event"] == "issued" and issued["token"] == "[redacted]" and issued["user"] == "admin"


def test_it_keeps_ordinary_text_as_it_is():
    log, stream = formatted()
    log.info("ticketing desk approved %s", "EUR 12.00", extra={"request_ids": ["a1", "b2"]})
    [line] = lines(stream)
    assert line["event"] == "ticketing desk approved EUR 12.00" and line["request_ids"] == ["a1", "b2"]


def test_the_console_format_is_one_readable_line_per_record_and_redacts_too():
    log, stream = formatted("console")
    logconfig.bind_request("4f1c0ffee")
    log.warning("login %s", f"password={PASSWORD}")
    text = stream.getvalue()
    assert not text.startswith("{") and "[warning" in text and "request_id=4f1c0ffee" in text
    assert "login password=[redacted]" in text and PASSWORD not in text


def test_log_format_is_parsed_strictly():
    result = run_python("import django; django.setup()", LOG_FORMAT="yaml")
    assert result.returncode != 0 and "LOG_FORMAT='yaml' must be one of json, console" in result.stderr
    result = run_python("import django, logging; django.setup(); logging.getLogger('x').warning('hi')", LOG_FORMAT="Console")
    assert result.returncode == 0 and "[warning" in result.stderr and not result.stderr.startswith("{")


def test_every_warning_is_written_once_also_under_debug():
    """Under DEBUG Django's own "django" handler wrote every django.* record a second time (make run)."""
    code = """
import django, logging
django.setup()
logging.getLogger("django.request").warning("Not Found: %s", "/nope")
logging.getLogger("django.security.csrf").warning("Forbidden (CSRF cookie not set.): %s", "/api/x")
logging.getLogger("uvicorn.error").warning("uvicorn says %s", "hi")
logging.getLogger("analytics.tasks").warning("ours")
import warnings
warnings.warn("a Python warning", RuntimeWarning)
"""
    for debug in ("true", "false"):
        result = run_python(code, DJANGO_DEBUG=debug)
        assert result.returncode == 0, result.stderr[-2000:]
        output = result.stdout + result.stderr
        written = [json.loads(line) for line in output.splitlines()]
        assert [line["event"] for line in written[:4]] == ["Not Found: /nope", "Forbidden (CSRF cookie not set.): /api/x", "uvicorn says hi", "ours"], (
            debug, output
        )
        # Python's warnings are records too (logger py.warnings), not a plain-text line on stderr.
        assert len(written) == 5 and written[4]["logger"] == "py.warnings" and "RuntimeWarning: a Python warning" in written[4]["event"]


def test_the_celery_worker_logs_through_the_projects_handler_not_its_own():
    """Celery replaces the root logger's handlers with a plain-text one unless setup_logging has a receiver."""
    code = """
import logging
from celery_app import app
from celery.signals import setup_logging
assert setup_logging.receivers, "no setup_logging receiver: Celery would hijack the root logger"
app.log.setup(loglevel="INFO", redirect_stdouts=False)
logging.getLogger("analytics.tasks").warning("from a worker")
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    [line] = [json.loads(line) for line in (result.stdout + result.stderr).splitlines()]
    assert line["event"] == "from a worker" and line["logger"] == "analytics.tasks"


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_an_approvals_request_id_reaches_its_event_and_the_log_line_of_the_batch_that_projected_it(api, caplog, client_for, clerk_user):
    caplog.set_level(logging.INFO)
    # Submitted by a clerk: nobody approves their own submission.
    created = client_for(clerk_user).post("/api/transactions/", {"amount": "12.34", "currency": "EUR"}, format="json")
    assert created.status_code == 201, created.content
    approved = api.post(f"/api/transactions/{created.json()['id']}/approve/", {"reason": "checked"}, format="json")
    assert approved.status_code == 200, approved.content
    request_id = approved["X-Request-ID"]
    event = StoredEvent.objects.get(position=approved.json()["position"])
    assert event.metadata["request_id"] == request_id
    batches = [r for r in caplog.records if r.name == "analytics.tasks" and r.getMessage() == "projected a weekly income batch"]
    projected = [r for r in batches if r.after < event.position <= r.through]
    assert len(projected) == 1 and projected[0].request_ids == [request_id], [vars(r) for r in batches]
    published = [r for r in caplog.records if r.name == "realtime.broadcast" and r.getMessage() == "published a dashboard batch"]
    assert [r.request_ids for r in published if r.after < event.position <= r.through] == [[request_id]]


def test_a_batch_line_lists_a_bounded_number_of_request_ids():
    metadatas = [{"request_id": f"r{n}"} for n in range(5000)] + [{"actor": "seed"}]
    assert logconfig.request_ids(metadatas) == [f"r{n}" for n in range(logconfig.MAX_LISTED_IDS)]
    assert logconfig.request_ids([{"request_id": "a"}, {"request_id": "a"}, {"request_id": None}]) == ["a"]
