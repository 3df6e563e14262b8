"""Log lines for every logger (Django, uvicorn, Celery, ours): one JSON object per line, or readable console lines.

LOGGING in core/settings.py installs `formatter()` on the one console handler; structlog's
ProcessorFormatter turns each stdlib record into an event dict (timestamp in UTC, level, logger,
event, the context bound for the request or the task, the process kind, the record's extra
fields), removes secrets from it (`redact`), and renders it. docs/logs-and-traces.md describes
the fields. Imported by logging configuration: no Django state at import time.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import traceback

import structlog
from structlog.contextvars import bind_contextvars, clear_contextvars, merge_contextvars

REDACTED = "[redacted]"
LOG_FORMATS = ("json", "console")
# The most request ids a batch's log line lists; the rest are counted (a rebuild's batch holds thousands).
MAX_LISTED_IDS = 20

# A key that names a secret: its value never reaches a line, whatever it is.
_SECRET_KEY = re.compile(r"(?i)(password|passwd|secret|token|ticket|authorization|cookie|api[_-]?key|idempotency[_-]?key|sessionid|csrf)")
# The same inside text: key=value (a URL's query, a form body, a cookie header), "key": "value" (JSON, a repr),
# and the value of an Authorization header.
_KEYS = r"[A-Za-z0-9_-]*(?:password|passwd|secret|token|ticket|authorization|cookie|api[_-]?key|idempotency[_-]?key|sessionid|csrf)[A-Za-z0-9_-]*"
TEXT_PATTERNS = (
    re.compile(rf"(?i)(\b{_KEYS}(?:=|%3d))(?!\[redacted\])[^&\s'\"#;,)\]}}>]+"),
    re.compile(rf"""(?i)(["']{_KEYS}["']\s*:\s*b?["'])(?!\[redacted\])[^"']+"""),
    re.compile(r"(?i)(\b(?:authorization|cookie|set-cookie|idempotency-key|x-csrftoken)\s*:\s*)(?!\[redacted\])[^\n'\"]+"),
    re.compile(r"(?i)(\bbearer\s+)(?!\[redacted\])[A-Za-z0-9._~+/=-]+"),
)
# Attributes every LogRecord has: anything else on a record is an `extra=` field and becomes a key.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
# uvicorn's coloured copy of its message (the same text again), and the request object Django's request
# logger attaches (the message names its path; the request id is bound).
_SKIPPED_EXTRAS = frozenset({"color_message", "request"})


# Every secret pattern above contains one of these words: text without any is left as it is (the common case).
_HINT = re.compile(r"(?i)pass|secret|token|ticket|auth|cookie|key|session|csrf|bearer")


@functools.lru_cache(maxsize=1024)
def _secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None


def redact_text(text: str) -> str:
    if not _HINT.search(text):
        return text
    for pattern in TEXT_PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
    return text


def _redact_value(key: str, value):
    if _secret_key(key):
        return REDACTED if value is not None else None  # a numeric PIN under "password" too
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {str(k): _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(key, item) for item in value]
    # Anything else (a request object, a URL...) is written as its text, without secrets.
    return redact_text(str(value))


def redact(logger, method_name, event_dict):
    """Processor: secret keys lose their values; text loses key=value, "key": "value" and bearer secrets."""
    for key, value in list(event_dict.items()):
        if key.startswith("_"):
            continue
        event_dict[key] = redact_text(value) if key == "event" and isinstance(value, str) else _redact_value(key, value)
    return event_dict


def add_extras(logger, method_name, event_dict):
    """Pre-chain: the record's `extra=` fields as keys (not our private markers, not uvicorn's colour copy)."""
    record = event_dict.get("_record")
    if record is not None:
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_") and key not in _SKIPPED_EXTRAS:
                event_dict.setdefault(key, value)
    return event_dict


def process_kind(argv: list[str] | None = None) -> str:
    """What this process is: web (uvicorn), worker or beat (Celery), manage (manage.py), or other."""
    argv = sys.argv if argv is None else argv
    program = os.path.basename(argv[0]) if argv else ""
    if program == "uvicorn" or "uvicorn" in argv[:3]:
        return "web"
    if program == "celery" or program.endswith("celery"):
        return "worker" if "worker" in argv else "beat" if "beat" in argv else "celery"
    if program == "manage.py":
        return "manage"
    return "other"


_PROCESS = {"kind": None, "pid": None}


def add_process(logger, method_name, event_dict):
    """Pre-chain: the process kind and pid (a web line has several worker processes, a Celery worker a pool)."""
    pid = os.getpid()
    if _PROCESS["pid"] != pid:
        _PROCESS.update(kind=process_kind(), pid=pid)
    event_dict.setdefault("process", _PROCESS["kind"])
    event_dict.setdefault("pid", pid)
    return event_dict


def render_exception(logger, method_name, event_dict):
    """exc_info and stack_info as text under "exception" and "stack", so `redact` sees them.

    A filter that already rewrote the record's exc_text (realtime.log_redaction) is honoured.
    """
    exc_info = event_dict.pop("exc_info", None)
    if exc_info:
        record = event_dict.get("_record")
        text = getattr(record, "exc_text", None) if record is not None else None
        if not text:
            if exc_info is True:
                exc_info = sys.exc_info()
            if isinstance(exc_info, BaseException):
                exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
            text = "".join(traceback.format_exception(*exc_info)).rstrip("\n")
        event_dict["exception"] = text
    stack = event_dict.pop("stack_info", None)
    if stack:
        event_dict["stack"] = stack
    return event_dict


_FIRST = ("timestamp", "level", "logger", "event", "request_id")


def order_keys(logger, method_name, event_dict):
    """The same keys first on every line, so a line reads left to right and diffs line up."""
    first = {key: event_dict.pop(key) for key in _FIRST if key in event_dict}
    first.update(event_dict)
    return first


PRE_CHAIN = (
    merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    add_process,
    add_extras,
)


def _json_dumps(event_dict, **kwargs) -> str:
    return json.dumps(event_dict, default=str, ensure_ascii=False, separators=(",", ":"))


def renderer(log_format: str):
    if log_format == "json":
        return structlog.processors.JSONRenderer(serializer=_json_dumps)
    # Colours only on a terminal: make run's output piped to a file or a pager stays plain text.
    return structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback)


def for_a_terminal(logger, method_name, event_dict):
    """Console format only: the time of day, and no process fields (make run has one process of each kind)."""
    timestamp = event_dict.get("timestamp")
    if isinstance(timestamp, str) and len(timestamp) > 19:
        event_dict["timestamp"] = timestamp[11:19]
    event_dict.pop("pid", None)
    event_dict.pop("process", None)
    return event_dict


def formatter(log_format: str = "json") -> structlog.stdlib.ProcessorFormatter:
    """The console handler's formatter (LOGGING's `"()"`): json in production, console for `make run`."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r} must be one of {', '.join(LOG_FORMATS)}")
    configure_structlog()
    # Python's warnings (a deprecation, Celery's superuser warning once Django is up) become records on
    # "py.warnings" instead of plain text on stderr: JSON lines like the rest.
    logging.captureWarnings(True)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=list(PRE_CHAIN),
        processors=[
            render_exception,
            redact,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            order_keys,
            *(() if log_format == "json" else (for_a_terminal,)),
            renderer(log_format),
        ],
    )


def configure_structlog() -> None:
    """structlog's own loggers (structlog.get_logger) go through the same stdlib handlers and formatter."""
    if structlog.is_configured():
        return
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *PRE_CHAIN[:-1],
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def bind_request(request_id: str) -> None:
    """The request id on every line this request's thread writes until the next request starts here."""
    clear_contextvars()
    bind_contextvars(request_id=request_id)


def request_ids(metadatas, limit: int = MAX_LISTED_IDS) -> list[str]:
    """A bounded list for a log line: the first `limit` distinct request ids in these events' metadata."""
    return list(dict.fromkeys(m["request_id"] for m in metadatas if m.get("request_id")))[:limit]


def connect_celery() -> None:
    """A worker and beat log through LOGGING too (Celery would replace the root handler with its own
    plain-text one), and a task's lines carry its id and name."""
    from celery import signals

    signals.setup_logging.connect(_configure_from_settings, weak=False, dispatch_uid="core.logconfig.setup_logging")
    signals.task_prerun.connect(_bind_task, weak=False, dispatch_uid="core.logconfig.bind_task")
    signals.task_postrun.connect(_unbind_task, weak=False, dispatch_uid="core.logconfig.unbind_task")


def _configure_from_settings(**kwargs) -> None:
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


def _bind_task(task_id=None, task=None, **kwargs) -> None:
    if getattr(getattr(task, "request", None), "is_eager", False):
        return  # an eager task runs inside a request: its lines keep the request's id
    clear_contextvars()
    bind_contextvars(task_id=task_id, task=getattr(task, "name", None))


def _unbind_task(task=None, **kwargs) -> None:
    if not getattr(getattr(task, "request", None), "is_eager", False):
        clear_contextvars()

