"""Weekly income projection rows, their history by event position, and the projection's checkpoint."""
from django.db import models

# Totals in minor units as NUMERIC(38, 0): a bigint wraps after about 9,223 transactions at
# the per-transaction maximum, while 38 digits outlast any log (see core.money.TOTAL_DIGITS).
TOTAL_DIGITS = 38


def total_field(**kwargs):
    return models.DecimalField(max_digits=TOTAL_DIGITS, decimal_places=0, **kwargs)


class WeeklyIncome(models.Model):
    week_start = models.DateField()
    currency = models.CharField(max_length=3)
    total_minor = total_field(default=0)
    count = models.PositiveBigIntegerField(default=0)
    # The highest event position that changed this row.
    last_position = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["week_start", "currency"], name="weekly_income_week_currency_unique")]
        ordering = ["week_start", "currency"]

    def __str__(self):
        return f"{self.week_start} {self.currency}: {self.total_minor} ({self.count})"


class WeeklyIncomeHistory(models.Model):
    """A bucket's total and count right after the approval at `position`: one row per approval.

    Time travel (`?at=P`) reads, per bucket, the row with the highest position <= P:
    an index lookup per bucket instead of a replay of the log.
    """

    week_start = models.DateField()
    currency = models.CharField(max_length=3)
    position = models.BigIntegerField()
    total_minor = total_field()
    count = models.PositiveBigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["week_start", "currency", "position"], name="weekly_income_history_bucket_position"),
        ]
        # Which currencies had income by position P.
        indexes = [models.Index(fields=["currency", "position"], name="weekly_income_history_cur_pos")]

    def __str__(self):
        return f"{self.week_start} {self.currency} @{self.position}: {self.total_minor} ({self.count})"


class ProjectionCheckpoint(models.Model):
    """How far a projection has read the event log; moved in the same transaction as its rows."""

    name = models.CharField(max_length=64, primary_key=True)
    position = models.BigIntegerField(default=0)
    # The settings the rows were computed with ("UTC/monday"); a change needs a rebuild.
    config = models.CharField(max_length=100, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.name} @ {self.position}"
