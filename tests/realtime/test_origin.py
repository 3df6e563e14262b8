"""The websocket Origin must equal an allowed origin exactly: scheme, host and port."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.origins import parse_origins
from tests.realtime.support import handshake_refused, logged_in_sync, snapshot_of, socket

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def origin(value: str):
    return (b"origin", value.encode())


def host(value: str):
    return (b"host", value.encode())


@pytest.fixture
def admin_cookie(admin_user, client_for):
    return logged_in_sync(client_for, admin_user)[1]


@pytest.fixture(autouse=True)
def _only_the_servers_own_origin(settings):
    settings.WEBSOCKET_ALLOWED_ORIGINS = []
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "admin.example.com"]


@pytest.mark.parametrize(
    "page",
    [
        "http://127.0.0.1:8139",  # another service on the same host
        "https://127.0.0.1:8131",  # another scheme
        "http://127.0.0.1",  # the default port is another port
        "http://localhost:8131",  # another host name for the same machine
        "null",  # a sandboxed iframe, a file:// page
        "http://127.0.0.1:8131/",  # not an origin
    ],
)
async def test_it_refuses_a_page_on_another_port_scheme_or_host_of_the_same_machine(admin_cookie, page):
    assert await handshake_refused(origin(page), host("127.0.0.1:8131"), admin_cookie)


async def test_it_accepts_a_page_of_the_server_itself_on_any_port_without_configuration(admin_cookie):
    for port in ("8131", "8000"):
        async with socket(origin(f"http://127.0.0.1:{port}"), host(f"127.0.0.1:{port}"), admin_cookie) as ws:
            await snapshot_of(ws)


async def test_it_takes_wss_as_https_for_the_servers_own_origin(admin_cookie):
    async with socket(origin("https://admin.example.com"), host("admin.example.com"), admin_cookie, scheme="wss") as ws:
        await snapshot_of(ws)
    assert await handshake_refused(origin("http://admin.example.com"), host("admin.example.com"), admin_cookie, scheme="wss")


async def test_it_trusts_the_proxys_scheme_only_when_behind_a_proxy(admin_cookie, settings):
    headers = (origin("https://admin.example.com"), host("admin.example.com"), (b"x-forwarded-proto", b"https"), admin_cookie)
    assert await handshake_refused(*headers)
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    async with socket(*headers) as ws:
        await snapshot_of(ws)


async def test_it_does_not_take_a_host_it_does_not_serve_as_its_own_origin(admin_cookie):
    # DNS rebinding: evil.example resolves to us, the page and the Host header agree.
    assert await handshake_refused(origin("http://evil.example:8131"), host("evil.example:8131"), admin_cookie)


async def test_it_accepts_a_configured_origin_exactly(admin_cookie, settings):
    settings.WEBSOCKET_ALLOWED_ORIGINS = parse_origins("WEBSOCKET_ALLOWED_ORIGINS", "https://admin.example.com:8443")
    async with socket(origin("https://ADMIN.example.com:8443"), host("10.0.0.5:8000"), admin_cookie) as ws:
        await snapshot_of(ws)
    assert await handshake_refused(origin("https://admin.example.com"), host("10.0.0.5:8000"), admin_cookie)
    assert await handshake_refused(origin("http://admin.example.com:8443"), host("10.0.0.5:8000"), admin_cookie)


async def test_it_refuses_two_origin_headers(admin_cookie):
    assert await handshake_refused(origin("http://127.0.0.1:8131"), origin("http://127.0.0.1:8131"), host("127.0.0.1:8131"), admin_cookie)


def test_it_normalizes_configured_origins():
    assert parse_origins("X", " https://Admin.Example.com:443 , http://127.0.0.1:8000,http://[::1]:80") == [
        "https://admin.example.com",
        "http://127.0.0.1:8000",
        "http://[::1]",
    ]
    assert parse_origins("X", None) == [] and parse_origins("X", "") == []


@pytest.mark.parametrize(
    "value",
    [
        "admin.example.com",
        "https://admin.example.com/",
        "https://admin.example.com/dashboard",
        "ftp://admin.example.com",
        "ws://admin.example.com",
        "https://user@admin.example.com",
        "https://admin.example.com:99999",
        "https://admin.example.com?x=1",
        "*",
        "https://a.example.com,,https://b.example.com",
        "https://",
    ],
)
def test_it_refuses_a_configured_origin_that_is_not_scheme_host_and_port(value):
    with pytest.raises(ImproperlyConfigured, match="WEBSOCKET_ALLOWED_ORIGINS"):
        parse_origins("WEBSOCKET_ALLOWED_ORIGINS", value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEBSOCKET_ALLOWED_ORIGINS", "https://admin.example.com/"),
        ("REALTIME_MAX_SOCKETS_PER_USER", "0"),
        ("REALTIME_ACCESS_RECHECK_SECONDS", "soon"),
        ("REALTIME_VIEW_PERMISSION", "view everything"),
    ],
)
def test_it_stops_at_start_up_on_a_bad_websocket_setting_naming_it(name, value):
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="core.settings", DJANGO_SECRET_KEY="x" * 50, **{name: value})
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and name in result.stderr.strip().splitlines()[-1]
