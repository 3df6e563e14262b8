"""Every error under /api/ is problem+json with a readable detail and a code documented in docs/api.md, in every mode."""
import importlib
import logging
import pkgutil
import re
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from core.errors import DomainError
from core.problems import PROBLEM_CODES
from tests.factories import submit

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
PROBLEM = "application/problem+json"


def documented_codes() -> dict[str, int]:
    """The `| code | status | meaning |` table of docs/api.md."""
    text = (ROOT / "docs" / "api.md").read_text()
    table = text[text.index("| code | status | meaning |") :].split("\n\n")[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", table, flags=re.MULTILINE)
    return {code: int(status) for code, status in rows}


DOCUMENTED = documented_codes()


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == PROBLEM, response.content[:500]
    body = response.json()
    assert body["code"] == code, body
    assert body["status"] == status and body["type"] == f"urn:ledgerpulse:problem:{code}"
    assert DOCUMENTED.get(code) == status, f"{code} ({status}) is not in docs/api.md's table"
    detail = body["detail"]
    # A sentence for people, not a Python repr of DRF's internals.
    assert isinstance(detail, str) and detail[:1].isupper() and detail.endswith((".", "?")), detail
    for leak in ("ErrorDetail(", "{'", "['", "code=", "Traceback"):
        assert leak not in detail, detail
    return body


@pytest.fixture(autouse=True)
def fresh_throttle():
    cache.clear()
    yield
    cache.clear()


def bearer(token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


# --- the table ---------------------------------------------------------------------


def test_the_docs_table_lists_exactly_the_codes_the_handler_knows():
    assert DOCUMENTED == PROBLEM_CODES


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def test_every_domain_error_code_is_documented_with_its_status():
    for package in ("core", "transactions", "analytics", "realtime"):
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            if ".migrations" not in info.name and not info.name.endswith(("asgi", "wsgi")):
                importlib.import_module(info.name)
    found = {cls.code: cls.status_code for cls in _all_subclasses(DomainError) if cls.__module__.split(".")[0] != "tests"}
    assert {"transaction_not_found", "stale_version", "idempotency_key_reused", "projection_behind"} <= set(found)
    for code, status in found.items():
        assert DOCUMENTED.get(code) == status, f"{code} ({status}) is not in docs/api.md's table"


# --- authentication ---------------------------------------------------------------------


def test_a_forged_jwt_is_a_readable_token_not_valid(admin_user):
    body = assert_problem(bearer("not.a.jwt").get("/api/transactions/"), 401, "token_not_valid")
    assert body["detail"].startswith("Given token not valid")


def test_an_expired_jwt_says_it_expired(admin_user):
    token = AccessToken.for_user(admin_user)
    token.set_exp(lifetime=-timedelta(minutes=1))
    body = assert_problem(bearer(str(token)).get("/api/transactions/"), 401, "token_not_valid")
    assert "expired" in body["detail"]


def test_a_jwt_of_a_deleted_user_is_user_not_found(admin_user):
    token = str(AccessToken.for_user(admin_user))
    admin_user.delete()
    assert_problem(bearer(token).get("/api/transactions/"), 401, "user_not_found")


def test_a_jwt_of_a_deactivated_user_is_user_inactive(admin_user):
    token = str(AccessToken.for_user(admin_user))
    admin_user.is_active = False
    admin_user.save()
    assert_problem(bearer(token).get("/api/transactions/"), 401, "user_inactive")


def test_a_bearer_header_with_two_tokens_is_bad_authorization_header(admin_user):
    assert_problem(bearer("a b").get("/api/transactions/"), 401, "bad_authorization_header")


def test_no_credentials_is_not_authenticated():
    assert_problem(APIClient().get("/api/transactions/"), 401, "not_authenticated")


def test_a_wrong_password_is_no_active_account(admin_user):
    response = APIClient().post("/api/auth/token/", {"username": "boss", "password": "wrong"}, format="json")
    assert_problem(response, 401, "no_active_account")


def test_refreshing_with_a_forged_token_is_a_readable_token_not_valid():
    response = APIClient().post("/api/auth/token/refresh/", {"refresh": "forged"}, format="json")
    assert_problem(response, 401, "token_not_valid")


def test_the_eleventh_token_request_a_minute_is_throttled(admin_user):
    for _ in range(10):
        APIClient().post("/api/auth/token/", {"username": "boss", "password": "guess"}, format="json")
    response = APIClient().post("/api/auth/token/", {"username": "boss", "password": "guess"}, format="json")
    assert_problem(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0


# --- permissions -------------------------------------------------------------------------


def test_a_non_staff_user_is_permission_denied(client_for, plain_user):
    assert_problem(client_for(plain_user).get("/api/transactions/"), 403, "permission_denied")


def test_a_session_post_without_the_csrf_token_is_permission_denied(admin_user):
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    body = assert_problem(browser.post("/api/transactions/", {}, format="json"), 403, "permission_denied")
    assert "CSRF" in body["detail"]


# --- unknown paths, in both modes ---------------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", ["/api/nothing-here/", "/api/", "/api/transactions/not-a-uuid/", "/api/deep/er/path.json"])
def test_an_unknown_api_path_is_a_404_problem_in_every_mode(api, debug, path):
    with override_settings(DEBUG=debug):
        assert_problem(api.get(path), 404, "not_found")
        assert_problem(api.post(path, {}, format="json"), 404, "not_found")


@pytest.mark.parametrize("debug", [False, True])
def test_an_unknown_path_is_a_404_problem_even_without_a_csrf_token(admin_user, debug):
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    with override_settings(DEBUG=debug):
        assert_problem(browser.post("/api/nothing-here/", {}, format="json"), 404, "not_found")


@pytest.mark.parametrize("debug", [False, True])
def test_a_missing_trailing_slash_still_redirects_reads_and_names_the_fix_for_writes(api, debug):
    with override_settings(DEBUG=debug):
        read = api.get("/api/transactions", {"status": "pending"})
        assert read.status_code == 301 and read["Location"] == "/api/transactions/?status=pending"
        body = assert_problem(api.post("/api/transactions", {}, format="json"), 404, "not_found")
        assert "/api/transactions/" in body["detail"]


def test_pages_outside_the_api_keep_djangos_404(client):
    with override_settings(DEBUG=False):
        response = client.get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


# --- protocol errors -------------------------------------------------------------------------------


def test_a_wrong_method_is_method_not_allowed(api):
    assert_problem(api.put("/api/transactions/", {}, format="json"), 405, "method_not_allowed")


def test_an_accept_header_the_endpoint_cannot_answer_is_not_acceptable(api):
    assert_problem(api.get("/api/transactions/", HTTP_ACCEPT="application/xml"), 406, "not_acceptable")


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        ("/api/schema/?format=xml", {}, 400, "invalid_request"),
        ("/api/schema/", {"HTTP_ACCEPT": "application/xml"}, 406, "not_acceptable"),
        ("/api/docs/?format=xml", {}, 400, "invalid_request"),
    ],
)
def test_it_answers_the_schema_and_docs_errors_in_json_not_yaml_or_html(api, path, headers, status, code):
    body = assert_problem(api.get(path, **headers), status, code)
    if status == 400:
        assert [error["field"] for error in body["errors"]] == ["format"]


def test_it_answers_a_wrong_method_on_the_schema_in_json(api):
    assert_problem(api.post("/api/schema/", {}, format="json"), 405, "method_not_allowed")


def test_a_body_that_is_not_json_is_unsupported_media_type(api):
    response = api.post("/api/transactions/", data="amount=1", content_type="text/plain")
    assert_problem(response, 415, "unsupported_media_type")


def test_malformed_json_is_a_readable_parse_error(api):
    response = api.post("/api/transactions/", data=b'{"amount": "1.00",', content_type="application/json")
    assert_problem(response, 400, "parse_error")


def test_a_duplicate_json_key_is_a_parse_error(api):
    response = api.post("/api/transactions/", data=b'{"amount": "1", "amount": "2"}', content_type="application/json")
    assert_problem(response, 400, "parse_error")


def test_an_invalid_field_is_invalid_request(api):
    assert_problem(api.post("/api/transactions/", {"amount": "x", "currency": "EUR"}, format="json"), 400, "invalid_request")


def test_a_body_over_one_mebibyte_is_body_too_large(api):
    body = b'{"description": "' + b"x" * (1024 * 1024) + b'"}'
    assert_problem(api.post("/api/transactions/", data=body, content_type="application/json"), 413, "body_too_large")


@pytest.mark.parametrize("debug", [False, True])
def test_too_many_query_parameters_is_a_400_problem_in_every_mode(api, debug):
    query = "&".join(f"p{i}=1" for i in range(1100))
    with override_settings(DEBUG=debug):
        assert_problem(api.get(f"/api/transactions/?{query}"), 400, "bad_request")


def test_an_unknown_transaction_is_transaction_not_found(api):
    assert_problem(api.get(f"/api/transactions/{uuid.uuid4()}/"), 404, "transaction_not_found")


def test_deciding_twice_is_transaction_not_pending(api):
    txn = submit()
    api.post(f"/api/transactions/{txn.id}/approve/", {}, format="json")
    assert_problem(api.post(f"/api/transactions/{txn.id}/approve/", {}, format="json"), 409, "transaction_not_pending")


def test_a_stale_expected_version_is_stale_version(api):
    txn = submit()
    assert_problem(api.post(f"/api/transactions/{txn.id}/approve/", {"expected_version": 9}, format="json"), 409, "stale_version")


def test_an_idempotency_key_reused_for_another_body_is_idempotency_key_reused(api):
    headers = {"HTTP_IDEMPOTENCY_KEY": "k-1"}
    api.post("/api/transactions/", {"amount": "1.00", "currency": "EUR"}, format="json", **headers)
    response = api.post("/api/transactions/", {"amount": "2.00", "currency": "EUR"}, format="json", **headers)
    assert_problem(response, 422, "idempotency_key_reused")


# --- bugs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True])
def test_an_unhandled_exception_is_a_logged_500_problem_in_every_mode(admin_user, monkeypatch, caplog, debug):
    def broken():
        raise RuntimeError("the database ate my homework")

    monkeypatch.setattr("transactions.selectors.transaction_list", broken)
    client = APIClient(raise_request_exception=False)
    client.force_login(admin_user)
    with override_settings(DEBUG=debug), caplog.at_level(logging.ERROR, logger="django.request"):
        response = client.get("/api/transactions/")
    body = assert_problem(response, 500, "server_error")
    assert "homework" not in body["detail"]
    [record] = [r for r in caplog.records if r.name == "django.request" and r.levelno == logging.ERROR]
    assert record.exc_info and record.exc_info[0] is RuntimeError
    assert response["X-Request-ID"]


def test_the_test_client_still_raises_an_unhandled_exception(api, monkeypatch):
    # got_request_exception is still sent, so a bug surfaces as its own traceback in tests.
    monkeypatch.setattr("transactions.selectors.transaction_list", lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        api.get("/api/transactions/")


def test_an_unknown_format_on_the_schema_lists_each_format_once():
    from rest_framework.test import APIClient

    body = APIClient().get("/api/schema/", {"format": "xml"}).json()
    assert body["errors"][0]["message"] == "must be one of: yaml, json"
