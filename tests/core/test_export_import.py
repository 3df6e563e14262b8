"""export_events / import_events: the log archived and restored exactly, line by line, resumable, refusing bad lines."""
import json
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from analytics.rebuild import rebuild_weekly_income
from analytics.verification import verify_weekly_income
from core import eventstore, exchange
from tests.factories import append_held_open, approved, project_all, submit
from transactions import events, replay, services

pytestmark = [pytest.mark.needs_postgres]
ROOT = Path(__file__).resolve().parents[2]
MON = datetime(2026, 9, 7, 9, 30, tzinfo=timezone.utc)


def a_log():
    """Approvals and rejections in four currencies over five weeks, a pending one, and a legacy event with jsonb numbers."""
    for week in range(5):
        when = MON + timedelta(weeks=week, hours=week)
        approved(f"{10 + week}.{week:02d}", "EUR", when)
        approved(str(1000 + week), "JPY", when)
        approved(f"{week}.5", "USD", when + timedelta(days=2))
        txn = submit("99.00", "EUR", when)
        services.transaction_reject(transaction_id=txn.id, actor="tester", reason="duplicate")
    approved("1.2345", "CLF", MON)
    submit("7.00", "USD", MON)
    stream = submit("3.10", "EUR", MON).id
    event = events.approved(transaction_id=stream, amount=Decimal("3.10"), currency="EUR", occurred_at=MON, reason="")
    # A number jsonb keeps with its trailing zero (a float would lose it), as an older version could have stored it
    # (deciding the row as the commands do).
    data = json.dumps(event.data)[:-1] + ', "legacy_rate": 1.10}'
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO core_event (stream_id, version, type, data, metadata, recorded_at) VALUES (%s, 2, %s, %s::jsonb, %s::jsonb, now()) "
            "RETURNING position, recorded_at",
            [stream, event.type, data, json.dumps({"actor": "legacy", "note": "é ✓"})],
        )
        position, recorded_at = cursor.fetchone()
        cursor.execute("UPDATE transactions_transaction SET status = 'approved', version = 2, decided_at = %s, decided_by = 'legacy', "
                       "last_position = %s WHERE id = %s", [recorded_at, position, stream])


def exported(**options) -> list[str]:
    out = StringIO()
    call_command("export_events", stdout=out, stderr=StringIO(), **options)
    return out.getvalue().splitlines(keepends=True)


def stored_log(cursor) -> list[tuple]:
    cursor.execute("SELECT position, stream_id, version, type, data::text, metadata::text, recorded_at FROM core_event ORDER BY 1")
    return cursor.fetchall()


def projection(cursor) -> tuple[list, list, int]:
    cursor.execute("SELECT week_start, currency, total_minor, count, last_position FROM analytics_weeklyincome ORDER BY 1, 2")
    rows = cursor.fetchall()
    cursor.execute("SELECT week_start, currency, position, total_minor, count FROM analytics_weeklyincomehistory ORDER BY 1, 2, 3")
    history = cursor.fetchall()
    cursor.execute("SELECT position FROM analytics_projectioncheckpoint WHERE name = 'weekly_income'")
    return rows, history, cursor.fetchone()[0]


def transaction_list(cursor) -> list[tuple]:
    """Every column of the transaction list (the read model rebuild_transactions replays)."""
    cursor.execute("SELECT id, amount, currency, occurred_at, reference, description, status, version, created_at, decided_at, "
                   "decided_by, decision_reason, last_position FROM transactions_transaction ORDER BY id")
    return cursor.fetchall()


def empty_the_log():
    """What a fresh database has: no events, no projection (TRUNCATE of the log needs the deliberate opt-in)."""
    with connection.cursor() as cursor:
        cursor.execute("SET ledgerpulse.allow_truncate = on")
        cursor.execute("TRUNCATE core_event, analytics_weeklyincome, analytics_weeklyincomehistory, analytics_projectioncheckpoint, "
                       "transactions_transaction")


@pytest.fixture
def fresh_database():
    """An empty, migrated database of its own (manage.py migrate in a child process); dropped afterwards."""
    from tests.stack import stack_env

    params = connection.settings_dict
    name = f"{params['NAME']}_restore_{uuid.uuid4().hex[:8]}"
    base = f"postgres://{params['USER'] or 'postgres'}@{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 5432}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    env = stack_env(DATABASE_URL=f"{base}/{name}", LOG_LEVEL="WARNING")

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
                              stdin=subprocess.DEVNULL)

    try:
        migrated = manage("migrate", "-v", "0")
        assert migrated.returncode == 0, migrated.stderr
        with psycopg.connect(f"{base}/{name}", autocommit=True) as conn:
            yield manage, conn
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.e2e
@pytest.mark.no_deadline
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(300)
def test_it_exports_a_log_that_a_fresh_database_imports_and_rebuilds_to_identical_totals(fresh_database, tmp_path):
    manage, restored = fresh_database
    a_log()
    project_all()
    archive = tmp_path / "log.jsonl"
    call_command("export_events", "--output", str(archive), stderr=StringIO())

    imported = manage("import_events", str(archive))
    assert imported.returncode == 0, imported.stderr
    assert "Now run `manage.py rebuild_projections`" in imported.stdout
    rebuilt = manage("rebuild_projections")
    assert rebuilt.returncode == 0, rebuilt.stderr
    verified = manage("verify_projections")
    assert verified.returncode == 0, verified.stderr
    listed = manage("rebuild_transactions")
    assert listed.returncode == 0, listed.stderr

    with connection.cursor() as cursor, restored.cursor() as theirs:
        assert stored_log(theirs) == stored_log(cursor)  # positions, jsonb text and instants, exactly
        assert projection(theirs) == projection(cursor)
        assert transaction_list(theirs) == transaction_list(cursor)  # every column, the pending ones too
        theirs.execute("SELECT last_value FROM core_event_position_seq")
        assert theirs.fetchone()[0] == eventstore.last_position()  # the next append goes after the imported log
    legacy = json.loads(archive.read_text().splitlines()[-1])
    assert '"legacy_rate": 1.10' in archive.read_text() and legacy["metadata"] == {"actor": "legacy", "note": "é ✓"}


@pytest.mark.django_db(transaction=True)
def test_an_interrupted_import_goes_on_where_it_stopped_and_the_rebuild_gives_the_same_totals():
    a_log()
    project_all()
    lines = exported()
    with connection.cursor() as cursor:
        before_log, before_projection, before_list = stored_log(cursor), projection(cursor), transaction_list(cursor)
    empty_the_log()

    class Interrupted(Exception):
        pass

    def killed_after(count):
        for n, line in enumerate(lines):
            if n == count:
                raise Interrupted
            yield line

    with pytest.raises(Interrupted):
        exchange.import_lines(killed_after(17), batch_size=5)
    assert eventstore.last_position() == json.loads(lines[14])["position"]  # three whole batches were committed
    result = exchange.import_lines(lines, batch_size=5)
    assert (result.skipped, result.imported) == (15, len(lines) - 15)
    rebuild_weekly_income()
    replay.replay(batch_size=7)
    with connection.cursor() as cursor:
        assert stored_log(cursor) == before_log
        assert projection(cursor)[:2] == before_projection[:2]
        assert transaction_list(cursor) == before_list
    assert verify_weekly_income() == []
    # The sequence moved past the import: the next approval is appended after it.
    assert approved("1.00", "EUR", MON).position > json.loads(lines[-1])["position"]


BAD_LINES = {
    "cut-short": ('{"position": 3, "stream_id": ', "line 3: line: not valid JSON"),
    "missing-version": ({"version": None}, "line 3: version: missing"),
    "unknown-field": ({"extra": 1}, "line 3: extra: unknown field"),
    "naive-instant": ({"recorded_at": "2026-09-07T09:30:00"}, "line 3: recorded_at: must carry its UTC offset"),
    "not-an-instant": ({"recorded_at": "yesterday"}, "line 3: recorded_at: must be an ISO 8601 date and time"),
    "bad-stream": ({"stream_id": "abc"}, "line 3: stream_id: must be a UUID"),
    "position-order": ({"position": 1}, "line 3: position: 1 does not follow"),
    "text-position": ({"position": "3"}, "line 3: position: must be an integer"),
    "data-list": ({"data": []}, "line 3: data: must be a JSON object"),
    # The data as the read models will read it: a line that would stop every projection is refused before it is stored.
    "unknown-type": ({"type": "TransactionApprovd"}, "line 3: type: unknown event type 'TransactionApprovd'; this version knows "),
    "amount-as-number": ({"data": {"amount": 2.0}}, "line 3: data.amount: must be a JSON string, not a JSON number"),
    "amount-not-money": ({"data": {"amount": "2.001"}}, "line 3: data.amount: EUR allows at most 2 decimal places"),
    "amount-missing": ({"data": {"amount": None}}, "line 3: data.amount: missing"),
    "currency-unknown": ({"data": {"currency": "EUX"}}, "line 3: data.currency: "),
    "currency-lower-case": ({"data": {"currency": "eur"}}, r"line 3: data.currency: must be upper case \(EUR\)"),
    "naive-occurred-at": ({"data": {"occurred_at": "2026-09-07T09:30:00"}}, "line 3: data.occurred_at: must carry its UTC offset"),
    # Forms Python reads but PostgreSQL (the rebuild) reads differently or not at all: one week, whoever reads it.
    "occurred-at-week-date": ({"data": {"occurred_at": "2026-W37-1T09:30:00+00:00"}}, "line 3: data.occurred_at: must be an ISO 8601 date and time like"),
    "occurred-at-basic-form": ({"data": {"occurred_at": "20260907T093000+0000"}}, "line 3: data.occurred_at: must be an ISO 8601"),
    "occurred-at-seven-digits": ({"data": {"occurred_at": "2026-09-06T23:59:59.9999999+00:00"}}, r"line 3: data.occurred_at: .*at most 6 fractional"),
    "occurred-at-far-offset": ({"data": {"occurred_at": "2026-09-07T09:30:00+18:00"}}, "line 3: data.occurred_at: must carry a UTC offset between"),
    "recorded-at-far-offset": ({"recorded_at": "2026-09-07T09:30:00-16:00"}, "line 3: recorded_at: must carry a UTC offset between"),
    "other-stream": ({"data": {"transaction_id": "00000000-0000-4000-8000-000000000000"}},
                     "line 3: data.transaction_id: 00000000-0000-4000-8000-000000000000 is not the event's stream_id"),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("corruption", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_a_corrupted_line_is_refused_with_its_number_and_field_and_nothing_is_imported(corruption, tmp_path):
    change, message = corruption
    for amount in ("1.00", "2.00"):
        approved(amount, "EUR", MON)  # four events
    lines = exported()
    empty_the_log()
    if isinstance(change, str):
        lines[2] = change + "\n"
    else:
        event = json.loads(lines[2])
        for key, value in change.items():
            if value is None:
                del event[key]
            elif key == "data" and isinstance(value, dict):
                for name, given in value.items():  # one field of the data changed, or removed with None
                    if given is None:
                        del event["data"][name]
                    else:
                        event["data"][name] = given
            else:
                event[key] = value
        lines[2] = json.dumps(event) + "\n"
    archive = tmp_path / "bad.jsonl"
    archive.write_text("".join(lines))
    with pytest.raises(CommandError, match=message):
        call_command("import_events", str(archive), stdout=StringIO())
    assert eventstore.last_position() == 0


def another_stream(event: dict, *, position: int) -> dict:
    """The same event at `position` for a new transaction (its data names the stream, as the commands write it)."""
    stream = str(uuid.uuid4())
    return event | {"position": position, "stream_id": stream, "data": event["data"] | {"transaction_id": stream}}


@pytest.mark.django_db(transaction=True)
def test_an_import_refuses_to_rewrite_a_stored_event_or_fill_a_hole():
    approved("1.00", "EUR", MON)
    lines = exported()
    event = json.loads(lines[1])
    event["data"]["amount"] = "1000.00"
    with pytest.raises(exchange.ImportLineError, match=r"line 2: data: position \d+ is already stored with a different data"):
        exchange.import_lines([lines[0], json.dumps(event)])
    assert exchange.import_lines(lines).skipped == 2  # the same lines again: identical, skipped
    head = eventstore.last_position()
    hole, after = (another_stream(json.loads(lines[0]), position=head + n) for n in (2, 4))
    assert exchange.import_lines([json.dumps(after)]).imported == 1
    with pytest.raises(exchange.ImportLineError,
                       match=f"line 1: position: {head + 2} is not stored and lies below the log's last position {head + 4}"):
        exchange.import_lines([json.dumps(hole)])
    clash = json.loads(lines[0]) | {"position": head + 6}
    with pytest.raises(exchange.ImportLineError, match=r"line 1: version: this stream already has that version, at position \d+"):
        exchange.import_lines([json.dumps(clash)])
    twins = [another_stream(json.loads(lines[0]), position=head + 7)]
    twins.append(twins[0] | {"position": head + 8})
    with pytest.raises(exchange.ImportLineError, match="line 2: version: line 1 has the same stream_id and version"):
        exchange.import_lines([json.dumps(t) for t in twins])
    assert eventstore.last_position() == head + 4


@pytest.mark.django_db(transaction=True)
def test_an_export_resumes_after_its_last_whole_line_and_continues_with_what_came_later(tmp_path):
    a_log()
    whole = exported()
    archive = tmp_path / "log.jsonl"
    archive.write_text("".join(whole[:10]) + whole[10][:25])  # killed while writing line 11
    err = StringIO()
    call_command("export_events", "--output", str(archive), "--resume", stderr=err)
    assert archive.read_text() == "".join(whole)
    assert f"after position {json.loads(whole[9])['position']}" in err.getvalue()
    later = approved("5.00", "USD", MON)
    call_command("export_events", "--output", str(archive), "--resume", stderr=StringIO())
    assert json.loads(archive.read_text().splitlines()[-1])["position"] == later.position
    assert exported(after=later.position) == []
    # Positions stay as they were, holes included: a rolled-back append leaves one.
    positions = [json.loads(line)["position"] for line in archive.read_text().splitlines()]
    assert positions == sorted(positions) and positions[-1] == eventstore.last_position()


@pytest.mark.django_db(transaction=True)
def test_the_export_streams_through_a_server_side_cursor_in_batches():
    for n in range(7):
        approved(f"{n + 1}.00", "EUR", MON)
    result = exchange.ExportResult()
    lines = list(exchange.export_lines(batch_size=3, result=result))
    first = json.loads(lines[0])["position"]
    assert [json.loads(line)["position"] for line in lines] == list(range(first, first + 14))
    assert (result.events, result.last, result.through) == (14, first + 13, eventstore.last_position())


@pytest.mark.django_db(transaction=True)
def test_an_export_never_passes_an_append_still_in_flight():
    from django.test import override_settings

    approved("1.00", "EUR", MON)
    with append_held_open():
        # A committed approval above the one in flight: exporting it would pass a position that may still commit.
        later = approved("2.00", "EUR", MON)
        with override_settings(EVENT_STORE_LOCK_TIMEOUT_MS=100), pytest.raises(CommandError, match="appends kept the event log busy"):
            exported()
    positions = [json.loads(line)["position"] for line in exported()]
    assert positions[-1] == later.position and later.position - 2 not in positions  # the rolled-back append left a hole
