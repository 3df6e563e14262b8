"""Database helpers that the ORM does not offer."""
from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def consistent_read():
    """A read-only transaction in which every query sees the same committed state.

    On PostgreSQL that is REPEATABLE READ: a checkpoint and the rows it covers,
    read in two queries, cannot straddle a projector's commit. SQLite's single
    read transaction gives the same guarantee.
    """
    if connection.in_atomic_block:
        # Nested: the outer transaction already fixed what we see.
        yield
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield
