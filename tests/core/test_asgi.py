"""core/asgi.py: one port; plain HTTP through the WSGI handler on threads with its whole body, the router waits for the projection on the loop, and answers cross from the thread in one piece."""
import asyncio

import pytest

from core import asgi
from core.request_threads import LOOP_WAITS, WAIT_HEADER


def http_scope(path: str, query: bytes = b"", method: str = "GET") -> dict:
    return {"type": "http", "http_version": "1.1", "method": method, "path": path, "query_string": query, "headers": []}


async def call(router, scope, chunks=(b"",)):
    """Run one request through `router`: the messages it sent, in order."""
    messages = iter([{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)])
    sent = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    await router(scope, receive, send)
    return sent


def body_of(sent) -> bytes:
    return b"".join(m.get("body", b"") for m in sent[1:])


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 10))


class BehindOnce:
    """A WSGI app standing in for the weekly income view: behind (503, marked) on its first run, 200 after."""

    def __init__(self):
        self.runs = []

    def __call__(self, environ, start_response):
        marked = bool(environ["asgi.scope"].get(LOOP_WAITS))
        self.runs.append(marked)
        if len(self.runs) == 1:
            headers = [("Content-Type", "application/problem+json"), ("Retry-After", "1")]
            if marked:
                headers.append((WAIT_HEADER.decode(), "42 0.5"))
            start_response("503 Service Unavailable", headers)
            return [b'{"code": "projection_behind"}']
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"as_of": 42}']


def test_it_waits_for_the_position_on_the_loop_and_answers_the_second_run():
    app, waited = BehindOnce(), []

    async def wait(position, timeout):
        waited.append((position, timeout))
        return True

    router = asgi.HttpRouter(app, wait, threads=1, body_limit=1024)
    sent = run(call(router, http_scope("/api/analytics/weekly-income/", b"min_position=42")))
    assert waited == [(42, 0.5)]
    assert app.runs == [True, True]
    assert sent[0]["status"] == 200 and body_of(sent) == b'{"as_of": 42}'


def test_a_wait_that_times_out_sends_the_kept_answer_without_the_internal_header():
    app = BehindOnce()

    async def wait(position, timeout):
        return False

    router = asgi.HttpRouter(app, wait, threads=1, body_limit=1024)
    sent = run(call(router, http_scope("/api/analytics/weekly-income/", b"at=42")))
    assert app.runs == [True]
    assert sent[0]["status"] == 503
    names = [name for name, _ in sent[0]["headers"]]
    assert WAIT_HEADER not in names and b"retry-after" in names
    assert body_of(sent) == b'{"code": "projection_behind"}'


def test_only_the_reads_that_may_wait_are_marked_for_the_loop_to_wait():
    app = BehindOnce()

    async def wait(position, timeout):
        raise AssertionError("nothing was marked to wait")

    router = asgi.HttpRouter(app, wait, threads=1, body_limit=1024)
    sent = run(call(router, http_scope("/api/analytics/weekly-income/", b"currency=EUR")))
    assert app.runs == [False] and sent[0]["status"] == 503


def test_a_small_answer_crosses_to_the_loop_once_the_thread_is_done():
    crossed = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"one "
        # Nothing has reached the client yet: the whole answer goes over in one piece.
        crossed.append(len(sent))
        yield b"two"

    sent = []

    async def main():
        router = asgi.HttpRouter(app, None, threads=1, body_limit=1024)
        messages = iter([{"type": "http.request", "body": b"", "more_body": False}])

        async def receive():
            return next(messages)

        async def send(message):
            sent.append(message)

        await router(http_scope("/healthz"), receive, send)

    run(main())
    assert crossed == [0]
    assert sent[0]["status"] == 200 and body_of(sent) == b"one two"


def test_a_long_answer_streams_in_order():
    chunk = b"x" * 65536
    count = asgi.RESPONSE_BUFFER // len(chunk) * 3

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/csv")])
        for i in range(count):
            yield bytes([65 + i % 26]) + chunk

    router = asgi.HttpRouter(app, None, threads=1, body_limit=1024)
    sent = run(call(router, http_scope("/api/analytics/weekly-income/", b"format=csv")))
    assert sent[0]["status"] == 200
    assert body_of(sent) == b"".join(bytes([65 + i % 26]) + chunk for i in range(count))


@pytest.mark.parametrize("chunks", [[b'{"a"', b": 1}"], [b"y" * 700, b"z" * 700, b"end"]], ids=["within the limit", "past the limit"])
def test_the_request_body_reaches_the_thread_once_and_whole(chunks):
    seen = []

    def app(environ, start_response):
        seen.append(environ["wsgi.input"].read())
        start_response("200 OK", [])
        return [b""]

    router = asgi.HttpRouter(app, None, threads=1, body_limit=1000)
    run(call(router, http_scope("/api/transactions/", method="POST"), chunks))
    assert seen == [b"".join(chunks)]


# --- one port, every plain HTTP request through Django's WSGI handler on a thread pool ---


@pytest.mark.parametrize(
    ("path", "query", "waits"),
    [
        ("/api/analytics/weekly-income/", b"min_position=12", True),
        ("/api/analytics/weekly-income/", b"currency=EUR&at=7", True),
        ("/api/analytics/weekly-income/", b"min_position=", True),
        ("/api/analytics/weekly-income/", b"currency=EUR", False),
        ("/api/analytics/weekly-income/", b"", False),
        ("/api/transactions/", b"min_position=12", False),
        ("/healthz", b"", False),
    ],
)
def test_only_the_reads_that_may_wait_for_the_projection_are_marked_to_wait(path, query, waits):
    assert asgi.waits(http_scope(path, query)) is waits


def test_the_router_hands_every_request_to_the_wsgi_app_with_its_whole_body():
    # Reads that may wait for the projection run there too, marked so the router waits on the loop.
    seen = []

    def wsgi_app(environ, start_response):
        seen.append((environ["PATH_INFO"], environ["wsgi.input"].read(), bool(environ["asgi.scope"].get(LOOP_WAITS))))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    async def wait(position, timeout):
        raise AssertionError("an answer that is not 'behind' never waits")

    async def main():
        router = asgi.HttpRouter(wsgi_app, wait, threads=1, body_limit=1024)
        await call(router, http_scope("/api/transactions/"), [b'{"a"', b": 1}"])
        await call(router, http_scope("/api/analytics/weekly-income/", b"min_position=3"))
        return await call(router, http_scope("/healthz"))

    sent = run(main())
    assert seen == [("/api/transactions/", b'{"a": 1}', False), ("/api/analytics/weekly-income/", b"", True), ("/healthz", b"", False)]
    assert sent[0]["status"] == 200 and body_of(sent) == b"ok"


def test_a_client_gone_before_its_body_arrived_runs_nothing():
    messages = iter([{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}])

    async def receive():
        return next(messages)

    assert run(asgi.buffered_body(receive, limit=1024)) is None


def test_a_body_past_the_limit_streams_the_rest():
    chunks = [{"type": "http.request", "body": b"x" * 600, "more_body": True} for _ in range(3)] + [
        {"type": "http.request", "body": b"end", "more_body": False}
    ]
    messages = iter(chunks)

    async def receive():
        return next(messages)

    async def main():
        replay = await asgi.buffered_body(receive, limit=1000)
        first = await replay()
        rest = [await replay(), await replay()]
        return first, rest

    first, rest = run(main())
    assert first == {"type": "http.request", "body": b"x" * 1200, "more_body": True}
    assert [m["body"] for m in rest] == [b"x" * 600, b"end"]


def test_async_to_sync_in_a_request_thread_runs_on_the_servers_loop():
    # Embedded mode's in-memory channel layer lives on the server's loop (realtime/broadcast.py).
    from asgiref.sync import async_to_sync

    loops = []

    async def where():
        return asyncio.get_running_loop()

    def wsgi_app(environ, start_response):
        loops.append(async_to_sync(where)())
        start_response("200 OK", [])
        return [b""]

    async def main():
        await call(asgi.HttpRouter(wsgi_app, None, threads=1, body_limit=1024), http_scope("/healthz"))
        return asyncio.get_running_loop()

    server_loop = run(main())
    assert loops == [server_loop]


def test_it_freezes_what_the_web_process_imported_out_of_the_garbage_collector():
    import subprocess
    import sys

    from django.conf import settings

    # A process of its own, as uvicorn's workers import the application: what this test process
    # froze or collected before says nothing about it.
    probe = ("import gc, core.asgi; frozen = gc.get_freeze_count(); "
             "print(frozen, len(gc.get_objects()))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True,
                         cwd=settings.BASE_DIR).stdout.split()
    frozen, still_tracked = int(out[0]), int(out[1])
    # Everything imported is frozen; what the collector still walks is the little made after.
    assert frozen > 50_000 and still_tracked < frozen / 20
