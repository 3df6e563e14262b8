"""Tickets never reach a log line, at any level, whoever logs them."""
import io
import json
import logging
import os
import socket as sockets
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connection

from realtime.log_redaction import RedactTickets

TICKET = "Zq3vT0p-SECRET-ticket_value-9xY2wQ1eR5tU7iO"
ROOT = Path(__file__).resolve().parents[2]


def decoded(text: str) -> str:
    """The log's JSON lines as their values' text, one line each (quotes inside a message unescaped)."""
    lines = []
    for line in text.splitlines():
        try:
            lines.append(" ".join(str(value) for value in json.loads(line).values()))
        except ValueError:
            lines.append(line)  # a line written around logging (a banner)
    return "\n".join(lines)


@contextmanager
def console_output():
    """What the configured console handler (LOGGING in settings) writes, captured."""
    handlers = [h for h in logging.getLogger().handlers if any(isinstance(f, RedactTickets) for f in h.filters)]
    assert handlers, "the root logger has no handler with the ticket filter: LOGGING does not install it"
    stream = io.StringIO()
    previous = [handler.setStream(stream) for handler in handlers]
    try:
        yield stream
    finally:
        for handler, old in zip(handlers, previous):
            handler.setStream(old)


def test_it_redacts_the_ticket_from_uvicorns_websocket_line_through_the_configured_logging(caplog):
    caplog.set_level(logging.INFO)
    with console_output() as output:
        # Exactly what uvicorn's websocket protocol logs, on the logger it uses, at INFO.
        logging.getLogger("uvicorn.error").info('%s - "WebSocket %s" [accepted]', "127.0.0.1:51234", f"/ws/dashboard/?ticket={TICKET}")
    text = decoded(output.getvalue())
    assert '"WebSocket /ws/dashboard/?ticket=[redacted]" [accepted]' in text
    assert TICKET not in output.getvalue()
    # The record itself is clean, so any other handler (pytest's here, uvicorn's own in a server) is too.
    assert TICKET not in caplog.text


@pytest.mark.parametrize(
    ("logger", "message", "args"),
    [
        ("django.request", "Bad request %s", (f"/ws/dashboard/?x=1&ticket={TICKET}&y=2",)),
        ("some.module", f"GET /ws/dashboard/?ticket={TICKET} done", ()),
        ("uvicorn.asgi", "ASGI [%d] Started scope=%s", (3, {"path": "/ws/dashboard/", "query_string": f"ticket={TICKET}".encode()})),
        ("uvicorn.error", "%(path)s refused", {"path": f"/ws/dashboard/?TICKET={TICKET}"}),
        ("some.module", "payload %s", ({"ticket": TICKET, "expires_in": 60},)),
        ("some.module", "encoded %s", (f"/ws/dashboard/%3Fticket%3D{TICKET}",)),
    ],
)
def test_it_redacts_tickets_from_any_logger_at_any_level(caplog, logger, message, args):
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger(logger)
    with console_output() as output:
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
            if isinstance(args, dict):
                log.log(level, message, args)
            else:
                log.log(level, message, *args)
    lines = output.getvalue().splitlines()
    # Every level that logger lets through (django.* stop at INFO) was written, redacted.
    assert len(lines) >= 3 and all("[redacted]" in line for line in lines)
    assert TICKET not in output.getvalue()


def test_it_redacts_tickets_from_tracebacks():
    with console_output() as output:
        try:
            raise ValueError(f"no route for /ws/dashboard/?ticket={TICKET}")
        except ValueError:
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    assert "Traceback" in output.getvalue() and TICKET not in output.getvalue()


def test_it_keeps_records_without_a_ticket_as_they_are():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s - %d", ("ticketing office", 3), None)
    assert RedactTickets().filter(record)
    assert record.getMessage() == "ticketing office - 3" and record.args == ("ticketing office", 3)


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_it_keeps_tickets_out_of_a_real_uvicorns_log(tmp_path):
    """The line uvicorn itself writes for a refused handshake, from a real server process."""
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    listener = sockets.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    database = connection.settings_dict
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="core.settings",
        DJANGO_SECRET_KEY="x" * 50,
        DJANGO_DEBUG="false",
        DATABASE_URL=f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        DATABASE_POOL="false",
        LOG_LEVEL="DEBUG",
    )
    env.pop("REDIS_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    log = tmp_path / "uvicorn.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "uvicorn"), "core.asgi:application", "--fd", str(listener.fileno()), "--no-access-log"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, pass_fds=[listener.fileno()],
        )
    listener.close()
    try:
        deadline = time.monotonic() + 30
        while "Application startup complete" not in log.read_text():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        url = f"ws://127.0.0.1:{port}/ws/dashboard/?ticket={TICKET}"
        with pytest.raises(InvalidStatus):  # refused at the Origin check: uvicorn logs a 403 line
            with connect(url, origin="http://evil.example", open_timeout=10):
                pass
        with connect(url, open_timeout=10) as ws:  # a script: accepted, then closed 4401 (a dead ticket)
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
            assert ws.close_code == 4401
        deadline = time.monotonic() + 10
        while log.read_text().count("WebSocket /ws/dashboard/") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=20)
    text = decoded(log.read_text())
    assert '"WebSocket /ws/dashboard/?ticket=[redacted]" 403' in text, text
    assert '"WebSocket /ws/dashboard/?ticket=[redacted]" [accepted]' in text, text
    assert TICKET not in log.read_text()
