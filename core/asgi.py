"""ASGI entry point: one port for everything; HTTP through Django's WSGI handler in a thread pool, websockets through Channels.

Django's ASGI handler runs every request's sync code (middleware, DRF, the ORM) on a fresh executor
thread and hops between the loop and that thread at each step: it measured several times slower
per request than the WSGI handler. So every plain HTTP request goes to Django's WSGI handler on a
bounded pool of threads (a2wsgi), and crosses between the loop and its thread once each way: the
body is read on the loop first, and an answer of up to RESPONSE_BUFFER bytes goes back whole.
A read that must wait for the projection (`min_position`, `at`; analytics/api.py) does not wait in
its thread: the view answers at once with a marked "not yet" (core/request_threads.py), and the
router awaits the position on the event loop, holding no thread and no database connection, then
runs the request again. Websockets go to the Channels consumer stack, whatever the path.
"""
import asyncio
import contextvars
import functools
import gc
import os
from urllib.parse import parse_qsl

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
get_asgi_application()  # django.setup(), as Channels expects before its imports

from a2wsgi.wsgi import Body, WSGIMiddleware, WSGIResponder, build_environ  # noqa: E402
from asgiref.sync import SyncToAsync  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from core.request_threads import LOOP_WAITS, WAIT_HEADER, parse_wait  # noqa: E402
from core.wsgi import application as django_wsgi_app  # noqa: E402
from realtime.auth import OriginCheck, TicketAuthMiddleware  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402

# Requests that may wait for the projection (analytics/api.py weekly_income_view) and the query keys that make them wait.
WAITING_PATHS = {"/api/analytics/weekly-income/": frozenset({b"min_position", b"at"})}
# Answers up to this size cross from the request's thread to the loop in one piece; longer ones
# (CSV exports, static files) stream, with a2wsgi's back-pressure.
RESPONSE_BUFFER = 256 * 1024


def waits(scope) -> bool:
    """Whether this HTTP request may wait for the projection: the router then waits for it on the loop."""
    keys = WAITING_PATHS.get(scope["path"])
    if keys is None:
        return False
    query = scope.get("query_string", b"")
    return any(key in keys for key, _ in parse_qsl(query, keep_blank_values=True)) if query else False


async def buffered_body(receive, limit: int):
    """Read the request body on the event loop, up to `limit` bytes; a receive() that replays it, or None on a disconnect.

    A thread must never wait on a client: a body trickling in would hold one of the few WSGI threads
    (core/http.py bounds how long, not how many). Past `limit` (more than Django accepts outside file
    uploads) the rest is left to stream through the original receive().
    """
    chunks, size, more = [], 0, True
    while more and size <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return None  # the client is gone (or timed out): nobody to answer, nothing to run
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        more = message.get("more_body", False)
    pending = [{"type": "http.request", "body": chunks[0] if len(chunks) == 1 else b"".join(chunks), "more_body": more}]

    async def replay():
        return pending.pop() if pending else await receive()

    replay.first = pending[0]  # the buffered part, for a second run of the request (HttpRouter)
    replay.replays = True  # its first message is at hand: BufferedResponder reads it on the loop
    return replay


class ServerLoopWSGI:
    """Django's WSGI handler, told in each thread which event loop is the server's.

    asgiref's async_to_sync from such a thread then runs on the server's loop, as it did from
    Django's ASGI threads, instead of on a new loop per call: the in-memory channel layer of
    embedded mode (`make run`) lives on that loop (realtime/broadcast.py).
    """

    def __init__(self, app):
        self.app = app
        self.loop = None
        self.pid = os.getpid()

    def __call__(self, environ, start_response):
        local = SyncToAsync.threadlocal
        if getattr(local, "main_event_loop", None) is not self.loop:
            local.main_event_loop = self.loop
            local.main_event_loop_pid = self.pid
        return self.app(environ, start_response)


class BufferedResponder(WSGIResponder):
    """a2wsgi's responder, with one hop each way for a small answer instead of one per message.

    a2wsgi hands every message (the head, each body chunk, the end) from the thread to the loop and
    blocks the thread until the loop took it: three loop wake-ups per answer, each a wait behind
    whatever else the loop is doing. Here the thread keeps the messages of an answer up to
    RESPONSE_BUFFER bytes and the loop sends them once the thread is done; a longer answer streams
    as a2wsgi does. A body already read on the loop (buffered_body) is handed to the thread ready.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.held: list | None = []
        self.held_size = 0

    def send(self, message) -> None:  # runs in the request's thread
        if self.held is None:
            return super().send(message)
        self.held.append(message)
        self.held_size += len(message.get("body", b""))
        if self.held_size > RESPONSE_BUFFER:
            held, self.held = self.held, None  # from now on, stream
            for kept in held:
                super().send(kept)

    async def __call__(self, scope, receive, send) -> None:
        body = Body(self.loop, receive)
        if getattr(receive, "replays", False):
            # Already in memory: the thread reads it without a round trip through the loop.
            first = await receive()
            body.buffer.extend(first["body"])
            body._has_more = first["more_body"]
        environ = build_environ(scope, body)
        sender = self.loop.create_task(self.sender(send))
        try:
            func = functools.partial(contextvars.copy_context().run, self.wsgi)
            await self.loop.run_in_executor(self.executor, func, environ, self.start_response)
            for message in self.held or ():
                await self.send_queue.put(message)
            await self.send_queue.put(None)
            await sender
            if self.exc_info is not None:
                raise self.exc_info[0].with_traceback(self.exc_info[1], self.exc_info[2])
        finally:
            if not sender.done():
                sender.cancel()


class BufferedWSGI(WSGIMiddleware):
    async def __call__(self, scope, receive, send) -> None:
        await BufferedResponder(self.app, self.executor, self.send_queue_size)(scope, receive, send)


class HeldAnswer:
    """The send() of a request that may wait: passes the answer on, unless the view asked the loop to wait (WAIT_HEADER).

    Then the answer (the view's 503 for a projection still behind) is kept, without the header, for
    when the wait times out.
    """

    def __init__(self, send):
        self.send = send
        self.wait: tuple[int, float] | None = None
        self.messages: list = []

    async def __call__(self, message) -> None:
        if message["type"] == "http.response.start":
            headers = message.get("headers", [])
            for name, value in headers:
                if name == WAIT_HEADER:
                    self.wait = parse_wait(value)
            if self.wait is not None:
                message = dict(message, headers=[(n, v) for n, v in headers if n != WAIT_HEADER])
        if self.wait is None:
            await self.send(message)
        else:
            self.messages.append(message)

    async def flush(self) -> None:
        for message in self.messages:
            await self.send(message)


class HttpRouter:
    """Plain HTTP to the WSGI handler on a thread pool (body read first, on the loop); waits for the projection on the loop.

    `wait(position, timeout) -> bool` (analytics.waiting.wait_for_position) awaits a position; None: no request waits.
    """

    def __init__(self, wsgi_app, wait=None, *, threads: int, body_limit: int):
        self.wsgi_app = ServerLoopWSGI(wsgi_app)
        self.wsgi = BufferedWSGI(self.wsgi_app, workers=threads)
        self.wait = wait
        self.body_limit = body_limit

    async def __call__(self, scope, receive, send):
        if self.wsgi_app.loop is None:
            self.wsgi_app.loop = asyncio.get_running_loop()
            self.wsgi_app.pid = os.getpid()
        replay = await buffered_body(receive, self.body_limit)
        if replay is None:
            return
        if self.wait is None or not waits(scope):
            return await self.wsgi(scope, replay, send)
        first = replay.first
        scope = dict(scope, **{LOOP_WAITS: True})
        held = HeldAnswer(send)
        await self.wsgi(scope, replay, held)
        # Asked again only with the whole body at hand (a GET's is empty); the first run's thread and
        # database connection went back to their pools when its answer was complete.
        if held.wait is not None and not first["more_body"] and await self.wait(*held.wait):
            again = HeldAnswer(send)

            async def replay_again():
                return dict(first)

            replay_again.replays = True
            await self.wsgi(scope, replay_again, again)
            held = again
        await held.flush()


def _wait_for_position(position: int, timeout: float):
    from analytics.waiting import wait_for_position

    return wait_for_position(position, timeout=timeout)


application = ProtocolTypeRouter(
    {
        "http": HttpRouter(
            django_wsgi_app, _wait_for_position, threads=settings.WEB_THREADS,
            body_limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 65536,
        ),
        # The Origin must be exactly (scheme, host, port) an allowed one, so a page on another
        # port or scheme of the same host cannot ride an admin's cookie (realtime/auth.py).
        # No AuthMiddlewareStack: the consumer reads the session cookie itself and the hub checks the
        # sessions of handshakes arriving together in one batch (realtime/access.py verdicts), which also
        # keeps Channels' lazy session wrapper out of every send.
        "websocket": OriginCheck(TicketAuthMiddleware(URLRouter(websocket_urlpatterns))),
    }
)

# What this process imported (Django, DRF, Channels, pandas, the apps: about 160,000 objects the
# collector tracks) lives as long as the process. Frozen, a full collection walks only what requests
# made since: it took about 65 ms with them, every process's requests and sockets standing still
# meanwhile (a p99 nobody can tune away), and well under 1 ms without.
gc.freeze()
