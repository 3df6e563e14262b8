"""A log that cannot flood: identical records beyond a few per interval become one summary line."""
import io
import json
import logging
import subprocess
import sys
from pathlib import Path

from core.logfilters import RepeatThrottle

ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def logger_with_throttle(name, limit=10, interval=10, clock=None):
    """A private logger writing to a StringIO through a handler with the filter, as LOGGING installs it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    throttle = RepeatThrottle(limit=limit, interval=interval, clock=clock or FakeClock())
    handler.addFilter(throttle)
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    # The summary line is written through core.logfilters: send it to the same stream.
    summaries = logging.getLogger("core.logfilters")
    summaries.handlers[:] = [handler]
    summaries.propagate = False
    return logger, stream, throttle


def test_it_lets_10_of_10000_identical_errors_through_and_then_one_summary_line():
    clock = FakeClock()
    logger, stream, throttle = logger_with_throttle("flood.test", clock=clock)
    for number in range(10_000):
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            logger.exception("accept failed on socket %s", number)
        clock.now += 0.001  # 10,000 records in 10 s
    clock.now += 0.01
    logger.error("something else")  # the next record (of any kind) brings the summary of the window that ended
    lines = stream.getvalue().splitlines()
    records = [line for line in lines if line.startswith(("ERROR", "WARNING"))]
    assert len([line for line in records if line.startswith("ERROR flood.test accept failed")]) == 10
    summaries = [line for line in records if "repeated" in line]
    assert summaries == ["WARNING core.logfilters last message repeated 9,990 more times in the last 10 s (flood.test ERROR 'accept failed on socket %s')"]
    assert records[-1] == "ERROR flood.test something else"
    assert len(lines) < 10 * 6 + 3  # ten tracebacks of a few lines each, not ten thousand


def test_it_starts_counting_again_in_the_next_interval_and_keeps_templates_apart():
    clock = FakeClock()
    logger, stream, _ = logger_with_throttle("flood.windows", limit=3, interval=10, clock=clock)
    for _ in range(50):
        logger.warning("disk %s slow", "sda")
        logger.info("disk %s slow", "sda")  # another level: another key
        logger.warning("queue full")  # another template
    clock.now += 10
    for _ in range(50):
        logger.warning("disk %s slow", "sda")
    lines = stream.getvalue().splitlines()
    assert lines.count("WARNING flood.windows disk sda slow") == 3 + 3
    assert lines.count("INFO flood.windows disk sda slow") == 3
    assert lines.count("WARNING flood.windows queue full") == 3
    assert len([line for line in lines if "repeated 47 more times" in line]) == 3


def test_it_tells_what_was_dropped_when_flushed_at_exit():
    logger, stream, throttle = logger_with_throttle("flood.exit", limit=2)
    for _ in range(5):
        logger.error("boom")
    throttle.flush()
    assert stream.getvalue().splitlines()[-1].startswith("WARNING core.logfilters last message repeated 3 more times")


def test_the_project_logging_throttles_the_root_handler_and_uvicorn_error():
    """Through core.settings' LOGGING, in a fresh interpreter: 10,000 identical errors with tracebacks."""
    code = """
import logging, django
django.setup()
for name in ("ledgerpulse.flood", "uvicorn.error", "asyncio"):
    for number in range(10_000):
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            logging.getLogger(name).exception("socket.accept() out of system resource %s", number)
"""
    env = {
        "PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "core.settings", "DJANGO_SECRET_KEY": "log-flood-test-key-" + "x" * 40,
        "DJANGO_ENV_FILE": "/dev/null", "LOG_REPEAT_LIMIT": "5", "LOG_REPEAT_INTERVAL_SECONDS": "60",
    }
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    lines = [json.loads(line) for line in output.splitlines()]  # one JSON object per line, tracebacks included
    for name in ("ledgerpulse.flood", "uvicorn.error", "asyncio"):
        passed = [line for line in lines if line["logger"] == name and line["event"].startswith("socket.accept() out of system resource")]
        assert len(passed) == 5 and all(line["level"] == "error" and "Too many open files" in line["exception"] for line in passed), name
        summaries = [line["event"] for line in lines if line["logger"] == "core.logfilters" and f"({name} ERROR " in line["event"]]
        assert len(summaries) == 1 and "repeated 9,995 more times in the last" in summaries[0], name
    assert output.count("Too many open files") == 3 * 5
    assert len(lines) == 3 * 5 + 3


def test_it_never_summarizes_an_access_log():
    logger, stream, _ = logger_with_throttle("uvicorn.access", limit=3)
    for number in range(20):
        logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", f"/api/{number}", "1.1", 200)
    assert len(stream.getvalue().splitlines()) == 20


def test_it_never_summarizes_a_record_of_every_occurrence():
    """The projector's one line per batch shares its template with every other batch: all are written."""
    from core.logfilters import EVERY

    logger, stream, _ = logger_with_throttle("flood.every", limit=3)
    for through in range(1, 51):
        logger.info("projected a weekly income batch", extra={**EVERY, "through": through})
        logger.info("something else")
    lines = stream.getvalue().splitlines()
    assert lines.count("INFO flood.every projected a weekly income batch") == 50
    assert lines.count("INFO flood.every something else") == 3
