"""A logging filter that removes websocket tickets from log records, whoever logs them.

uvicorn's error logger writes `"WebSocket /ws/dashboard/?ticket=..."` at INFO even without the
access log, and its trace log prints whole scopes. core/settings.py installs this filter on the
uvicorn loggers and on the console handler, so neither the message, its arguments, a traceback
nor a stack dump carries a ticket. Imported by logging configuration: no Django state here.
"""
from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
# ticket=VALUE in a URL or query string (also %3D-encoded), and 'ticket': 'VALUE' in a repr or JSON.
_PATTERNS = (
    re.compile(r"(?i)(ticket(?:=|%3d))(?!\[redacted\])[^&\s'\"#;,)\]}>]+"),
    re.compile(r"""(?i)(["']ticket["']\s*:\s*b?["'])(?!\[redacted\])[^"']+"""),
)


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
    return text


def _has_ticket(text: str) -> bool:
    return "ticket" in text.lower() and redact(text) != text


class RedactTickets(logging.Filter):
    """Never drops a record; rewrites the parts of it that hold a ticket."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._redact(record)
        except Exception:  # noqa: BLE001 - a filter must never break the log call
            record.msg, record.args = "(log message withheld: it could not be checked for tickets)", ()
        return True

    def _redact(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, str) and _has_ticket(record.msg):
            record.msg = redact(record.msg)
        elif not isinstance(record.msg, str) and _has_ticket(str(record.msg)):
            record.msg = redact(str(record.msg))
        args = record.args
        if isinstance(args, tuple):
            # Keep the arguments (formatters such as uvicorn's access formatter unpack them);
            # rewrite only those that hold a ticket.
            record.args = tuple(self._redact_arg(arg) for arg in args)
        elif isinstance(args, dict):
            record.args = {key: self._redact_arg(value) for key, value in args.items()}
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is logging's business, not ours
            message = None
        if message is not None and _has_ticket(message):
            # A ticket split across the format string and its arguments: freeze the redacted text.
            record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and _has_ticket(record.exc_text):
            record.exc_text = redact(record.exc_text)
        if record.stack_info and _has_ticket(record.stack_info):
            record.stack_info = redact(record.stack_info)

    @staticmethod
    def _redact_arg(arg):
        if isinstance(arg, str):
            return redact(arg) if _has_ticket(arg) else arg
        if isinstance(arg, bytes):
            text = arg.decode("latin-1")
            return redact(text).encode("latin-1") if _has_ticket(text) else arg
        if isinstance(arg, (int, float, type(None))):
            return arg
        text = str(arg)
        # A scope dict, a URL object...: its text stands in for it, without the ticket.
        return redact(text) if _has_ticket(text) else arg
