"""Weekly income projection rows, their history by event position, and the projections' checkpoints."""
from django.db import models

# Totals in minor units as NUMERIC(38, 0): a bigint wraps after about 9,223 transactions at
# the per-transaction maximum, while 38 digits outlast any log (see core.money.TOTAL_DIGITS).
TOTAL_DIGITS = 38


def total_field(**kwargs):
    return models.DecimalField(max_digits=TOTAL_DIGITS, decimal_places=0, **kwargs)


class WeeklyIncome(models.Model):
    """One (week, currency): approvals by occurred_at week (gross, count), reversals by the week they
    were recorded in (reversed, reversed_count), and total = net = gross - reversed (may be negative)."""

    week_start = models.DateField()
    currency = models.CharField(max_length=3)
    total_minor = total_field(default=0)
    count = models.PositiveBigIntegerField(default=0)
    gross_minor = total_field(default=0)
    reversed_minor = total_field(default=0)
    reversed_count = models.PositiveBigIntegerField(default=0)
    # The highest event position that changed this row.
    last_position = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["week_start", "currency"], name="weekly_income_week_currency_unique")]
        ordering = ["week_start", "currency"]

    def __str__(self):
        return f"{self.week_start} {self.currency}: {self.total_minor} ({self.count}, {self.reversed_count} reversed)"


class WeeklyIncomeHistory(models.Model):
    """A bucket's sums right after the event at `position`: one row per approval or reversal.

    Time travel (`?at=P`) reads, per bucket, the row with the highest position <= P:
    an index lookup per bucket instead of a replay of the log.
    """

    week_start = models.DateField()
    currency = models.CharField(max_length=3)
    position = models.BigIntegerField()
    total_minor = total_field()
    count = models.PositiveBigIntegerField()
    gross_minor = total_field(default=0)
    reversed_minor = total_field(default=0)
    reversed_count = models.PositiveBigIntegerField(default=0)

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


# The review queue (analytics.review_queue): its own rows and checkpoint ("review_queue").
class ReviewQueuePending(models.Model):
    """A transaction waiting for a decision (pending or awaiting its second approval), from its submission event."""

    transaction_id = models.UUIDField(primary_key=True)
    submitted_at = models.DateTimeField()
    position = models.BigIntegerField()

    class Meta:
        # The oldest pending submission: one index probe.
        indexes = [models.Index(fields=["submitted_at"], name="review_pending_submitted")]

    def __str__(self):
        return f"{self.transaction_id} pending since {self.submitted_at}"


class ReviewQueueDecision(models.Model):
    """One approval, rejection or reversal: the week it counts in, who made it, and seconds since submission.

    Kept per decision so a week's percentiles stay exact as batches add to it (percentiles do not
    add up), and a rebuild or a later question can be answered from them.
    """

    position = models.BigIntegerField(primary_key=True)
    transaction_id = models.UUIDField()
    week_start = models.DateField()
    kind = models.CharField(max_length=8)
    actor = models.TextField()
    # None for a reversal, and for a decision whose submission precedes the log.
    seconds = models.BigIntegerField(null=True)

    class Meta:
        # A week's timed decisions in one total order, (seconds, position): a percentile is a marked
        # row in it, and a batch moves the mark a few index entries (analytics.review_queue).
        indexes = [models.Index(fields=["week_start", "seconds", "position"], name="review_decision_week_order")]

    def __str__(self):
        return f"@{self.position} {self.kind} by {self.actor} ({self.week_start})"


class ReviewQueueWeek(models.Model):
    """A week's decisions by kind and its time-to-decision percentiles: what the API reads.

    Each percentile is the decision at its nearest rank among the week's `timed` decisions in
    (seconds, position) order: p50_seconds and p50_position name that row (likewise p90). Ties in
    seconds are ordered by position, so the mark is one row and its rank is known from `timed` alone.
    """

    week_start = models.DateField(primary_key=True)
    approved = models.PositiveBigIntegerField(default=0)
    rejected = models.PositiveBigIntegerField(default=0)
    reversed = models.PositiveBigIntegerField(default=0)
    p50_seconds = models.BigIntegerField(null=True)
    p90_seconds = models.BigIntegerField(null=True)
    last_position = models.BigIntegerField(default=0)
    timed = models.PositiveBigIntegerField(default=0)
    p50_position = models.BigIntegerField(null=True)
    p90_position = models.BigIntegerField(null=True)

    def __str__(self):
        return f"{self.week_start}: {self.approved}/{self.rejected}/{self.reversed}"


class ReviewQueueTotal(models.Model):
    """The count of pending transactions, kept by the batches that change it: one row (id 1), read without counting."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    pending = models.BigIntegerField(default=0)

    def __str__(self):
        return f"{self.pending} pending"


class ReviewQueueAdminWeek(models.Model):
    """Decisions per actor per week."""

    week_start = models.DateField()
    actor = models.TextField()
    decisions = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["week_start", "actor"], name="review_admin_week_actor_unique")]

    def __str__(self):
        return f"{self.week_start} {self.actor}: {self.decisions}"
