"""Transaction read model: derived from the event log, written by transactions.services (and replayed by transactions.replay)."""
import uuid
from contextvars import ContextVar

from django.db import models

# Set only by transactions.services while a command writes the row it has just appended
# events for. Anything else writing the row (the admin's change form saving a stale copy,
# a shell session) would make it disagree with the log, so it is refused.
read_model_writes_allowed: ContextVar[bool] = ContextVar("transaction_read_model_writes_allowed", default=False)


class ReadModelWriteRefused(RuntimeError):
    """The Transaction read model is written by the commands in transactions.services only."""


def _check_write_allowed(what: str) -> None:
    if not read_model_writes_allowed.get():
        raise ReadModelWriteRefused(
            f"transactions are {what} only by the commands in transactions.services, which append the events first"
        )


class TransactionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    # Dual control: one approval recorded, a second approver (someone else) still needed.
    AWAITING_SECOND_APPROVAL = "awaiting_second_approval", "Awaiting second approval"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    REVERSED = "reversed", "Reversed"


# Waiting for a decision: what the pending queue shows and what may still be approved or rejected.
UNDECIDED = (TransactionStatus.PENDING, TransactionStatus.AWAITING_SECOND_APPROVAL)


class TransactionQuerySet(models.QuerySet):
    def bulk_create(self, objs, *args, **kwargs):
        # Plain inserts stay open: benchmarks and fault tests build long histories with them,
        # inserting the events alongside. Overwriting existing rows does not.
        if kwargs.get("update_conflicts"):
            _check_write_allowed("updated")
        return super().bulk_create(objs, *args, **kwargs)

    def update(self, **kwargs):
        _check_write_allowed("updated")
        return super().update(**kwargs)

    def bulk_update(self, objs, fields, batch_size=None):
        # Checked here as well: refused inside bulk_update's own atomic block, it would
        # break the caller's transaction too.
        _check_write_allowed("updated")
        return super().bulk_update(objs, fields, batch_size=batch_size)

    def delete(self):
        _check_write_allowed("deleted")
        return super().delete()


class Transaction(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Up to 4 fraction digits: the most any ISO 4217 currency has (CLF, UYW).
    amount = models.DecimalField(max_digits=19, decimal_places=4)
    currency = models.CharField(max_length=3)
    occurred_at = models.DateTimeField()
    reference = models.CharField(max_length=140, blank=True, default="")
    description = models.TextField(max_length=1000, blank=True, default="")
    status = models.CharField(max_length=24, choices=TransactionStatus.choices, default=TransactionStatus.PENDING)
    version = models.PositiveIntegerField()
    created_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.CharField(max_length=150, blank=True, default="")
    decision_reason = models.TextField(max_length=1000, blank=True, default="")
    # Position of the last event folded into this row.
    last_position = models.BigIntegerField()
    # The submission's actor (its event's metadata), "" when the log does not name one (an imported
    # event without an actor): the four-eyes rule compares the approver with it.
    # db_default too: rows inserted in SQL (benchmarks, fault tests building history) need not name it.
    submitted_by = models.CharField(max_length=150, blank=True, default="", db_default="")
    # Dual control: who recorded the first approval; "" unless one was recorded.
    first_approved_by = models.CharField(max_length=150, blank=True, default="", db_default="")

    objects = TransactionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="txn_created_idx"),
            models.Index(fields=["status", "-created_at"], name="txn_status_created_idx"),
            models.Index(fields=["currency", "-created_at"], name="txn_currency_created_idx"),
            # The queue's newest entries (the dashboard snapshot, ?status=pending,awaiting_second_approval):
            # read from here in order, instead of every undecided row fetched and sorted. A decided row
            # leaves it, so it holds only the backlog.
            models.Index(fields=["-created_at", "-id"], name="txn_undecided_created_idx", condition=models.Q(status__in=UNDECIDED)),
            # ?reference= (an exact lookup) and ?occurred_after/before=: without them, a reference that is not
            # there, or an old range, walked the whole table from the newest row.
            models.Index(fields=["reference", "-created_at", "-id"], name="txn_reference_created_idx"),
            models.Index(fields=["occurred_at"], name="txn_occurred_idx"),
        ]
        permissions = [("approve_transaction", "Can approve or reject transactions")]

    def __str__(self):
        return f"{self.amount} {self.currency} ({self.status})"

    def save(self, *args, **kwargs):
        _check_write_allowed("saved")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        _check_write_allowed("deleted")
        return super().delete(*args, **kwargs)
