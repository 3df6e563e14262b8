"""Production settings pass Django's deployment checklist, and secrets stay out of logs."""
import logging
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "PATH": "/usr/bin:/bin",
    "DJANGO_SETTINGS_MODULE": "core.settings",
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "k3y-for-the-deploy-check-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJ",
    "DJANGO_ALLOWED_HOSTS": "ledger.example.com",
    "DJANGO_SSL_REDIRECT": "true",
    "DJANGO_HSTS_SECONDS": "31536000",
    "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "true",
    "DJANGO_HSTS_PRELOAD": "true",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
}


def test_check_deploy_is_clean_with_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=PRODUCTION, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db
def test_no_password_token_or_ticket_reaches_a_log_line(client, admin_user, caplog):
    from rest_framework.test import APIClient

    caplog.set_level(logging.DEBUG)
    api = APIClient()
    tokens = api.post("/api/auth/token/", {"username": "boss", "password": "boss-password-123"}, format="json").json()
    api.post("/api/auth/token/", {"username": "boss", "password": "wrong-secret-pw"}, format="json")
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    ticket = api.post("/api/realtime/tickets/").json()["ticket"]
    api.credentials(HTTP_AUTHORIZATION="Bearer forged.token.value")
    api.get("/api/transactions/")
    logged = caplog.text
    for secret in ("boss-password-123", "wrong-secret-pw", tokens["access"], tokens["refresh"], ticket, "forged.token.value"):
        assert secret not in logged
    assert "Unauthorized: /api" in logged  # the failed requests were logged, just not their secrets


# --- core/asgi.py: one port, plain HTTP through Django's WSGI handler, waiting reads through its ASGI handler ---


def http_scope(path: str, query: bytes = b"") -> dict:
    return {"type": "http", "http_version": "1.1", "method": "GET", "path": path, "query_string": query, "headers": []}


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
def test_only_the_reads_that_wait_for_the_projection_take_the_asgi_path(path, query, waits):
    from core import asgi

    assert asgi.waits(http_scope(path, query)) is waits


def test_the_router_hands_each_request_to_its_handler():
    import asyncio

    from core.asgi import HttpRouter

    seen = []

    def wsgi_app(environ, start_response):
        seen.append(("wsgi", environ["PATH_INFO"], environ["wsgi.input"].read()))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    async def asgi_app(scope, receive, send):
        seen.append(("asgi", scope["path"], (await receive())["body"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def call(router, scope, chunks):
        messages = iter([{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)])
        sent = []

        async def receive():
            return next(messages)

        async def send(message):
            sent.append(message)

        await router(scope, receive, send)
        return sent

    async def main():
        router = HttpRouter(wsgi_app, asgi_app, threads=1, body_limit=1024)
        await call(router, http_scope("/api/transactions/"), [b'{"a"', b": 1}"])
        await call(router, http_scope("/api/analytics/weekly-income/", b"min_position=3"), [b""])
        return await call(router, http_scope("/healthz"), [b""])

    sent = asyncio.run(asyncio.wait_for(main(), 10))
    assert seen == [("wsgi", "/api/transactions/", b'{"a": 1}'), ("asgi", "/api/analytics/weekly-income/", b""), ("wsgi", "/healthz", b"")]
    assert sent[0]["status"] == 200 and b"".join(m.get("body", b"") for m in sent[1:]) == b"ok"


def test_a_client_gone_before_its_body_arrived_runs_nothing():
    import asyncio

    from core.asgi import buffered_body

    messages = iter([{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}])

    async def receive():
        return next(messages)

    assert asyncio.run(asyncio.wait_for(buffered_body(receive, limit=1024), 5)) is None


def test_a_body_past_the_limit_streams_the_rest():
    import asyncio

    from core.asgi import buffered_body

    chunks = [{"type": "http.request", "body": b"x" * 600, "more_body": True} for _ in range(3)] + [
        {"type": "http.request", "body": b"end", "more_body": False}
    ]
    messages = iter(chunks)

    async def receive():
        return next(messages)

    async def main():
        replay = await buffered_body(receive, limit=1000)
        first = await replay()
        rest = [await replay(), await replay()]
        return first, rest

    first, rest = asyncio.run(asyncio.wait_for(main(), 5))
    assert first == {"type": "http.request", "body": b"x" * 1200, "more_body": True}
    assert [m["body"] for m in rest] == [b"x" * 600, b"end"]


def test_async_to_sync_in_a_request_thread_runs_on_the_servers_loop():
    # Embedded mode's in-memory channel layer lives on the server's loop (realtime/broadcast.py).
    import asyncio

    from asgiref.sync import async_to_sync

    from core.asgi import HttpRouter

    loops = []

    async def where():
        return asyncio.get_running_loop()

    def wsgi_app(environ, start_response):
        loops.append(async_to_sync(where)())
        start_response("200 OK", [])
        return [b""]

    async def main():
        router = HttpRouter(wsgi_app, None, threads=1, body_limit=1024)
        messages = iter([{"type": "http.request", "body": b"", "more_body": False}])

        async def receive():
            return next(messages)

        async def send(message):
            pass

        await router(http_scope("/healthz"), receive, send)
        return asyncio.get_running_loop()

    server_loop = asyncio.run(asyncio.wait_for(main(), 10))
    assert loops == [server_loop]
