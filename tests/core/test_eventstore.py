"""The event store: optimistic concurrency, immutability, gap-safe positions, after-commit notices."""
import threading
import time
import uuid
from contextlib import contextmanager

import psycopg
import pytest
from django.db import DatabaseError, connection, connections, transaction

from core import eventstore
from core.eventstore import ConcurrencyConflict, EventStoreBusy, NewEvent
from core.models import ImmutableEventError, StoredEvent
from core.signals import events_committed


def raw_connection(**kwargs):
    """A plain connection to the test database, without the test suite's session settings."""
    params = connection.settings_dict
    return psycopg.connect(
        host=params["HOST"], port=params["PORT"] or 5432, user=params["USER"], password=params["PASSWORD"] or None,
        dbname=params["NAME"], **kwargs
    )


@contextmanager
def statement_timeout(value):
    """A safety net: a test that would otherwise wait forever for a lock fails instead."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET statement_timeout = '{value}'")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET statement_timeout")


def append(stream_id, expected_version, *types):
    with transaction.atomic():
        return eventstore.append(
            stream_id=stream_id,
            expected_version=expected_version,
            events=[NewEvent(t, {"n": i}) for i, t in enumerate(types)],
            metadata={"actor": "tester", "request_id": None},
        )


@pytest.mark.django_db
def test_it_appends_events_with_stream_versions_and_growing_positions():
    stream = uuid.uuid4()
    first = append(stream, 0, "ThingHappened", "ThingChanged")
    second = append(stream, 2, "ThingEnded")
    assert [e.version for e in first + second] == [1, 2, 3]
    positions = [e.position for e in first + second]
    assert positions == sorted(positions) and len(set(positions)) == 3
    assert [e.type for e in eventstore.read_stream(stream)] == ["ThingHappened", "ThingChanged", "ThingEnded"]
    assert first[0].metadata == {"actor": "tester", "request_id": None}


@pytest.mark.django_db
def test_appending_at_a_stale_version_is_a_conflict_and_writes_nothing():
    stream = uuid.uuid4()
    append(stream, 0, "ThingHappened")
    with pytest.raises(ConcurrencyConflict) as caught:
        append(stream, 0, "ThingHappened", "ThingChanged")
    assert caught.value.actual_version == 1
    assert StoredEvent.objects.filter(stream_id=stream).count() == 1


@pytest.mark.django_db
def test_a_conflict_rolls_back_the_callers_other_writes_too():
    stream = uuid.uuid4()
    append(stream, 0, "ThingHappened")
    with pytest.raises(ConcurrencyConflict), transaction.atomic():
        eventstore.append(stream_id=uuid.uuid4(), expected_version=0, events=[NewEvent("Other", {})], metadata={})
        eventstore.append(stream_id=stream, expected_version=0, events=[NewEvent("Late", {})], metadata={})
    assert StoredEvent.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_it_refuses_to_append_outside_a_transaction():
    with pytest.raises(RuntimeError):
        eventstore.append(stream_id=uuid.uuid4(), expected_version=0, events=[NewEvent("X", {})], metadata={})


@pytest.mark.django_db
def test_stored_events_cannot_be_changed_or_deleted_through_the_orm():
    [event] = append(uuid.uuid4(), 0, "ThingHappened")
    row = StoredEvent.objects.get(position=event.position)
    row.type = "Rewritten"
    with pytest.raises(ImmutableEventError):
        row.save()
    with pytest.raises(ImmutableEventError):
        row.delete()
    with pytest.raises(ImmutableEventError):
        StoredEvent.objects.filter(position=event.position).update(type="Rewritten")
    with pytest.raises(ImmutableEventError):
        StoredEvent.objects.all().delete()
    assert StoredEvent.objects.get(position=event.position).type == "ThingHappened"


@pytest.mark.needs_postgres
@pytest.mark.django_db
@pytest.mark.parametrize("statement", ["UPDATE core_event SET type = 'Rewritten'", "DELETE FROM core_event"])
def test_postgres_refuses_raw_sql_that_changes_events(statement):
    append(uuid.uuid4(), 0, "ThingHappened")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    assert StoredEvent.objects.filter(type="ThingHappened").count() == 1


@pytest.mark.django_db
def test_subscribers_hear_of_events_only_after_commit(django_capture_on_commit_callbacks):
    heard = []

    def listener(sender, last_position, **kwargs):
        heard.append(last_position)

    events_committed.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            [event] = append(uuid.uuid4(), 0, "ThingHappened")
        assert heard == []
        for callback in callbacks:
            callback()
        assert heard == [event.position]
    finally:
        events_committed.disconnect(listener)


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_reader_never_finds_an_event_below_a_position_it_has_seen():
    """Transaction A takes its position and stays open; B takes the next one and commits first."""
    a_appended, release_a, b_done = threading.Event(), threading.Event(), threading.Event()
    results = {}

    def writer_a():
        try:
            with transaction.atomic():
                [results["a"]] = eventstore.append(
                    stream_id=uuid.uuid4(), expected_version=0, events=[NewEvent("A", {})], metadata={}
                )
                a_appended.set()
                release_a.wait(10)
        finally:
            connections.close_all()

    def writer_b():
        try:
            a_appended.wait(10)
            with transaction.atomic():
                [results["b"]] = eventstore.append(
                    stream_id=uuid.uuid4(), expected_version=0, events=[NewEvent("B", {})], metadata={}
                )
            b_done.set()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer_a), threading.Thread(target=writer_b)]
    for thread in threads:
        thread.start()
    try:
        assert a_appended.wait(10)
        # B does not wait for A: appenders no longer take turns.
        assert b_done.wait(10)
        assert results["a"].position < results["b"].position
        # B is committed above A's open position, so a reader must not return it yet.
        assert eventstore.read_all(after=0) == []
    finally:
        release_a.set()
        for thread in threads:
            thread.join(10)
    assert [e.type for e in eventstore.read_all(after=0)] == ["A", "B"]


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_truncating_the_event_table_is_refused_unless_the_session_opts_in():
    append(uuid.uuid4(), 0, "ThingHappened")
    with raw_connection() as plain:
        with pytest.raises(psycopg.errors.RestrictViolation, match="append-only: TRUNCATE refused"):
            plain.execute("TRUNCATE core_event")
        plain.rollback()
        with pytest.raises(psycopg.errors.RestrictViolation):
            plain.execute("TRUNCATE core_event, core_idempotency_record")  # what manage.py flush sends
        plain.rollback()
        assert plain.execute("SELECT count(*) FROM core_event").fetchone() == (1,)

        # An operator who means it opts in for the session; rolled back here to keep the event.
        plain.execute("SET ledgerpulse.allow_truncate = on")
        plain.execute("TRUNCATE core_event")
        assert plain.execute("SELECT count(*) FROM core_event").fetchone() == (0,)
        plain.rollback()
    assert StoredEvent.objects.count() == 1


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_an_append_that_cannot_get_the_lock_in_time_is_refused_as_busy_and_writes_nothing(settings):
    settings.EVENT_STORE_LOCK_TIMEOUT_MS = 200
    with raw_connection() as holder, statement_timeout("5s"):
        holder.execute("LOCK TABLE core_event IN EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(EventStoreBusy) as caught:
            append(uuid.uuid4(), 0, "ThingHappened")
        waited = time.monotonic() - started
        holder.rollback()
    assert 0.2 <= waited < 2
    assert (caught.value.status_code, caught.value.code, caught.value.retry_after) == (503, "event_store_busy", 1)
    assert StoredEvent.objects.count() == 0
    append(uuid.uuid4(), 0, "ThingHappened")  # free again
    assert StoredEvent.objects.count() == 1


@pytest.mark.needs_postgres
@pytest.mark.django_db
def test_the_lock_timeout_covers_only_taking_the_append_lock(settings):
    settings.EVENT_STORE_LOCK_TIMEOUT_MS = 1234
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        default = cursor.fetchone()
        eventstore.append(stream_id=uuid.uuid4(), expected_version=0, events=[NewEvent("X", {})], metadata={})
        # Later waits in the caller's transaction (its row locks) keep the session's default.
        cursor.execute("SHOW lock_timeout")
        assert cursor.fetchone() == default != ("1234ms",)


@contextmanager
def along_probe():
    """A scratch table for `along` statements (a temporary one: it lives as long as this session)."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE along_probe (position bigint, version integer, recorded_at timestamptz)")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE along_probe")


def probe_rows():
    with connection.cursor() as cursor:
        cursor.execute("SELECT position, version, recorded_at FROM along_probe ORDER BY position")
        return cursor.fetchall()


PROBE = eventstore.Along("INSERT INTO along_probe SELECT position, version, recorded_at FROM appended")


def append_alone(stream_id, expected_version, *types, along=PROBE):
    return eventstore.append_alone(
        stream_id=stream_id, expected_version=expected_version, events=[NewEvent(t, {"n": i}) for i, t in enumerate(types)],
        metadata={"actor": "tester", "request_id": None}, along=along,
    )


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_append_alone_commits_the_events_and_the_along_statement_in_one_round_trip_and_then_tells_subscribers(monkeypatch):
    monkeypatch.setattr("analytics.tasks.project_weekly_income.delay", lambda: None)  # no eager projection to count
    stream = uuid.uuid4()
    heard, statements = [], []

    def listener(sender, last_position, events, **kwargs):
        heard.append((last_position, [e.position for e in events], connection.in_atomic_block, len(statements)))

    events_committed.connect(listener)
    try:
        with along_probe():
            with connection.execute_wrapper(lambda execute, sql, *args: statements.append(sql) or execute(sql, *args)):
                recorded = append_alone(stream, 0, "ThingHappened", "ThingChanged")
            assert probe_rows() == [(e.position, e.version, e.recorded_at) for e in recorded]
    finally:
        events_committed.disconnect(listener)
    # Heard once committed, after exactly one statement: no BEGIN, no COMMIT, one implicit transaction.
    assert heard == [(recorded[-1].position, [e.position for e in recorded], False, 1)]
    # Committed: another session sees the events.
    with raw_connection() as other:
        assert other.execute("SELECT count(*) FROM core_event WHERE stream_id = %s", (stream,)).fetchone()[0] == 2


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_append_alone_at_a_stale_version_writes_neither_the_events_nor_the_along_rows():
    stream = uuid.uuid4()
    with along_probe():
        append_alone(stream, 0, "ThingHappened")
        with pytest.raises(ConcurrencyConflict) as caught:
            append_alone(stream, 0, "ThingHappenedAgain")
        assert caught.value.actual_version == 1
        assert len(probe_rows()) == 1
    assert [e.type for e in eventstore.read_stream(stream)] == ["ThingHappened"]


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_an_append_that_postgresql_picks_as_a_deadlock_victim_is_a_concurrency_conflict_and_writes_nothing():
    # Two decisions on one transaction at the same version, each with its read-model update, can each
    # wait for the other; PostgreSQL rolls one back whole (SQLSTATE 40P01). That one lost the race on
    # the version: a conflict (409), not a 500. Here the same error comes from the append's own statement.
    stream = uuid.uuid4()
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION pg_temp.deadlock_victim() RETURNS bigint LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$"
        )
    victim = eventstore.Along("INSERT INTO along_probe SELECT pg_temp.deadlock_victim(), version, recorded_at FROM appended")
    with along_probe():
        with pytest.raises(ConcurrencyConflict):
            append_alone(stream, 0, "ThingHappened", along=victim)
        assert probe_rows() == []
    assert eventstore.read_stream(stream) == []


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_an_along_statement_that_fails_rolls_the_append_back_with_it():
    stream = uuid.uuid4()
    failing = eventstore.Along("INSERT INTO along_probe SELECT position / 0, version, recorded_at FROM appended")
    with along_probe(), pytest.raises(DatabaseError, match="division by zero"):
        append_alone(stream, 0, "ThingHappened", along=failing)
    assert eventstore.read_stream(stream) == []


@pytest.mark.needs_postgres
@pytest.mark.django_db
def test_append_alone_is_refused_inside_a_transaction_and_append_takes_along_there():
    stream = uuid.uuid4()
    with transaction.atomic():
        with pytest.raises(RuntimeError):
            append_alone(stream, 0, "ThingHappened", along=None)
        with along_probe():
            [event] = eventstore.append(
                stream_id=stream, expected_version=0, events=[NewEvent("ThingHappened", {})], metadata={}, along=PROBE
            )
            assert probe_rows() == [(event.position, 1, event.recorded_at)]


# --- the INSERT as a prepared statement: planned once per connection and shape ----------------------


def _prepared_appends() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements WHERE statement LIKE '%%INSERT INTO core_event%%' ORDER BY name")
        return [name for (name,) in cursor.fetchall()]


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_it_prepares_an_append_shape_once_per_connection_and_then_only_executes_it(monkeypatch):
    monkeypatch.setattr("analytics.tasks.project_weekly_income.delay", lambda: None)
    statements = []
    with along_probe():
        with connection.execute_wrapper(lambda execute, sql, *args: statements.append(sql) or execute(sql, *args)):
            first = append_alone(uuid.uuid4(), 0, "ThingHappened")
            second = append_alone(uuid.uuid4(), 0, "ThingHappened")
        rows = probe_rows()
    assert ["PREPARE lp_" in sql for sql in statements] == [True, False]
    assert all("EXECUTE lp_" in sql for sql in statements)
    assert len(_prepared_appends()) == 1
    assert rows == [(e.position, e.version, e.recorded_at) for e in first + second]


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_an_append_on_a_connection_that_lost_its_prepared_statements_prepares_again_and_writes_once(monkeypatch):
    monkeypatch.setattr("analytics.tasks.project_weekly_income.delay", lambda: None)
    append_alone(uuid.uuid4(), 0, "ThingHappened", along=None)
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # what a pooler's DISCARD ALL does behind our back
    stream = uuid.uuid4()
    [event] = append_alone(stream, 0, "ThingHappened", along=None)
    assert [e.position for e in eventstore.read_stream(stream)] == [event.position]
    assert len(_prepared_appends()) == 1


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_an_append_that_failed_after_its_prepare_leaves_the_next_one_of_its_shape_working(monkeypatch):
    # The PREPARE outlives the rolled-back transaction; preparing the same name again would fail (42P05).
    monkeypatch.setattr("analytics.tasks.project_weekly_income.delay", lambda: None)
    refusing = eventstore.Along("INSERT INTO along_probe (position, version) SELECT position, -1 FROM appended")
    with along_probe():
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE along_probe ADD CHECK (version >= 0)")
        with pytest.raises(ConcurrencyConflict):  # the along's own constraint: rolled back whole
            append_alone(uuid.uuid4(), 0, "ThingHappened", along=refusing)
        assert StoredEvent.objects.count() == 0
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE along_probe DROP CONSTRAINT along_probe_version_check")
        [event] = append_alone(uuid.uuid4(), 0, "ThingHappened", along=refusing)
        assert probe_rows() == [(event.position, -1, None)]


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_prepared_append_keeps_a_literal_percent_sign_of_its_along_statement(monkeypatch):
    monkeypatch.setattr("analytics.tasks.project_weekly_income.delay", lambda: None)
    with along_probe():
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE along_probe ADD COLUMN note text")
        noting = eventstore.Along("INSERT INTO along_probe (position, note) SELECT position, '100%%' FROM appended")
        firsts = [append_alone(uuid.uuid4(), 0, "ThingHappened", along=noting)[0] for _ in range(2)]  # prepared, then executed
        with connection.cursor() as cursor:
            cursor.execute("SELECT position, note FROM along_probe ORDER BY position")
            assert cursor.fetchall() == [(event.position, "100%") for event in firsts]
