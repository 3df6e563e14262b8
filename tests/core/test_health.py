"""Liveness and readiness endpoints."""
import pytest

from tests.factories import submit

pytestmark = pytest.mark.django_db


def test_healthz_answers_ok(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_each_dependency_and_the_projection_lag(client):
    from analytics.projection import project_next_batch

    submit()
    while project_next_batch():
        pass
    submit()  # not projected: on_commit callbacks never run inside a test transaction
    body = client.get("/readyz").json()
    assert body["status"] == "ok"
    assert body["checks"] == {
        "database": "ok",
        "channel_layer": "ok (in-memory)",
        "broker": "ok (in-process tasks)",
        "projections": "ok",
    }
    assert body["projection_lag"]["weekly_income"]["behind"] == 1


def test_readyz_is_503_when_the_broker_is_unreachable(client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "error: ConnectionError"
