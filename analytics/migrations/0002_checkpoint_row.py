"""Create the weekly income checkpoint row with the settings in force."""
from django.conf import settings
from django.db import migrations


def forwards(apps, schema_editor):
    Checkpoint = apps.get_model("analytics", "ProjectionCheckpoint")
    Checkpoint.objects.get_or_create(
        name="weekly_income",
        defaults={"position": 0, "config": f"{settings.ANALYTICS_TIME_ZONE}/{settings.ANALYTICS_WEEK_START}"},
    )


class Migration(migrations.Migration):
    dependencies = [("analytics", "0001_initial")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
