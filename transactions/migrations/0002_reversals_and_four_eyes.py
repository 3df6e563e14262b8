"""Reversals and four-eyes control: two new statuses (the column grows), who submitted, who approved first.

`submitted_by` of the rows already there comes from their TransactionSubmitted event's metadata
`actor` ("" when the event names none): one UPDATE ... FROM on PostgreSQL (a join on the
(stream_id, version) index, fast at a million rows), and chunks of ORM updates on SQLite.
`first_approved_by` starts empty: no first approval was ever recorded before this.
"""
from django.db import migrations, models

ACTOR_MAX = 150
CHUNK = 2000

BACKFILL_POSTGRESQL = f"""
UPDATE transactions_transaction AS t
SET submitted_by = left(e.metadata ->> 'actor', {ACTOR_MAX})
FROM core_event AS e
WHERE e.stream_id = t.id AND e.version = 1 AND e.type = 'TransactionSubmitted'
  AND jsonb_typeof(e.metadata -> 'actor') = 'string' AND e.metadata ->> 'actor' <> ''
"""


def backfill_submitted_by(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKFILL_POSTGRESQL)
        return
    # SQLite (embedded mode, small): read the submissions in chunks, one UPDATE per actor and chunk.
    StoredEvent = apps.get_model("core", "StoredEvent")
    Transaction = apps.get_model("transactions", "Transaction")
    submissions = StoredEvent.objects.filter(version=1, type="TransactionSubmitted").order_by("position")
    chunk: dict[str, list] = {}
    seen = 0
    for stream_id, metadata in submissions.values_list("stream_id", "metadata").iterator(chunk_size=CHUNK):
        actor = metadata.get("actor") if isinstance(metadata, dict) else None
        if isinstance(actor, str) and actor:
            chunk.setdefault(actor[:ACTOR_MAX], []).append(stream_id)
        seen += 1
        if seen % CHUNK == 0:
            _write(Transaction, chunk)
            chunk = {}
    _write(Transaction, chunk)


def _write(Transaction, by_actor: dict[str, list]) -> None:
    for actor, ids in by_actor.items():
        Transaction.objects.filter(pk__in=ids).update(submitted_by=actor)


class Migration(migrations.Migration):

    dependencies = [
        ("core", "0001_initial"),
        ("transactions", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="transaction",
            name="first_approved_by",
            field=models.CharField(blank=True, db_default="", default="", max_length=150),
        ),
        migrations.AddField(
            model_name="transaction",
            name="submitted_by",
            field=models.CharField(blank=True, db_default="", default="", max_length=150),
        ),
        migrations.AlterField(
            model_name="transaction",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "Pending"),
                    ("awaiting_second_approval", "Awaiting second approval"),
                    ("approved", "Approved"),
                    ("rejected", "Rejected"),
                    ("reversed", "Reversed"),
                ],
                default="pending",
                max_length=24,
            ),
        ),
        migrations.RunPython(backfill_submitted_by, migrations.RunPython.noop, elidable=True),
    ]
