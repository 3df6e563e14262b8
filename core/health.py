"""Readiness checks: database, channel layer, broker and projection lag, each answering in about a second."""
from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.utils.module_loading import import_string


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _ping_redis(url: str) -> str:
    from core.redis import client as redis_client  # REDIS_URL's server, or Sentinel's current master

    client = redis_client(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


def check_channel_layer() -> str:
    if not settings.REDIS_URL:
        return "ok (in-memory)"
    return _ping_redis(settings.REDIS_URL)


def check_broker() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "ok (in-process tasks)"
    if settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        return _ping_redis(settings.CELERY_BROKER_URL)
    from celery_app import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=1)
    return "ok"


def readiness() -> tuple[bool, dict]:
    checks: dict[str, str] = {}
    for name, check in (("database", check_database), ("channel_layer", check_channel_layer), ("broker", check_broker)):
        try:
            checks[name] = check()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks[name] = f"error: {exc.__class__.__name__}"
    lag = None
    if checks["database"] == "ok":
        lag = import_string(settings.HEALTH_PROJECTION_LAG)()
        checks["projections"] = judge_lag(lag)
    ready = all(value.startswith("ok") for value in checks.values())
    return ready, {"status": "ok" if ready else "unavailable", "checks": checks, "projection_lag": lag}


def judge_lag(lag: dict) -> str:
    """A busy projector is ready; one whose oldest unapplied event is older than the limit is not.

    `lag` has an entry per registered projection: any one of them stuck makes the service unready
    (its read model would serve stale answers), whichever it is.

    Counting events would fail a healthy projector during a burst; the age of the oldest
    unapplied event only grows when the projector is stuck or far too slow.
    """
    limit = settings.READYZ_MAX_PROJECTION_LAG_SECONDS
    stuck = [f"{name} is {info['behind']} events and {info['seconds']:g} s behind" for name, info in lag.items() if info["seconds"] > limit]
    return f"error: {'; '.join(stuck)} (limit {limit} s)" if stuck else "ok"


def may_see_detail(request) -> bool:
    """/readyz's checks and counts: for a staff session or JWT, or a client inside READYZ_DETAIL_NETWORKS.

    Everyone else learns only whether the service is ready (the status code says as much).
    """
    from core.clientip import client_address, in_networks

    if in_networks(client_address(request), settings.READYZ_DETAIL_NETWORKS):
        return True
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_active and user.is_staff:
        return True
    if request.META.get("HTTP_AUTHORIZATION"):
        from rest_framework.exceptions import APIException
        from rest_framework.request import Request

        for authenticator in _jwt_authenticators():
            try:
                found = authenticator.authenticate(Request(request))
            except APIException:
                return False
            if found and found[0].is_active and found[0].is_staff:
                return True
    return False


def _jwt_authenticators():
    from rest_framework.settings import api_settings

    return [cls() for cls in api_settings.DEFAULT_AUTHENTICATION_CLASSES if hasattr(cls, "get_validated_token")]
