"""The review-queue projection's tables (analytics.review_queue); its checkpoint row is created by the projector."""
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("analytics", "0003_weekly_income_exact_totals_and_history"),
    ]

    operations = [
        migrations.CreateModel(
            name="ReviewQueuePending",
            fields=[
                ("transaction_id", models.UUIDField(primary_key=True, serialize=False)),
                ("submitted_at", models.DateTimeField()),
                ("position", models.BigIntegerField()),
            ],
            options={
                "indexes": [models.Index(fields=["submitted_at"], name="review_pending_submitted")],
            },
        ),
        migrations.CreateModel(
            name="ReviewQueueDecision",
            fields=[
                ("position", models.BigIntegerField(primary_key=True, serialize=False)),
                ("transaction_id", models.UUIDField()),
                ("week_start", models.DateField()),
                ("kind", models.CharField(max_length=8)),
                ("actor", models.TextField()),
                ("seconds", models.BigIntegerField(null=True)),
            ],
            options={
                "indexes": [models.Index(fields=["week_start", "seconds"], name="review_decision_week_seconds")],
            },
        ),
        migrations.CreateModel(
            name="ReviewQueueWeek",
            fields=[
                ("week_start", models.DateField(primary_key=True, serialize=False)),
                ("approved", models.PositiveBigIntegerField(default=0)),
                ("rejected", models.PositiveBigIntegerField(default=0)),
                ("reversed", models.PositiveBigIntegerField(default=0)),
                ("p50_seconds", models.BigIntegerField(null=True)),
                ("p90_seconds", models.BigIntegerField(null=True)),
                ("last_position", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.CreateModel(
            name="ReviewQueueAdminWeek",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("week_start", models.DateField()),
                ("actor", models.TextField()),
                ("decisions", models.PositiveBigIntegerField(default=0)),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("week_start", "actor"), name="review_admin_week_actor_unique")],
            },
        ),
    ]
