"""core.db's prepared statements: planned once per connection on PostgreSQL, simply run anywhere else."""
import pytest
from django.db import connection

from core.db import execute_prepared, prepared_name

pytestmark = [pytest.mark.django_db, pytest.mark.needs_postgres]
SQL = "SELECT %s::int + 1 AS next_one"


def prepared_with(name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE %s", [name + "%"])
        return cursor.fetchone()[0]


def test_it_prepares_a_statement_once_per_connection_and_then_only_executes_it():
    for n in (1, 2, 3):
        with connection.cursor() as cursor:
            execute_prepared(cursor, SQL, [n])
            assert cursor.fetchone() == (n + 1,)
    assert prepared_with(prepared_name(SQL)) == 1


def test_on_another_database_it_runs_the_statement_as_it_is_and_prepares_nothing(monkeypatch):
    monkeypatch.setattr(connection, "vendor", "sqlite")
    sql = "SELECT %s::int + 2 AS next_two"
    with connection.cursor() as cursor:
        execute_prepared(cursor, sql, [40])
        assert cursor.fetchone() == (42,)
    assert prepared_with(prepared_name(sql)) == 0
