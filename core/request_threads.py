"""A view that would wait for something asks the server's event loop to wait instead, so it holds no thread meanwhile.

The protocol between a view and core/asgi.py's HttpRouter: the router marks the requests it is
ready to wait for (LOOP_WAITS in the ASGI scope, seen by the view as request.META["asgi.scope"]);
such a view, instead of blocking, answers at once with what it would answer after a timeout, marked
with WAIT_HEADER (position and timeout). The router strips the header, awaits the position on the
loop and runs the request again, or sends the kept answer once the timeout has passed. The header
never leaves the server, and a view only sets it when the router asked.
"""
from __future__ import annotations

LOOP_WAITS = "ledgerpulse.loop_waits"
WAIT_HEADER = b"x-ledgerpulse-wait-for"


def loop_waits(request) -> bool:
    """Whether the server waits on its event loop for this request (core/asgi.py set it up)."""
    scope = request.META.get("asgi.scope")
    return bool(scope and scope.get(LOOP_WAITS))


def wait_on_loop(response, *, position: int, timeout: float):
    """`response` (sent if the wait times out), marked: the router waits for `position` up to `timeout` s, then asks again."""
    response[WAIT_HEADER.decode()] = f"{int(position)} {float(timeout)!r}"
    return response


def parse_wait(value: bytes) -> tuple[int, float]:
    position, timeout = value.decode("latin1").split()
    return int(position), float(timeout)
