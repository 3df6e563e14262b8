"""On PostgreSQL, refuse TRUNCATE of stored events unless the session has opted in."""
from django.db import migrations

# Row triggers (0002) do not fire on TRUNCATE, so `manage.py flush` or a stray TRUNCATE
# would empty the log silently. An operator who means it runs
# `SET ledgerpulse.allow_truncate = on` in that session first.
CREATE = """
CREATE OR REPLACE FUNCTION core_event_refuse_truncate() RETURNS trigger AS $$
BEGIN
    IF coalesce(current_setting('ledgerpulse.allow_truncate', true), '') <> 'on' THEN
        RAISE EXCEPTION 'core_event is append-only: TRUNCATE refused'
            USING ERRCODE = 'restrict_violation',
                  HINT = 'SET ledgerpulse.allow_truncate = on in this session to empty the event log deliberately.';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER core_event_no_truncate
    BEFORE TRUNCATE ON core_event
    FOR EACH STATEMENT EXECUTE FUNCTION core_event_refuse_truncate();
"""

DROP = """
DROP TRIGGER IF EXISTS core_event_no_truncate ON core_event;
DROP FUNCTION IF EXISTS core_event_refuse_truncate();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("core", "0004_idempotency_lease")]
    operations = [migrations.RunPython(forwards, backwards)]
