"""Indexes for the queue's newest entries, ?reference= and ?occurred_after/before=, built without blocking writes.

Without them the dashboard snapshot fetched and sorted every undecided row to show 20, and a
reference that is not there (or an old date range) walked the transaction table from the newest
row. On PostgreSQL each index is built CONCURRENTLY (approvals go on meanwhile; the migration is not
atomic for that reason); elsewhere (SQLite, embedded mode) plainly. A concurrent build that fails
halfway (a deadlock, a cancelled statement) leaves its index INVALID, and the migration unrecorded:
running it again drops such an index and builds it anew, and keeps a valid one an earlier run built.
"""
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexOnline(AddIndexConcurrently):
    """AddIndexConcurrently on PostgreSQL; a plain AddIndex on any other database."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return migrations.AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)
        self._ensure_not_in_transaction(schema_editor)
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                "SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
                "WHERE c.relname = %s AND pg_table_is_visible(c.oid)",
                [self.index.name],
            )
            found = cursor.fetchone()
        if found and found[0]:
            return  # built by an earlier run that stopped before the migration was recorded
        if found:
            schema_editor.execute(f"DROP INDEX CONCURRENTLY {schema_editor.quote_name(self.index.name)}")
        return super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ('transactions', '0002_reversals_and_four_eyes'),
    ]

    operations = [
        AddIndexOnline(
            model_name='transaction',
            index=models.Index(condition=models.Q(('status__in', ('pending', 'awaiting_second_approval'))), fields=['-created_at', '-id'], name='txn_undecided_created_idx'),
        ),
        AddIndexOnline(
            model_name='transaction',
            index=models.Index(fields=['reference', '-created_at', '-id'], name='txn_reference_created_idx'),
        ),
        AddIndexOnline(
            model_name='transaction',
            index=models.Index(fields=['occurred_at'], name='txn_occurred_idx'),
        ),
    ]
