"""JWTs issued before a password change are refused: the access token on a request, the refresh token on refresh."""
import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db
PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def _fresh_throttle(fresh_throttle):
    """Every test here starts with no throttle or lockout counts (tests/core/conftest.py)."""


def pair():
    response = APIClient().post("/api/auth/token/", {"username": "boss", "password": "boss-password-123"}, format="json")
    assert response.status_code == 200
    return response.json()


def read_with(access):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.get("/api/transactions/")


def refresh_with(refresh):
    return APIClient().post("/api/auth/token/refresh/", {"refresh": refresh}, format="json")


def assert_token_not_valid(response):
    assert response.status_code == 401, response.content[:300]
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["code"] == "token_not_valid", body
    assert "password" in body["detail"]


def test_it_accepts_both_tokens_while_the_password_is_unchanged(admin_user):
    tokens = pair()
    assert read_with(tokens["access"]).status_code == 200
    assert refresh_with(tokens["refresh"]).status_code == 200


def test_it_refuses_the_access_and_the_refresh_token_after_a_password_change(admin_user):
    tokens = pair()
    admin_user.set_password("a-new-password-456")
    admin_user.save()
    assert_token_not_valid(read_with(tokens["access"]))
    assert_token_not_valid(refresh_with(tokens["refresh"]))
    # A pair obtained with the new password works.
    fresh = APIClient().post("/api/auth/token/", {"username": "boss", "password": "a-new-password-456"}, format="json").json()
    assert read_with(fresh["access"]).status_code == 200
    assert refresh_with(fresh["refresh"]).status_code == 200


def test_it_refuses_an_access_token_refreshed_just_before_the_password_change(admin_user):
    tokens = pair()
    access = refresh_with(tokens["refresh"]).json()["access"]
    admin_user.set_password("a-new-password-456")
    admin_user.save()
    assert_token_not_valid(read_with(access))


def test_it_refuses_a_refresh_token_of_a_deleted_user_without_a_server_error(admin_user):
    tokens = pair()
    admin_user.delete()
    response = refresh_with(tokens["refresh"])
    assert response.status_code == 401 and response.json()["code"] == "no_active_account"


def test_it_refuses_an_access_token_it_accepted_before_once_the_password_changes(admin_user):
    """Checked tokens are remembered (core/security.py), the user behind them never is."""
    tokens = pair()
    assert read_with(tokens["access"]).status_code == 200
    admin_user.set_password("a-new-password-456")
    admin_user.save()
    assert_token_not_valid(read_with(tokens["access"]))


def test_it_refuses_an_access_token_it_accepted_before_once_it_expires(admin_user, monkeypatch):
    from datetime import timedelta

    from rest_framework_simplejwt import tokens as jwt_tokens

    tokens = pair()
    assert read_with(tokens["access"]).status_code == 200
    later = jwt_tokens.aware_utcnow() + timedelta(minutes=16)  # access tokens live 15 minutes
    monkeypatch.setattr(jwt_tokens, "aware_utcnow", lambda: later)
    response = read_with(tokens["access"])
    assert response.status_code == 401 and response.json()["code"] == "token_not_valid"


def test_it_refuses_an_access_token_it_accepted_before_once_the_user_is_deactivated(admin_user):
    tokens = pair()
    assert read_with(tokens["access"]).status_code == 200
    admin_user.is_active = False
    admin_user.save()
    assert read_with(tokens["access"]).status_code == 401
