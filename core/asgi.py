"""ASGI entry point: one port for everything; HTTP through Django's WSGI handler in a thread pool, websockets through Channels.

Django's ASGI handler runs every request's sync code (middleware, DRF, the ORM) on a fresh executor
thread and hops between the loop and that thread at each step: it measured several times slower
per request than the WSGI handler. So plain HTTP goes to Django's WSGI handler on a bounded pool of
threads (a2wsgi), and the ASGI handler keeps only what must not hold a thread while it waits: the
weekly income reads that wait for the projection (`min_position`, `at`; analytics/api.py).
Websockets go to the Channels consumer stack, whatever the path.
"""
import asyncio
import os
from urllib.parse import parse_qsl

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
django_asgi_app = get_asgi_application()

from a2wsgi import WSGIMiddleware  # noqa: E402
from asgiref.sync import SyncToAsync  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from core.wsgi import application as django_wsgi_app  # noqa: E402
from realtime.auth import OriginCheck, TicketAuthMiddleware  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402

# Requests that wait on the event loop (analytics/api.py weekly_income_view) and the query keys that make them wait.
WAITING_PATHS = {"/api/analytics/weekly-income/": frozenset({b"min_position", b"at"})}


def waits(scope) -> bool:
    """Whether this HTTP request may wait for the projection: such requests keep Django's ASGI path."""
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

    return replay


class ServerLoopWSGI:
    """Django's WSGI handler, told in each thread which event loop is the server's.

    asgiref's async_to_sync from such a thread then runs on the server's loop, as it did from
    Django's ASGI threads, instead of on a new loop per call: the in-memory channel layer of
    embedded mode (`make run`) lives on that loop (realtime/broadcast.py), and an async view
    reached without waiting (weekly income without min_position) awaits there.
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


class HttpRouter:
    """Plain HTTP to the WSGI handler on a thread pool (body read first, on the loop); the waiting reads to the ASGI handler."""

    def __init__(self, wsgi_app, asgi_app, threads: int, body_limit: int):
        self.wsgi_app = ServerLoopWSGI(wsgi_app)
        self.wsgi = WSGIMiddleware(self.wsgi_app, workers=threads)
        self.asgi = asgi_app
        self.body_limit = body_limit

    async def __call__(self, scope, receive, send):
        if self.wsgi_app.loop is None:
            self.wsgi_app.loop = asyncio.get_running_loop()
            self.wsgi_app.pid = os.getpid()
        if waits(scope):
            return await self.asgi(scope, receive, send)
        replay = await buffered_body(receive, self.body_limit)
        if replay is not None:
            await self.wsgi(scope, replay, send)


application = ProtocolTypeRouter(
    {
        "http": HttpRouter(
            django_wsgi_app, django_asgi_app, threads=settings.WEB_THREADS, body_limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 65536
        ),
        # The Origin must be exactly (scheme, host, port) an allowed one, so a page on another
        # port or scheme of the same host cannot ride an admin's cookie (realtime/auth.py).
        # No AuthMiddlewareStack: the consumer reads the session cookie itself and the hub checks the
        # sessions of handshakes arriving together in one batch (realtime/access.py verdicts), which also
        # keeps Channels' lazy session wrapper out of every send.
        "websocket": OriginCheck(TicketAuthMiddleware(URLRouter(websocket_urlpatterns))),
    }
)
