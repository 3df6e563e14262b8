"""Database helpers for tests: moving the schema between migrations, and what a query plan read."""
import json
from contextlib import contextmanager

from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor


def migrate(targets):
    """Migrate the test database to `targets` ([(app, migration)]); the apps (historical models) there."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@contextmanager
def migrated_to(targets, app: str):
    """The test database at `targets` for the block, then back at `app`'s latest migration (what other tests expect)."""
    apps = migrate(targets)
    try:
        yield apps
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes(app))


def analyzed_plan(sql: str, params) -> dict:
    """EXPLAIN (ANALYZE, FORMAT JSON) of a statement, run in a transaction rolled back afterwards: its top plan node."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
        transaction.set_rollback(True)
    return (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]


def rows_read(plan: dict, table: str) -> int:
    """Rows a plan node and its children read from `table` (index or heap scans), over all their loops: those
    they returned and those they read and threw away (a filter, a recheck)."""
    read = plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0) + plan.get("Rows Removed by Index Recheck", 0)
    here = read * plan.get("Actual Loops", 1) if plan.get("Relation Name") == table else 0
    return here + sum(rows_read(child, table) for child in plan.get("Plans", []))
