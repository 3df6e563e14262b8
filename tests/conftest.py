"""Shared fixtures: users, API clients, and service gates for tests that need real servers."""
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.db.backends.signals import connection_created
from rest_framework.test import APIClient

from tests.services import redis_available, require


def _allow_truncating_events(sender, connection, **kwargs):
    # pytest-django empties the tables after each transactional test with TRUNCATE, which
    # core_event refuses (core migration 0005) unless the session opts in.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET ledgerpulse.allow_truncate = on")


connection_created.connect(_allow_truncating_events, dispatch_uid="tests.allow_truncating_events")


def pytest_runtest_setup(item):
    if item.get_closest_marker("needs_postgres"):
        require("PostgreSQL", connection.vendor == "postgresql")
    if item.get_closest_marker("needs_redis"):
        require("Redis", redis_available())


@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_superuser("boss", "boss@example.com", "boss-password-123")


@pytest.fixture
def staff_user(db):
    """Staff who may read but holds no write permission."""
    return get_user_model().objects.create_user("viewer", "viewer@example.com", "viewer-password-123", is_staff=True)


@pytest.fixture
def clerk_user(db):
    """Staff who may submit transactions but not decide them."""
    user = get_user_model().objects.create_user("clerk", "clerk@example.com", "clerk-password-123", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="add_transaction"))
    return user


@pytest.fixture
def plain_user(db):
    return get_user_model().objects.create_user("outsider", "outsider@example.com", "outsider-password-123")


def _client_for(user):
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def api(admin_user):
    return _client_for(admin_user)


@pytest.fixture
def client_for():
    return _client_for


@pytest.fixture
def live_stack(request, transactional_db, tmp_path):
    """The Procfile's web line + one Celery worker on the test database and Redis (scripts/stack.py), booting
    side by side. Torn down before the DB is flushed."""
    from tests.services import redis_available
    from tests.stack import LiveStack, flush_test_redis, stack_env

    require("PostgreSQL", connection.vendor == "postgresql")
    require("Redis", redis_available())
    flush_test_redis()
    stack = LiveStack(env=stack_env(), log_dir=tmp_path)
    try:
        stack.wait_ready(stack.start_worker(wait=False), stack.start_server(wait=False), timeout=60)
        yield stack
    finally:
        stack.stop()
        flush_test_redis()


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (--dist loadgroup): tests that start servers, workers or a browser run on one
    worker, one after another, so timing-sensitive ones never share the 2 cores with another such
    test; those marked no_deadline (no wall-clock budget: the Sentinel, proxy, deployment, metrics and
    log tests) run one after another on the other worker, so at most two stacks run at once; every
    other test stays with the rest of its file (what --dist loadfile would do)."""
    for item in items:
        if item.get_closest_marker("e2e"):
            group = "live-stack-no-deadline" if item.get_closest_marker("no_deadline") else "live-stack"
        else:
            group = item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))
