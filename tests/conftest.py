"""Shared fixtures: users, API clients, and service gates for tests that need real servers."""
import pytest
from _pytest.nodeid import NodeId
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import DatabaseError, connection, connections, transaction
from django.db.backends.signals import connection_created
from django.test import TransactionTestCase
from rest_framework.test import APIClient

from tests.services import redis_available, require


def _allow_truncating_events(sender, connection, **kwargs):
    # pytest-django empties the tables after each transactional test with TRUNCATE, which
    # core_event refuses (core migration 0005) unless the session opts in.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET ledgerpulse.allow_truncate = on")


connection_created.connect(_allow_truncating_events, dispatch_uid="tests.allow_truncating_events")

# Rows that `flush` would delete and its post_migrate signal would write again, the same ones: kept.
KEPT_BY_FLUSH = frozenset({"django_migrations", "django_content_type", "auth_permission"})
# Append-only (core migration 0002 refuses DELETE): emptied with TRUNCATE, which the session allows.
TRUNCATED_BY_FLUSH = frozenset({"core_event"})
_django_flush = TransactionTestCase._fixture_teardown


def _empty_tables_after_a_transactional_test(self):
    """What TransactionTestCase does after each test (`flush`: every table emptied), in a fraction of the time.

    `flush` TRUNCATEs all ~25 tables (each a new file, ~25 ms) and then recreates the content types and
    permissions through post_migrate: about a second per test on a busy 2-core machine, over 200 tests.
    Here one query finds the tables the test wrote to, and those are emptied with DELETE (the foreign keys
    are deferred, so any order), in one transaction. Anything else (SQLite, available_apps, serialized
    rollback, a DELETE some future trigger refuses) gets Django's own flush."""
    names = self._databases_names(include_mirrors=False)
    if self.available_apps is not None or self.serialized_rollback or any(connections[n].vendor != "postgresql" for n in names):
        return _django_flush(self)
    for name in names:
        db = connections[name]
        tables = [t for t in db.introspection.django_table_names(only_existing=True, include_views=False) if t not in KEPT_BY_FLUSH]
        quote = db.ops.quote_name
        try:
            with transaction.atomic(using=name), db.cursor() as cursor:
                cursor.execute(" UNION ALL ".join(f"SELECT %s WHERE EXISTS (SELECT 1 FROM {quote(t)})" for t in tables), tables)
                for (table,) in cursor.fetchall():
                    cursor.execute(f"{'TRUNCATE' if table in TRUNCATED_BY_FLUSH else 'DELETE FROM'} {quote(table)}")
        except DatabaseError:
            call_command("flush", verbosity=0, interactive=False, database=name, reset_sequences=False)


TransactionTestCase._fixture_teardown = _empty_tables_after_a_transactional_test


def pytest_runtest_setup(item):
    if item.get_closest_marker("needs_postgres"):
        require("PostgreSQL", connection.vendor == "postgresql")
    if item.get_closest_marker("needs_redis"):
        require("Redis", redis_available())


@pytest.fixture(autouse=True)
def _close_the_sync_to_async_threads_connections():
    """After each test, the database connections of asgiref's thread for sync_to_async(thread_sensitive=True) closed.

    An async test has no outer async_to_sync, so its thread-sensitive calls (Django's async ORM, a helper's
    sync_to_async) run on one executor thread that lives as long as the process: a connection opened there
    outlived its test and the session, and the test database could not be dropped at the end ("is being
    accessed by other users", a 5 s wait per xdist worker). tests/core/test_metrics.py's socket-counting
    test left one, for instance. Run in that thread, since connections are per thread."""
    yield
    from asgiref.sync import SyncToAsync

    executor = SyncToAsync.single_thread_executor
    if executor._threads:  # started: some test has run code in it
        executor.submit(connections.close_all).result(timeout=30)


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


LIVE_STACK_GROUPS = ("live-stack", "live-stack-no-deadline")


def _xdist_group(item) -> str:
    if item.get_closest_marker("e2e"):
        return "live-stack-no-deadline" if item.get_closest_marker("no_deadline") else "live-stack"
    return item.nodeid.split("::", 1)[0]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (--dist loadgroup): tests that start servers, workers or a browser run on one
    worker, one after another, so timing-sensitive ones never share the 2 cores with another such
    test; those marked no_deadline (no wall-clock budget: the Sentinel, proxy, deployment, metrics and
    log tests) run one after another on the other worker, so at most two stacks run at once; every
    other test stays with the rest of its file (what --dist loadfile would do).

    xdist's loadgroup scheduler finds a test's group in its id ("<id>@<group>"), which xdist 3.8 sets as
    `item._nodeid`: pytest 9 keeps the id in `item._id`, so that never took and every test was a unit of
    its own (the stack tests of both groups then ran side by side, on both workers). The id is set here,
    the way xdist means to, with its parser; tryfirst, so the marks exist before xdist's own hook reads them."""
    loadgroup = getattr(config.option, "loadgroup", False)
    for item in items:
        group = _xdist_group(item)
        item.add_marker(pytest.mark.xdist_group(group))
        if loadgroup and "@" not in item.nodeid and isinstance(getattr(item, "_id", None), NodeId):
            item._id = NodeId.parse(f"{_unique_id(item)}@{group}")


def _unique_id(item) -> str:
    """The item's node id with its parameters: schemathesis' items (one per API operation) all share their
    test function's id, and xdist, which schedules by id, ran only one of them (1 operation of 16)."""
    nodeid = item.nodeid
    if "[" in item.name and not nodeid.endswith("]"):
        nodeid = f"{nodeid.rsplit('::', 1)[0]}::{item.name}"
    return nodeid


class StackGroupsFirst:
    """Under --dist loadgroup, the two stack groups (the longest units of work) first in the collection, and
    xdist's work queue in collection order rather than "most tests first": the groups start at once, one on
    each worker, and every file fills in around them, so both workers finish together."""

    @pytest.hookimpl(trylast=True)  # after pytest-django's ordering, which the stable sort keeps for the rest
    def pytest_collection_modifyitems(self, config, items):
        if getattr(config.option, "loadgroup", False):
            rank = {group: n for n, group in enumerate(LIVE_STACK_GROUPS)}
            items.sort(key=lambda item: rank.get(_xdist_group(item), len(rank)))


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False
    config.pluginmanager.register(StackGroupsFirst(), "tests-stack-groups-first")
