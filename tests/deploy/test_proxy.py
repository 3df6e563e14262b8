"""The nginx config (deploy/nginx) in front of the web line: websockets, forwarded headers only from the proxy, slow clients cut off."""
import http.client
import json
import socket
import ssl
import time

import pytest
from websockets.sync.client import connect

from tests.deploy.proxy import BODY_TIMEOUT, HEADER_TIMEOUT, nginx_binary, start_proxy
from tests.services import redis_available, require
from tests.stack import Browserless, LiveStack, create_live_user, flush_test_redis, stack_env

pytestmark = [pytest.mark.e2e, pytest.mark.no_deadline, pytest.mark.needs_postgres, pytest.mark.needs_redis]

# Loopback has a whole /8: the test's clients connect from addresses of their own, so the web process
# can tell them from the proxy (127.0.0.1). Only INSIDER may see /readyz's checks (READYZ_DETAIL_NETWORKS):
# which address the application believes is the client is visible in the answer.
PROXY_ADDRESS = "127.0.0.1"
INSIDER = "127.0.0.5"
OUTSIDER = "127.0.0.9"
HSTS_SECONDS = "60"  # Strict-Transport-Security is only sent on requests Django believes came over HTTPS


@pytest.fixture(scope="module")
def proxy_pair(django_db_setup, tmp_path_factory):
    """The Procfile's web line trusting the proxy's address, and nginx with the shipped config in front: one pair
    for the module (booting them took most of each test's time; no test changes their configuration)."""
    require("nginx", nginx_binary() is not None)
    require("Redis", redis_available())
    flush_test_redis()
    env = stack_env(
        TRUSTED_PROXIES=f"{PROXY_ADDRESS}/32",
        READYZ_DETAIL_NETWORKS=f"{INSIDER}/32",
        DJANGO_HSTS_SECONDS=HSTS_SECONDS,
        DJANGO_SECURE_COOKIES="true",  # as in production: the cookies only travel over HTTPS
        WEB_CONCURRENCY="1",
    )
    work = tmp_path_factory.mktemp("proxied")
    stack = LiveStack(env=env, log_dir=work)
    try:
        stack.start_server()
        yield stack, start_proxy(stack, work)
    finally:
        stack.stop()
        flush_test_redis()


@pytest.fixture
def proxied(transactional_db, proxy_pair):
    """The module's pair, with an empty test database for each test; both still running after it."""
    stack, proxy = proxy_pair
    yield stack, proxy
    assert proxy.process.popen.poll() is None, proxy.process.output()
    assert stack.processes["uvicorn"].popen.poll() is None, stack.processes["uvicorn"].output()


def request(port, path, *, source, headers=None, method="GET", body=None, tls=None):
    """One request from `source` (a loopback address); returns (status, headers, body)."""
    if tls is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, source_address=(source, 0), timeout=15)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, source_address=(source, 0), timeout=15, context=tls)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def sees_readyz_detail(status_headers_body) -> bool:
    status, _, body = status_headers_body
    assert status == 200, body
    return "checks" in json.loads(body)


def test_it_passes_the_websocket_upgrade_through_to_the_dashboard_stream(proxied):
    stack, proxy = proxied
    logged_before = len(proxy.process.output())  # the module's nginx: only this test's part of its log counts
    create_live_user("proxy-admin", "proxy-password-123")
    status, _, body = request(
        proxy.tls_port, "/api/auth/token/", source=INSIDER, tls=proxy.client_tls, method="POST",
        body=json.dumps({"username": "proxy-admin", "password": "proxy-password-123"}),
        headers={"Content-Type": "application/json"},
    )
    assert status == 200, body
    access = json.loads(body)["access"]
    status, _, body = request(
        proxy.tls_port, "/api/realtime/tickets/", source=INSIDER, tls=proxy.client_tls, method="POST",
        headers={"Authorization": f"Bearer {access}"},
    )
    assert status == 201, body
    ticket = json.loads(body)["ticket"]

    # The browser's origin is the proxy's https origin: the handshake is accepted only because the web
    # process believes the proxy's X-Forwarded-Proto (it reached the server as wss).
    url = f"wss://127.0.0.1:{proxy.tls_port}/ws/dashboard/?ticket={ticket}"
    with connect(url, origin=proxy.origin, ssl=proxy.client_tls, open_timeout=15) as ws:
        assert json.loads(ws.recv(timeout=15))["type"] == "snapshot"
        ws.send('{"type":"ping"}')
        assert json.loads(ws.recv(timeout=10)) == {"type": "pong"}
    # The ticket never reaches the proxy's access log (stdout): only the path does.
    access_log = proxy.process.output()[logged_before:]
    assert "/ws/dashboard/" in access_log and ticket not in proxy.process.output()


def test_it_signs_a_browser_in_through_the_proxy_with_secure_cookies_and_csrf_checks(proxied):
    # Django sees the proxy's HTTPS: Secure cookies are set, and the CSRF origin check compares the
    # browser's https Origin with an https request (it fails when the scheme is lost on the way).
    stack, proxy = proxied
    create_live_user("proxy-browser", "proxy-password-123")
    browser = Browserless(proxy.origin)
    browser.http.trust_env = False  # REQUESTS_CA_BUNDLE would replace the verify below
    browser.http.verify = str(proxy.certificate)
    browser.login("proxy-browser", "proxy-password-123")
    assert all(cookie.secure for cookie in browser.http.cookies)
    assert browser.get("/dashboard/").status_code == 200
    created = browser.http.post(
        f"{proxy.origin}/api/realtime/tickets/", timeout=15,
        headers={"X-CSRFToken": browser.csrf_token, "Origin": proxy.origin, "Referer": f"{proxy.origin}/dashboard/"},
    )
    assert created.status_code == 201, created.text
    forged = browser.http.post(
        f"{proxy.origin}/api/realtime/tickets/", timeout=15,
        headers={"X-CSRFToken": browser.csrf_token, "Origin": "https://evil.example", "Referer": "https://evil.example/"},
    )
    assert forged.status_code == 403


def test_it_believes_x_forwarded_for_only_when_the_proxy_wrote_it(proxied):
    stack, proxy = proxied
    # The observable works: the insider, connecting directly, sees the detail; an outsider does not.
    assert sees_readyz_detail(request(stack.port, "/readyz", source=INSIDER))
    assert not sees_readyz_detail(request(stack.port, "/readyz", source=OUTSIDER))
    # Straight to the web process, an outsider claiming to be the insider is not believed.
    assert not sees_readyz_detail(request(stack.port, "/readyz", source=OUTSIDER, headers={"X-Forwarded-For": INSIDER}))
    # Through the proxy, the web process's peer is the proxy: the address the proxy wrote is the client's.
    assert sees_readyz_detail(request(proxy.tls_port, "/readyz", source=INSIDER, tls=proxy.client_tls))
    # The proxy replaces what a client wrote, so the same claim through the proxy fails too.
    assert not sees_readyz_detail(
        request(proxy.tls_port, "/readyz", source=OUTSIDER, tls=proxy.client_tls, headers={"X-Forwarded-For": INSIDER})
    )


def test_it_believes_x_forwarded_proto_only_when_the_proxy_wrote_it(proxied):
    stack, proxy = proxied
    # Straight to the web process, a client claiming HTTPS is not believed: no HSTS on plain HTTP.
    _, headers, _ = request(stack.port, "/healthz", source=OUTSIDER, headers={"X-Forwarded-Proto": "https"})
    assert headers.get("Strict-Transport-Security") is None
    # Through the proxy's TLS listener the request is HTTPS, whatever the client claims.
    for claim in ({}, {"X-Forwarded-Proto": "http"}):
        _, headers, _ = request(proxy.tls_port, "/healthz", source=OUTSIDER, tls=proxy.client_tls, headers=claim)
        assert headers.get("Strict-Transport-Security") == f"max-age={HSTS_SECONDS}"


def test_it_redirects_plain_http_to_https_without_asking_the_application(proxied):
    stack, proxy = proxied
    status, headers, _ = request(proxy.http_port, "/dashboard/?week=1", source=OUTSIDER, headers={"Host": "ledger.example.com"})
    assert status == 301
    assert headers["Location"] == "https://ledger.example.com/dashboard/?week=1"


def test_it_refuses_a_body_over_the_applications_limit_before_reading_it(proxied):
    stack, proxy = proxied
    with open_tls(proxy) as sock:
        sock.sendall(b"POST /api/transactions/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1048577\r\n\r\n")
        sock.settimeout(10)
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")


def time_until_closed(sock: socket.socket, limit: float) -> tuple[float, bytes]:
    """Seconds until the peer closes `sock` (reading whatever it sends first); fails after `limit`."""
    sock.settimeout(limit)
    started = time.monotonic()
    received = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, ssl.SSLEOFError):
            break
        except (TimeoutError, socket.timeout):
            raise AssertionError(f"the connection was still open after {limit} s; received {received!r}") from None
        if not chunk:
            break
        received += chunk
    return time.monotonic() - started, received


def open_tls(proxy) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", proxy.tls_port), timeout=10, source_address=(OUTSIDER, 0))
    return proxy.client_tls.wrap_socket(raw, server_hostname="127.0.0.1")


def test_it_closes_a_connection_whose_request_head_does_not_arrive_in_time(proxied):
    stack, proxy = proxied
    with open_tls(proxy) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # ... and the rest never comes
        waited, received = time_until_closed(sock, limit=HEADER_TIMEOUT + 10)
    assert HEADER_TIMEOUT * 0.8 <= waited <= HEADER_TIMEOUT + 5
    assert received == b"" or received.startswith(b"HTTP/1.1 408"), received


def test_it_closes_a_connection_whose_request_body_stalls(proxied):
    stack, proxy = proxied
    with open_tls(proxy) as sock:
        sock.sendall(
            b"POST /api/auth/token/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{\"username\": "
        )
        waited, received = time_until_closed(sock, limit=BODY_TIMEOUT + 10)
    assert BODY_TIMEOUT * 0.8 <= waited <= BODY_TIMEOUT + 5
    assert received == b"" or received.startswith(b"HTTP/1.1 408"), received
