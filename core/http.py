"""uvicorn's HTTP protocols with a request-head and a request-body deadline (`--http core.http:SlowClientHttpToolsProtocol`).

uvicorn times out only idle keep-alive connections: a client that connects and sends nothing, or half a
request line, or a body one byte at a time, holds a file descriptor for as long as it likes, and some
thousands of them starve the process (issue 9: 20,000 descriptors held, /healthz timing out). Here:

* the request head (request line and headers) must be complete within HTTP_HEADER_TIMEOUT_SECONDS of
  the connection being made, or of the first byte of a further request on a kept-alive connection;
* the body must be complete within HTTP_BODY_TIMEOUT_SECONDS of the end of the head.

Otherwise the client gets `408 Request Timeout` (when no answer has started) and the connection is
closed; the application sees a disconnect. A websocket upgrade leaves both deadlines behind.
Expiries are logged at DEBUG only: a flood of slow clients must not become a flood of log lines.

SlowClientHttpToolsProtocol (the Procfile's) parses with httptools (llhttp, C, pinned in requirements.txt):
several times less CPU per request than uvicorn's pure-Python h11 protocol, which an earlier version used.
"""
from __future__ import annotations

import asyncio
import logging
import time

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger("core.http")

DEFAULT_HEADER_TIMEOUT = 10
DEFAULT_BODY_TIMEOUT = 30
_TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 16\r\nconnection: close\r\n\r\nRequest Timeout\n"

_timeouts: tuple[float, float] | None = None


def timeouts() -> tuple[float, float]:
    """(head, body) in seconds, from the Django settings (parsed there, so a bad value stops start-up)."""
    global _timeouts
    if _timeouts is None:
        from django.conf import settings

        _timeouts = (
            float(getattr(settings, "HTTP_HEADER_TIMEOUT_SECONDS", DEFAULT_HEADER_TIMEOUT)),
            float(getattr(settings, "HTTP_BODY_TIMEOUT_SECONDS", DEFAULT_BODY_TIMEOUT)),
        )
    return _timeouts


# Accept pacing (docs/operations.md, "How load is spread across web processes"). Every web process
# accepts from one shared listening socket, and the one whose loop is running when a burst of
# connections arrives takes them all, one per loop turn, before the others are even scheduled: a
# load generator's or a proxy's 8 keep-alive connections then sit in one process for good (98% of
# the CPU samples in one process of two, in the weekly income benchmark). So a process that accepts
# a connection within BURST_SECONDS of its previous one first stops its loop for PACE_SECONDS,
# long enough for another process to take the next; only while it holds fewer than PACE_BELOW
# connections, so a storm of thousands of websocket handshakes costs each process at most
# PACE_BELOW x PACE_SECONDS, and only with more than one web process (WEB_CONCURRENCY).
PACE_SECONDS = 0.001
BURST_SECONDS = 0.005
PACE_BELOW = 64
_last_accept = float("-inf")
_processes: int | None = None


def pace_accepts(open_connections: int) -> None:
    """Called for each accepted connection, before it is served: pause the loop if it comes in a burst."""
    global _last_accept, _processes
    if _processes is None:
        from django.conf import settings

        _processes = int(getattr(settings, "WEB_CONCURRENCY", 1))
    now = time.monotonic()
    if _processes > 1 and open_connections < PACE_BELOW and now - _last_accept < BURST_SECONDS:
        time.sleep(PACE_SECONDS)  # the point is to stop this loop from accepting: nothing else may run
        now = time.monotonic()
    _last_accept = now


class _Deadlines:
    """The head and body deadlines, shared by both protocols; `self.loop`, `self.transport`, `self.cycle` are uvicorn's."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_deadlines()

    # --- uvicorn's protocol interface, the same for both parsers -------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        pace_accepts(len(self.server_state.connections))
        super().connection_made(transport)
        self._arm("head", self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _init_deadlines(self) -> None:
        # uvicorn decides by whether uvicorn.access has handlers, and Django's LOGGING gives it one after
        # uvicorn applied --no-access-log: honour the flag (websocket URLs can carry a ticket).
        self.access_log = self.access_log and self.config.access_log
        self.header_timeout, self.body_timeout = timeouts()
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_for: str | None = None  # "head" or "body"

    def _arm(self, what: str, seconds: float) -> None:
        self._disarm()
        self._deadline_for = what
        self._deadline = self.loop.call_later(seconds, self._expired, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._deadline_for = None

    def _expired(self, what: str) -> None:
        self._deadline = None
        self._deadline_for = None
        if self.transport is None or self.transport.is_closing() or self.transport.get_protocol() is not self:
            return
        logger.debug("closing a connection from %s: request %s not complete in time", self.client and self.client[0], what)
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            if self.cycle is not None and not self.cycle.response_complete:
                # The application waits for the rest of the body: it gets a disconnect, and whatever it
                # answers is dropped (uvicorn sends nothing on a disconnected cycle).
                self.cycle.disconnected = True
                self.cycle.message_event.set()
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


class SlowClientHttpToolsProtocol(_Deadlines, HttpToolsProtocol):
    """httptools (llhttp, C): the parser's callbacks say where a request is."""

    def on_message_begin(self) -> None:
        # The first byte of a request (a new one on a kept-alive connection too): its head is due.
        super().on_message_begin()
        if self._deadline_for != "head":
            self._arm("head", self.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.transport.get_protocol() is self:
            self._arm("body", self.body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the websocket protocol takes the transport over
        super().handle_websocket_upgrade()

    def send_400_response(self, msg: str) -> None:
        self._disarm()
        super().send_400_response(msg)
