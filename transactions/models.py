"""Transaction read model: derived from the event log, written only by transactions.services."""
import uuid

from django.db import models


class TransactionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class Transaction(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Up to 4 fraction digits: the most any ISO 4217 currency has (CLF, UYW).
    amount = models.DecimalField(max_digits=19, decimal_places=4)
    currency = models.CharField(max_length=3)
    occurred_at = models.DateTimeField()
    reference = models.CharField(max_length=140, blank=True, default="")
    description = models.TextField(max_length=1000, blank=True, default="")
    status = models.CharField(max_length=8, choices=TransactionStatus.choices, default=TransactionStatus.PENDING)
    version = models.PositiveIntegerField()
    created_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.CharField(max_length=150, blank=True, default="")
    decision_reason = models.TextField(max_length=1000, blank=True, default="")
    # Position of the last event folded into this row.
    last_position = models.BigIntegerField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="txn_created_idx"),
            models.Index(fields=["status", "-created_at"], name="txn_status_created_idx"),
            models.Index(fields=["currency", "-created_at"], name="txn_currency_created_idx"),
        ]
        permissions = [("approve_transaction", "Can approve or reject transactions")]

    def __str__(self):
        return f"{self.amount} {self.currency} ({self.status})"
