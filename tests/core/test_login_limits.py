"""Password guessing is slowed on every login surface, per account and per client address (django-axes + core.clientip)."""
import pytest
from django.contrib.auth import authenticate
from django.test import Client
from rest_framework.test import APIClient

from core.clientip import client_ip, parse_networks

pytestmark = pytest.mark.django_db
TOKEN = "/api/auth/token/"
PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def _fresh_throttle(fresh_throttle):
    """Every test here starts with no throttle or lockout counts (tests/core/conftest.py)."""


def obtain(username="boss", password="wrong", **extra):
    return APIClient().post(TOKEN, {"username": username, "password": password}, format="json", **extra)


def assert_locked_out(response):
    assert response.status_code == 429, response.content[:300]
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["code"] == "login_locked_out" and body["status"] == 429
    assert int(response["Retry-After"]) == 15 * 60


class FakeRequest:
    def __init__(self, remote_addr, forwarded=None):
        self.META = {"REMOTE_ADDR": remote_addr}
        if forwarded is not None:
            self.META["HTTP_X_FORWARDED_FOR"] = forwarded


# --- the client address -------------------------------------------------------------------


def test_it_takes_remote_addr_and_ignores_x_forwarded_for_without_trusted_proxies(settings):
    settings.TRUSTED_PROXIES = ()
    assert client_ip(FakeRequest("198.51.100.7", "1.2.3.4")) == "198.51.100.7"


def test_it_takes_the_right_most_untrusted_forwarded_entry_behind_a_trusted_proxy(settings):
    settings.TRUSTED_PROXIES = parse_networks("TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1")
    # The client wrote "1.2.3.4" itself; the outer proxy (192.0.2.1) appended the real peer.
    assert client_ip(FakeRequest("10.0.0.5", "1.2.3.4, 203.0.113.9, 192.0.2.1")) == "203.0.113.9"
    assert client_ip(FakeRequest("10.0.0.5", "203.0.113.9:51234")) == "203.0.113.9"
    assert client_ip(FakeRequest("10.0.0.5")) == "10.0.0.5"
    assert client_ip(FakeRequest("10.0.0.5", "not-an-address")) == "10.0.0.5"
    assert client_ip(FakeRequest("::ffff:198.51.100.7", "1.2.3.4")) == "198.51.100.7"


def test_it_refuses_a_trusted_proxy_list_that_is_not_addresses():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="TRUSTED_PROXIES"):
        parse_networks("TRUSTED_PROXIES", "10.0.0.0/8,proxy.internal")
    assert parse_networks("TRUSTED_PROXIES", "") == ()


# --- the token endpoint ---------------------------------------------------------------------


def test_it_locks_the_token_endpoint_after_five_failures_even_for_the_right_password(admin_user):
    statuses = [obtain().status_code for _ in range(4)]
    assert statuses == [401] * 4
    assert_locked_out(obtain())
    assert_locked_out(obtain(password="boss-password-123"))


def test_it_does_not_let_rotating_x_forwarded_for_from_an_untrusted_peer_evade_the_address_lockout(admin_user, settings):
    settings.TRUSTED_PROXIES = ()
    # Other usernames each time: only the address can tie these guesses together.
    for n in range(4):
        assert obtain(username=f"user{n}", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code == 401
    assert_locked_out(obtain(username="user9", HTTP_X_FORWARDED_FOR="203.0.113.99"))
    assert_locked_out(obtain(password="boss-password-123", HTTP_X_FORWARDED_FOR="198.51.100.1"))


def test_it_does_not_let_rotating_x_forwarded_for_evade_the_token_throttle(admin_user, settings):
    settings.AXES_FAILURE_LIMIT = 1000  # the throttle alone
    settings.TRUSTED_PROXIES = ()
    statuses = [obtain(username=f"user{n}", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code for n in range(11)]
    assert statuses[:10] == [401] * 10
    assert statuses[10] == 429


def test_it_uses_the_forwarded_address_from_a_trusted_proxy(admin_user, settings):
    settings.TRUSTED_PROXIES = parse_networks("TRUSTED_PROXIES", "10.0.0.1")
    via_proxy = {"REMOTE_ADDR": "10.0.0.1"}
    for n in range(5):
        obtain(username=f"user{n}", HTTP_X_FORWARDED_FOR="203.0.113.5", **via_proxy)
    assert_locked_out(obtain(password="boss-password-123", HTTP_X_FORWARDED_FOR="203.0.113.5", **via_proxy))
    # Another client behind the same proxy is not locked out, and neither is the proxy's own address.
    assert obtain(password="boss-password-123", HTTP_X_FORWARDED_FOR="203.0.113.6", **via_proxy).status_code == 200
    assert obtain(password="boss-password-123", **via_proxy).status_code == 200


def test_it_locks_an_account_guessed_from_many_addresses(admin_user):
    for n in range(5):
        obtain(REMOTE_ADDR=f"198.51.100.{n}")
    assert_locked_out(obtain(password="boss-password-123", REMOTE_ADDR="198.51.100.200"))


def test_it_answers_an_absurd_username_without_a_server_error(admin_user):
    assert obtain(username="x" * 5000).status_code == 401


# --- the HTML logins ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_it_locks_the_html_login_after_five_failures_with_a_plain_page(admin_user, path):
    browser = Client()
    for _ in range(4):
        assert browser.post(path, {"username": "boss", "password": "wrong"}).status_code == 200
    locked = browser.post(path, {"username": "boss", "password": "wrong"})
    assert locked.status_code == 429
    assert locked["Content-Type"].startswith("text/html")
    assert "Too many failed sign-ins" in locked.content.decode()
    right = browser.post(path, {"username": "boss", "password": "boss-password-123"})
    assert right.status_code == 429
    assert "_auth_user_id" not in browser.session


def test_it_counts_failures_on_every_surface_together(admin_user):
    browser = Client()
    browser.post("/accounts/login/", {"username": "boss", "password": "wrong"})
    browser.post("/admin/login/", {"username": "boss", "password": "wrong"})
    for _ in range(3):
        obtain()
    assert browser.post("/accounts/login/", {"username": "boss", "password": "boss-password-123"}).status_code == 429


def test_it_still_authenticates_code_that_passes_no_request(admin_user):
    # Management commands and tests call authenticate() without a request; they are no login surface.
    assert authenticate(username="boss", password="boss-password-123") == admin_user


def test_it_locks_the_html_login_under_asgi_too(admin_user):
    # Under uvicorn the middleware chain runs async: axes' async path must still answer the lockout page.
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    browser = AsyncClient()
    post = async_to_sync(browser.post)
    for _ in range(4):
        assert post("/accounts/login/", {"username": "boss", "password": "wrong"}).status_code == 200
    assert post("/accounts/login/", {"username": "boss", "password": "wrong"}).status_code == 429
    locked = post("/accounts/login/", {"username": "boss", "password": "boss-password-123"})
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.content.decode()
    assert locked["Content-Security-Policy"]
    api = async_to_sync(browser.post)(TOKEN, {"username": "boss", "password": "boss-password-123"}, content_type="application/json")
    assert api.status_code == 429 and api.json()["code"] == "login_locked_out"
    assert api["Cache-Control"] == "no-store"
