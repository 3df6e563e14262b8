"""Database helpers that the ORM does not offer."""
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.db import connection, transaction

# psycopg prepares a statement only when asked (prepare=True) or after this many runs of it on a
# connection; Django's default (None) turns preparing off altogether. The ORM's cursors bind on the
# client and never prepare; only prepared_cursor() below asks. core/settings.py passes it in OPTIONS.
PREPARE_ONLY_WHEN_ASKED = 2**31 - 1


@dataclass
class _Unit:
    depth: int  # len(connection.atomic_blocks) inside the unit
    command_ran: bool = False
    one_by_one: bool = False  # commands_one_by_one(): several commands, each its own savepoint


# The open unit of work, if any: one command (several inside commands_one_by_one()) may run as a
# savepoint directly inside it (see command_transaction), and none inside any other transaction.
_current_unit: ContextVar[_Unit | None] = ContextVar("current_unit_of_work", default=None)


class NestedCommandError(RuntimeError):
    """A command was called inside someone else's transaction."""


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


def _in_callers_transaction() -> bool:
    # Test cases wrap each test in atomic blocks marked _from_testcase; those stand in for
    # "no transaction", as they do for Django's own durable check.
    blocks = connection.atomic_blocks
    return bool(blocks) and not getattr(blocks[-1], "_from_testcase", False)


@contextmanager
def command_transaction(name: str = "a command"):
    """The transaction a command runs in: durable, so it commits when the block ends.

    A command appends events, and an open append holds back every reader of the log
    from its position on (core.eventstore: readers stop at a position that may still
    commit), and its row locks stall other commands on the same rows. Inside a
    caller's transaction it would do both for as long as the caller likes. So nesting
    is refused, with one exception: directly inside unit_of_work() the command is a
    savepoint, and its refusals roll back only its own writes.
    """
    unit = _current_unit.get()
    if unit is not None and (unit.one_by_one or not unit.command_ran) and len(connection.atomic_blocks) == unit.depth:
        unit.command_ran = True
        with transaction.atomic():
            yield
        return
    if _in_callers_transaction():
        raise NestedCommandError(
            f"{name} must not run inside another transaction: its events would hold back every "
            "reader of the log until that transaction ends"
        )
    with transaction.atomic(durable=True):
        yield


@contextmanager
def unit_of_work():
    """A durable transaction around one command and a bounded amount of work after it.

    Only core.idempotency uses it, to commit a command together with its stored answer.
    Whatever runs after the command runs while its events are still in flight (readers
    of the log wait for them) and its row locks are held, so it must be small (one UPDATE).
    """
    with transaction.atomic(durable=True):
        token = _current_unit.set(_Unit(depth=len(connection.atomic_blocks)))
        try:
            yield
        finally:
            _current_unit.reset(token)


@contextmanager
def commands_one_by_one():
    """Lets several commands run one after another directly inside the open unit_of_work(), each a
    savepoint of its own (a refusal undoes only its own writes); elsewhere it changes nothing.

    For a batch under one Idempotency-Key (transactions.bulk): every command commits together with
    the stored answer. Its events stay in flight until then, so the batch must stay bounded.
    """
    unit = _current_unit.get()
    if unit is None:
        yield
        return
    previous, unit.one_by_one = unit.one_by_one, True
    try:
        yield
    finally:
        unit.one_by_one = previous


def _prepared_cursor_class():
    from psycopg import Cursor

    class PreparedCursor(Cursor):
        """psycopg's server-binding cursor that prepares every statement it runs (once per connection)."""

        def execute(self, query, params=None, *, prepare=True, binary=None):
            super().execute(query, params, prepare=prepare, binary=binary)
            # Django's query log (tests count round trips with it) reads cursor._query.query, which
            # psycopg leaves empty for a prepared statement: the statement's text, without values.
            self._query = _Sent(query.encode() if isinstance(query, str) else query)
            return self

    class _Sent:
        __slots__ = ("query",)

        def __init__(self, query: bytes):
            self.query = query

    return PreparedCursor


_PreparedCursor = None


def prepared_cursor():
    """A Django cursor (its execute wrappers, error mapping, query log) whose statements are prepared
    on the server the first time a pooled connection runs them, then only bound and executed.

    For the hot path's fixed single statements: PostgreSQL parsed and planned each of them on
    every request (the JWT user with its permissions took 0.56 ms of backend CPU that way, 0.10 ms
    prepared). One statement per execute (the extended protocol has no multi-statement queries);
    on SQLite, or with preparing off in OPTIONS, it is the ordinary cursor.
    """
    global _PreparedCursor
    if connection.vendor != "postgresql" or connection.settings_dict["OPTIONS"].get("prepare_threshold") is None:
        return connection.cursor()
    if _PreparedCursor is None:
        _PreparedCursor = _prepared_cursor_class()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        return connection._prepare_cursor(_PreparedCursor(connection.connection))
