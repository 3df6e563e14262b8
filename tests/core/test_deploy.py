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


# --- behind a proxy: the health probes are never redirected to HTTPS ---


@pytest.mark.django_db
def test_it_spares_only_the_health_probes_from_the_https_redirect(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)
    redirected = client.get("/dashboard/")
    assert redirected.status_code == 301 and redirected["Location"] == "https://testserver/dashboard/"
    assert client.get("/healthz/").status_code == 301  # only the exact paths
