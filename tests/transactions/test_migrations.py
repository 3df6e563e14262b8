"""Migration 0002: rows that existed before get submitted_by from their submission event's metadata actor."""
import importlib
import json
import uuid
from types import SimpleNamespace

import pytest
from django.db import connection

from tests.database import migrate, migrated_to

pytestmark = [pytest.mark.needs_postgres, pytest.mark.django_db(transaction=True)]
BEFORE, AFTER = [("transactions", "0001_initial")], [("transactions", "0002_reversals_and_four_eyes")]
MIGRATION = importlib.import_module("transactions.migrations.0002_reversals_and_four_eyes")


@pytest.fixture
def before_0002():
    with migrated_to(BEFORE, "transactions"):
        yield


def old_row(metadata, *, submitted=True) -> uuid.UUID:
    """A transaction as 0001 stored it, with its submission event (and an approval, which must not matter)."""
    stream = uuid.uuid4()
    with connection.cursor() as cursor:
        if submitted:
            cursor.execute("INSERT INTO core_event (stream_id, version, type, data, metadata, recorded_at) "
                           "VALUES (%s, 1, 'TransactionSubmitted', '{}'::jsonb, %s::jsonb, now())", [stream, json.dumps(metadata)])
            cursor.execute("INSERT INTO core_event (stream_id, version, type, data, metadata, recorded_at) "
                           "VALUES (%s, 2, 'TransactionApproved', '{}'::jsonb, '{\"actor\": \"approver\"}'::jsonb, now())", [stream])
        cursor.execute("INSERT INTO transactions_transaction (id, amount, currency, occurred_at, reference, description, status, "
                       "version, created_at, decided_by, decision_reason, last_position) "
                       "VALUES (%s, 5, 'EUR', now(), '', '', 'approved', 2, now(), 'approver', '', 1)", [stream])
    return stream


def stored(stream) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute("SELECT submitted_by, first_approved_by, status FROM transactions_transaction WHERE id = %s", [stream])
        return cursor.fetchone()


@pytest.mark.parametrize("path", ["postgresql", "python"])
def test_it_backfills_submitted_by_from_the_submission_events_actor(before_0002, path):
    cases = {
        "ana": old_row({"actor": "ana", "request_id": "r"}),
        "system": old_row({"actor": "system"}),
        "no actor": old_row({}),
        "actor not text": old_row({"actor": 7}),
        "empty actor": old_row({"actor": ""}),
        "very long": old_row({"actor": "x" * 200}),
        "no event": old_row({}, submitted=False),
    }
    if path == "postgresql":
        migrate(AFTER)
    else:
        # The SQLite branch (chunks of ORM updates), run here against the same rows: columns first, then its backfill.
        apps = migrate(AFTER)
        with connection.cursor() as cursor:
            cursor.execute("UPDATE transactions_transaction SET submitted_by = ''")
        MIGRATION.CHUNK = 2  # several chunks from seven rows
        try:
            MIGRATION.backfill_submitted_by(apps, SimpleNamespace(connection=SimpleNamespace(vendor="sqlite")))
        finally:
            MIGRATION.CHUNK = 2000
    assert {name: stored(stream) for name, stream in cases.items()} == {
        "ana": ("ana", "", "approved"),
        "system": ("system", "", "approved"),
        "no actor": ("", "", "approved"),
        "actor not text": ("", "", "approved"),
        "empty actor": ("", "", "approved"),
        "very long": ("x" * 150, "", "approved"),
        "no event": ("", "", "approved"),
    }


def _indexes() -> dict[str, bool]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'transactions_transaction'::regclass AND c.relname = ANY(%s)",
            [["txn_undecided_created_idx", "txn_reference_created_idx", "txn_occurred_idx"]],
        )
        return dict(cursor.fetchall())


def test_0003_run_again_after_a_build_failed_halfway_rebuilds_the_invalid_index_and_keeps_the_valid_one():
    with migrated_to([("transactions", "0002_reversals_and_four_eyes")], "transactions"):
        with connection.cursor() as cursor:
            # What a first run that stopped on its second index leaves: the first built, the second INVALID.
            cursor.execute('CREATE INDEX "txn_undecided_created_idx" ON transactions_transaction (created_at DESC, id DESC) '
                           "WHERE status IN ('pending', 'awaiting_second_approval')")
            cursor.execute('CREATE INDEX "txn_reference_created_idx" ON transactions_transaction (reference)')
            cursor.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'txn_reference_created_idx'::regclass")
        assert _indexes() == {"txn_undecided_created_idx": True, "txn_reference_created_idx": False}
        migrate([("transactions", "0003_queue_reference_occurred_indexes")])
        assert _indexes() == {"txn_undecided_created_idx": True, "txn_reference_created_idx": True, "txn_occurred_idx": True}
        with connection.cursor() as cursor:
            # Built anew from the migration's own definition, not the stray one.
            cursor.execute("SELECT pg_get_indexdef('txn_reference_created_idx'::regclass)")
            assert "(reference, created_at DESC, id DESC)" in cursor.fetchone()[0]
