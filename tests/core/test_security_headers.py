"""Content-Security-Policy on every HTML page, no inline code on ours, and Cache-Control: no-store on every /api/ answer."""
import base64
import hashlib
import re

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttle(fresh_throttle):
    """Every test here starts with no throttle or lockout counts (tests/core/conftest.py)."""


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


def sha256_source(text: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL)
INLINE_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.DOTALL)


def assert_strict(directives):
    for name in ("script-src", "style-src"):
        assert "'unsafe-inline'" not in directives[name] and "'unsafe-eval'" not in directives[name], directives
    assert directives["object-src"] == ["'none'"] and directives["frame-ancestors"] == ["'none'"]


def test_it_sends_a_strict_policy_on_the_dashboard_and_the_page_needs_no_inline_code(client, admin_user):
    client.force_login(admin_user)
    response = client.get("/dashboard/")
    assert response.status_code == 200
    assert_strict(policy(response))
    html = response.content.decode()
    assert not INLINE_SCRIPT.findall(html) and not INLINE_STYLE.findall(html)
    assert not re.search(r"\sstyle=", html) and not re.search(r"\son[a-z]+=", html)


def test_it_sets_styles_from_the_dashboard_script_through_the_cssom_not_a_style_attribute():
    from pathlib import Path

    source = (Path(__file__).resolve().parents[2] / "dashboard_ui/static/dashboard_ui/js/dashboard.js").read_text()
    helper = source[source.index("function h(") : source.index("function flash(")]
    # A style="" attribute set from script is refused by style-src 'self'; el.style is not.
    assert 'key === "style") el.style.cssText' in helper


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_it_sends_a_strict_policy_on_the_login_pages(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert_strict(policy(response))
    assert not INLINE_SCRIPT.findall(response.content.decode())


def test_it_sends_a_policy_on_the_admin(client, admin_user):
    client.force_login(admin_user)
    response = client.get("/admin/transactions/transaction/")
    assert response.status_code == 200
    assert_strict(policy(response))


def test_it_allows_exactly_the_swagger_pages_own_inline_script_and_style_by_hash(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    directives = policy(response)
    html = response.content.decode()
    scripts, styles = INLINE_SCRIPT.findall(html), INLINE_STYLE.findall(html)
    assert scripts and styles
    for body in scripts:
        assert sha256_source(body) in directives["script-src"], directives["script-src"]
    for body in styles:
        assert sha256_source(body) in directives["style-src"]
    assert "'unsafe-inline'" not in directives["script-src"] and "'unsafe-inline'" not in directives["style-src"]
    # Only this page's policy carries the hashes.
    assert not any(s.startswith("'sha256-") for s in policy(client.get("/accounts/login/"))["script-src"])


def test_it_marks_every_api_answer_no_store(client, admin_user):
    anonymous = APIClient()
    answers = [
        anonymous.get("/api/transactions/"),  # 401 problem
        anonymous.get("/api/nowhere/"),  # 404 problem
        anonymous.post("/api/auth/token/", {"username": "boss", "password": "wrong"}, format="json"),
        anonymous.get("/api/schema/"),
        anonymous.get("/api/docs/"),
    ]
    signed_in = APIClient()
    signed_in.force_authenticate(admin_user)
    answers.append(signed_in.get("/api/transactions/"))
    for response in answers:
        assert response["Cache-Control"] == "no-store", (response.status_code, response.get("Cache-Control"))


def test_it_marks_a_server_error_under_the_api_no_store(admin_user, monkeypatch):
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(admin_user)
    monkeypatch.setattr("core.api.EventFeedApi.get", lambda self, request: 1 / 0)
    response = client.get("/api/events/")
    assert response.status_code == 500 and response["Cache-Control"] == "no-store"


def test_it_sends_django_csps_own_policy_on_an_api_answer_built_once_per_process(admin_user, monkeypatch):
    from csp.utils import build_policy

    from core import security

    calls = []
    monkeypatch.setattr(security, "build_policy", lambda **kw: calls.append(kw) or build_policy(**kw))
    monkeypatch.setattr(security.CSPMiddleware, "_built", {})
    signed_in = APIClient()
    signed_in.force_authenticate(admin_user)
    answers = [signed_in.get("/api/transactions/"), APIClient().get("/api/transactions/"), signed_in.get("/healthz")]
    for response in answers:
        assert response["Content-Security-Policy"] == build_policy(), response.status_code
        assert "Content-Security-Policy-Report-Only" not in response
    assert calls == [{"report_only": False}, {"report_only": True}]


def test_it_builds_the_policy_afresh_when_the_settings_change(admin_user, settings):
    signed_in = APIClient()
    signed_in.force_authenticate(admin_user)
    assert "'none'" in policy(signed_in.get("/api/transactions/"))["object-src"]
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'self'"], "object-src": ["'self'"]}}
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": {"default-src": ["'none'"]}}
    response = signed_in.get("/api/transactions/")
    assert policy(response) == {"default-src": ["'self'"], "object-src": ["'self'"]}
    assert response["Content-Security-Policy-Report-Only"] == "default-src 'none'"
