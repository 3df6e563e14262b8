"""/readyz tells its checks and counts only to staff or to a client inside READYZ_DETAIL_NETWORKS."""
import pytest
from rest_framework_simplejwt.tokens import AccessToken

from core.clientip import parse_networks

pytestmark = pytest.mark.django_db
OUTSIDE = {"REMOTE_ADDR": "203.0.113.50"}


def test_it_gives_an_outside_client_only_the_status(client):
    response = client.get("/readyz", **OUTSIDE)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_it_gives_an_outside_client_only_the_status_with_the_same_code_when_unready(client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz", **OUTSIDE)
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}


def test_it_gives_the_detail_to_loopback_by_default(client):
    body = client.get("/readyz").json()  # the test client's REMOTE_ADDR is 127.0.0.1
    assert body["checks"]["database"] == "ok" and "projection_lag" in body


def test_it_gives_the_detail_to_a_configured_internal_network(client, settings):
    settings.READYZ_DETAIL_NETWORKS = parse_networks("READYZ_DETAIL_NETWORKS", "203.0.113.0/24")
    assert "checks" in client.get("/readyz", **OUTSIDE).json()
    assert "checks" not in client.get("/readyz").json()


def test_it_takes_the_internal_address_from_a_trusted_proxy_only(client, settings):
    settings.TRUSTED_PROXIES = parse_networks("TRUSTED_PROXIES", "203.0.113.50")
    # From a trusted proxy, the forwarded client decides: outside the networks.
    assert client.get("/readyz", HTTP_X_FORWARDED_FOR="198.51.100.9", **OUTSIDE).json() == {"status": "ok"}
    settings.TRUSTED_PROXIES = ()
    # From anyone else, X-Forwarded-For claiming loopback is not believed.
    assert client.get("/readyz", HTTP_X_FORWARDED_FOR="127.0.0.1", **OUTSIDE).json() == {"status": "ok"}


def test_it_gives_the_detail_to_a_staff_session_or_jwt_from_outside(client, staff_user, plain_user):
    client.force_login(staff_user)
    assert "checks" in client.get("/readyz", **OUTSIDE).json()
    client.force_login(plain_user)
    assert client.get("/readyz", **OUTSIDE).json() == {"status": "ok"}
    client.logout()
    token = AccessToken.for_user(staff_user)
    assert "checks" in client.get("/readyz", HTTP_AUTHORIZATION=f"Bearer {token}", **OUTSIDE).json()
    assert client.get("/readyz", HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(plain_user)}", **OUTSIDE).json() == {"status": "ok"}
    assert client.get("/readyz", HTTP_AUTHORIZATION="Bearer forged", **OUTSIDE).json() == {"status": "ok"}
