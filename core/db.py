"""Database helpers that the ORM does not offer."""
import hashlib
import itertools
import re
import weakref
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.db import DatabaseError, connection, transaction


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


# --- server-side prepared statements ---------------------------------------------------------------
# PostgreSQL parses, analyses and plans every statement of a simple query anew: on the approve path
# that was a fifth of its backend CPU (the append's INSERT with its read-model UPDATE about 0.3 ms, a
# join like the permission check about 0.4 ms). A statement run through execute_prepared() is
# PREPAREd (SQL-level) the first time a connection meets it, in the same simple query as its first
# EXECUTE, and then only EXECUTEd: still one round trip, and still simple-query, so it can follow
# other statements (the append's locks) in one implicit transaction. Not psycopg's own preparing:
# psycopg deallocates everything it prepared after any ROLLBACK, DROP or ALTER, and the ORM's
# client-binding cursors could not use it anyway.
# A prepared statement is not transactional: a failed query that carried the PREPARE leaves it
# unknown whether the name exists, so the next one prepares under a new name (at most one stray
# statement per such failure, per connection). A connection that lost its statements (DISCARD ALL,
# DEALLOCATE ALL) answers 26000; outside a transaction the query runs again once, preparing.
_NO_SUCH_PREPARED = "26000"
_forms: dict[str, tuple[str, str]] = {}
# Per psycopg connection: {base name: (name to use, prepared there)}.
_prepared_on: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_generations = itertools.count(1)


def _prepared_form(statement: str) -> tuple[str, str]:
    """(base name, body): the statement as PREPARE wants it, its %s placeholders numbered $1, $2, ..."""
    form = _forms.get(statement)
    if form is None:
        counter = itertools.count(1)
        # "%%" stays: the PREPARE goes through the client-binding cursor with the EXECUTE's values, which reads it as "%".
        body = re.sub(r"%[s%]", lambda m: m.group() if m.group() == "%%" else f"${next(counter)}", statement)
        name = "lp_" + hashlib.sha1(statement.encode()).hexdigest()[:24]
        if len(_forms) >= 512:
            _forms.clear()
        form = _forms[statement] = (name, body)
    return form


def prepared_name(sql: str) -> str:
    """The name `sql` is first prepared under on a connection (a failure may move it to a new one)."""
    return _prepared_form(sql)[0]


def execute_prepared(cursor, sql: str, params, *, before: str = "", before_count: int = 0) -> None:
    """Run `sql` (one statement, %s placeholders, `params` a list) as a prepared statement, after `before`
    (`before_count` parameterless statements, each ending in "; ") in the same simple query.

    Leaves `cursor` on `sql`'s result. On PostgreSQL with psycopg's own preparing on (OPTIONS
    prepare_threshold), and on any other database, it only runs the statements.
    """
    if connection.vendor != "postgresql" or connection.settings_dict["OPTIONS"].get("prepare_threshold") is not None:
        # Nothing of ours to prepare elsewhere. With psycopg's own preparing on, it sends DEALLOCATE ALL
        # after any ROLLBACK, DROP or ALTER, which would take ours away inside transactions too: plan each time.
        cursor.execute(before + sql, params)
        for _ in range(before_count):
            cursor.nextset()
        return
    base, body = _prepared_form(sql)
    arguments = f"({', '.join(['%s'] * len(params))})" if params else ""
    shapes = _prepared_on.setdefault(connection.connection, {})
    while True:
        name, prepared = shapes.get(base, (base, False))
        prepare = "" if prepared else f"PREPARE {name} AS {body}; "
        try:
            cursor.execute(before + prepare + f"EXECUTE {name}{arguments}", params)
        except DatabaseError as exc:
            vanished = prepared and getattr(exc.__cause__, "sqlstate", None) == _NO_SUCH_PREPARED
            if vanished or not prepared:
                shapes[base] = (f"{base}_{next(_generations)}", False)
            if vanished and not connection.in_atomic_block:
                continue  # rolled back whole, nothing written: once more, preparing
            raise
        shapes[base] = (name, True)
        for _ in range(before_count + (0 if prepared else 1)):
            cursor.nextset()
        return
