"""JWT for REST clients: obtain, use, refresh, and a throttle against password guessing."""
import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttle(fresh_throttle):
    """Every test here starts with no throttle or lockout counts (tests/core/conftest.py)."""


def obtain(username="boss", password="boss-password-123"):
    return APIClient().post("/api/auth/token/", {"username": username, "password": password}, format="json")


def test_a_staff_user_obtains_a_jwt_and_reads_with_it(admin_user):
    tokens = obtain().json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert client.get("/api/transactions/").status_code == 200
    refreshed = APIClient().post("/api/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert refreshed.status_code == 200 and refreshed.json()["access"]


def test_a_wrong_password_is_a_401_problem(admin_user):
    response = obtain(password="wrong")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"


def test_a_forged_token_is_a_401(admin_user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not.a.jwt")
    assert client.get("/api/transactions/").status_code == 401


def test_the_token_endpoint_is_throttled(admin_user, settings):
    settings.AXES_FAILURE_LIMIT = 100  # the lockout (tests/core/test_login_limits.py) would answer first
    statuses = [obtain(password="guess").status_code for _ in range(11)]
    assert statuses[:10] == [401] * 10
    assert statuses[10] == 429


def test_the_schema_and_docs_are_public_and_self_contained(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"openapi: 3" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn" not in html.lower()
