"""On PostgreSQL, refuse UPDATE and DELETE on stored events in the database itself."""
from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION core_event_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'core_event is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER core_event_immutable
    BEFORE UPDATE OR DELETE ON core_event
    FOR EACH ROW EXECUTE FUNCTION core_event_refuse_change();
"""

DROP = """
DROP TRIGGER IF EXISTS core_event_immutable ON core_event;
DROP FUNCTION IF EXISTS core_event_refuse_change();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("core", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
