"""Gap-safe reads without a global append lock: holes in flight hold readers back, final holes do not."""
import threading
import time
import uuid
from contextlib import contextmanager

import pytest
from django.db import connection, connections, transaction

from core import eventstore
from core.db import consistent_read
from core.eventstore import ConcurrencyConflict, NewEvent

pytestmark = [pytest.mark.needs_postgres, pytest.mark.django_db(transaction=True)]

WAIT = 10  # seconds: a safety net for every wait below, never reached when the code is right


class OpenAppend:
    """An append in another thread (its own connection) whose transaction stays open until told to end."""

    def __init__(self, stream_id=None, expected_version=0, type="Open"):
        self.stream_id = stream_id or uuid.uuid4()
        self.expected_version = expected_version
        self.type = type
        self.appended, self.ended = threading.Event(), threading.Event()
        self._finish = threading.Event()
        self._commit = True
        self.recorded = self.error = self.pid = None
        self._thread = threading.Thread(target=self._run)

    def _run(self):
        try:
            with transaction.atomic():
                self.pid = connection.cursor().connection.info.backend_pid
                [self.recorded] = eventstore.append(
                    stream_id=self.stream_id, expected_version=self.expected_version, events=[NewEvent(self.type, {})], metadata={}
                )
                self.appended.set()
                self._finish.wait(WAIT)
                if not self._commit:
                    transaction.set_rollback(True)
        except Exception as exc:  # reported to the test through .error
            self.error = exc
        finally:
            self.ended.set()
            connections.close_all()

    def start(self):
        self._thread.start()
        return self

    def end(self, *, commit=True):
        self._commit = commit
        self._finish.set()
        self._thread.join(WAIT)
        assert self.ended.is_set()


@contextmanager
def open_append(**kwargs):
    append = OpenAppend(**kwargs).start()
    try:
        assert append.appended.wait(WAIT), append.error
        yield append
    finally:
        if not append.ended.is_set():
            append.end(commit=False)


def committed(type="Committed"):
    with transaction.atomic():
        [event] = eventstore.append(stream_id=uuid.uuid4(), expected_version=0, events=[NewEvent(type, {})], metadata={})
    return event


def backend_is_waiting_for_a_lock(pid) -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return bool(row and row[0])


def wait_until(condition, what):
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def test_it_lets_appenders_to_different_streams_commit_while_another_is_still_open():
    with open_append() as first:
        second = committed("Second")  # would wait for `first` under a global append lock
        assert not first.ended.is_set()
    assert second.position > first.recorded.position


def test_a_reader_never_returns_a_position_above_one_still_in_flight(settings):
    start = eventstore.last_position()
    with open_append(type="P") as p:
        above = committed("P+1")
        assert above.position > p.recorded.position
        assert eventstore.last_position() == above.position  # the log reaches P+1 ...
        assert eventstore.read_all(after=start) == []  # ... but a reader stops before P
        # Even when the hole is old enough to be worth a wait, the wait is bounded and proves nothing.
        settings.EVENT_STORE_HOLE_GRACE_MS, settings.EVENT_STORE_HOLE_WAIT_MS = 0, 100
        started = time.monotonic()
        assert eventstore.read_all(after=start) == []
        assert time.monotonic() - started < 2
        p.end(commit=True)
    assert [e.type for e in eventstore.read_all(after=start)] == ["P", "P+1"]


def test_a_rolled_back_append_leaves_a_hole_that_readers_pass_at_once():
    start = eventstore.last_position()
    with open_append(type="RolledBack") as doomed:
        above = committed("Kept")
        doomed.end(commit=False)
    started = time.monotonic()
    assert [e.type for e in eventstore.read_all(after=start)] == ["Kept"]
    assert time.monotonic() - started < 1
    assert eventstore.read_all(after=above.position) == []


def test_a_vacuum_of_the_event_table_does_not_keep_readers_from_passing_a_final_hole():
    from tests.core.test_eventstore import raw_connection

    start = eventstore.last_position()
    with open_append(type="RolledBack") as doomed:
        committed("Kept")
        doomed.end(commit=False)
    with raw_connection() as vacuum:
        vacuum.execute("LOCK TABLE core_event IN SHARE UPDATE EXCLUSIVE MODE")  # what VACUUM and ANALYZE hold
        assert [e.type for e in eventstore.read_all(after=start)] == ["Kept"]
        vacuum.rollback()


def test_a_reader_that_meets_an_old_hole_waits_for_the_appends_in_flight_and_then_passes_it(settings):
    start = eventstore.last_position()
    with open_append(type="RolledBack") as doomed:
        committed("Kept")
        doomed.end(commit=False)
    with open_append(type="Slow") as slow:  # in flight: the hole below "Kept" cannot be proved yet
        settings.EVENT_STORE_HOLE_GRACE_MS, settings.EVENT_STORE_HOLE_WAIT_MS = 0, 5000
        found, reader_pid = {}, {}

        def read():
            try:
                reader_pid["pid"] = connection.cursor().connection.info.backend_pid
                found["events"] = eventstore.read_all(after=start)
            finally:
                connections.close_all()

        reader = threading.Thread(target=read)
        reader.start()
        wait_until(lambda: "pid" in reader_pid and backend_is_waiting_for_a_lock(reader_pid["pid"]), "the reader waits")
        assert "events" not in found
        slow.end(commit=True)
        reader.join(WAIT)
    assert [e.type for e in found["events"]] == ["Kept", "Slow"]


def test_two_appends_racing_on_one_stream_give_one_event_and_one_conflict():
    stream = uuid.uuid4()
    with open_append(stream_id=stream, type="First") as first:
        outcome = {}

        def second():
            try:
                with transaction.atomic():
                    outcome["pid"] = connection.cursor().connection.info.backend_pid
                    eventstore.append(stream_id=stream, expected_version=0, events=[NewEvent("Second", {})], metadata={})
                outcome["result"] = "appended"
            except ConcurrencyConflict as exc:
                outcome["result"] = exc
            finally:
                connections.close_all()

        racer = threading.Thread(target=second)
        racer.start()
        # The second read version 0 too and now waits on the unique (stream, version) index.
        wait_until(lambda: "pid" in outcome and backend_is_waiting_for_a_lock(outcome["pid"]), "the second append waits")
        first.end(commit=True)
        racer.join(WAIT)
    assert isinstance(outcome["result"], ConcurrencyConflict), outcome
    assert [e.type for e in eventstore.read_stream(stream)] == ["First"]


def test_lag_reads_are_not_held_up_by_an_open_append(settings):
    from analytics.selectors import projection_lag

    settings.EVENT_STORE_HOLE_GRACE_MS, settings.EVENT_STORE_HOLE_WAIT_MS = 0, 100
    with open_append():
        above = committed()
        started = time.monotonic()
        lag = projection_lag()["weekly_income"]
        eventstore.read_all(after=0)
        assert time.monotonic() - started < 2
    assert lag["last_event"] == above.position


def test_a_snapshot_reflects_positions_only_up_to_the_first_one_still_in_flight():
    # Nothing else is in flight: every position up to this one is final, a valid floor.
    floor = committed("Below").position
    with open_append(type="P") as p:
        committed("Above")
        with consistent_read():
            assert eventstore.contiguous_through(floor) == floor
        p.end(commit=True)
    with consistent_read():
        assert eventstore.contiguous_through(floor) == eventstore.last_position() == floor + 2


def test_a_repeatable_read_reader_does_not_pass_a_hole_its_snapshot_cannot_see_filled():
    start = eventstore.last_position()
    with open_append(type="P") as p:
        committed("P+1")
        with consistent_read():
            assert eventstore.read_all(after=start) == []  # takes the snapshot
            p.end(commit=True)
            # P is final now, but committed after this snapshot: still not passed.
            assert eventstore.read_all(after=start) == []
    assert [e.type for e in eventstore.read_all(after=start)] == ["P", "P+1"]


def test_a_hole_proved_final_once_is_passed_later_without_a_new_proof():
    start = eventstore.last_position()
    with open_append(type="RolledBack") as doomed:
        committed("Kept")
        doomed.end(commit=False)
    assert [e.type for e in eventstore.read_all(after=start)] == ["Kept"]  # proved here (nothing in flight)
    with open_append(type="InFlight"):
        # Now a proof could not be had (an append is in flight and the hole is young), but none is needed.
        assert [e.type for e in eventstore.read_all(after=start)] == ["Kept"]


def test_final_position_waits_for_the_appends_in_flight_and_gives_up_in_time():
    with open_append() as open_one:
        started = time.monotonic()
        assert eventstore.final_position(wait_ms=100) is None
        assert time.monotonic() - started < 2
        open_one.end(commit=True)
    assert eventstore.final_position(wait_ms=100) == eventstore.last_position() == open_one.recorded.position
