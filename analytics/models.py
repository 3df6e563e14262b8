"""Weekly income projection rows and the projection's checkpoint."""
from django.db import models


class WeeklyIncome(models.Model):
    week_start = models.DateField()
    currency = models.CharField(max_length=3)
    total_minor = models.BigIntegerField(default=0)
    count = models.PositiveIntegerField(default=0)
    # The highest event position that changed this row.
    last_position = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["week_start", "currency"], name="weekly_income_week_currency_unique")]
        ordering = ["week_start", "currency"]

    def __str__(self):
        return f"{self.week_start} {self.currency}: {self.total_minor} ({self.count})"


class ProjectionCheckpoint(models.Model):
    """How far a projection has read the event log; moved in the same transaction as its rows."""

    name = models.CharField(max_length=64, primary_key=True)
    position = models.BigIntegerField(default=0)
    # The settings the rows were computed with ("UTC/monday"); a change needs a rebuild.
    config = models.CharField(max_length=100, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.name} @ {self.position}"
