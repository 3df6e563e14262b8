"""The event store table: an append-only log of domain events with a global position."""
from django.db import models


class ImmutableEventError(Exception):
    """Stored events are facts: they are never updated or deleted."""


class StoredEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise ImmutableEventError("stored events cannot be updated")

    def delete(self):
        raise ImmutableEventError("stored events cannot be deleted")

    def bulk_update(self, objs, fields, batch_size=None):
        raise ImmutableEventError("stored events cannot be updated")

    def update_or_create(self, *args, **kwargs):
        raise ImmutableEventError("stored events cannot be updated")


class StoredEvent(models.Model):
    # The global position, from the column's sequence (CACHE 1, never cycling) at INSERT
    # time. Transactions commit in any order, so a lower position can become visible after
    # a higher one: read the log only through core.eventstore.read_all, which never passes
    # a position that may still commit (the argument is in that module's docstring).
    position = models.BigAutoField(primary_key=True)
    stream_id = models.UUIDField()
    version = models.PositiveIntegerField()
    type = models.CharField(max_length=100)
    data = models.JSONField()
    metadata = models.JSONField(default=dict)
    recorded_at = models.DateTimeField()

    objects = StoredEventQuerySet.as_manager()

    class Meta:
        db_table = "core_event"
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["stream_id", "version"], name="core_event_stream_version_unique"),
        ]

    def __str__(self):
        return f"#{self.position} {self.type} {self.stream_id} v{self.version}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableEventError("stored events cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableEventError("stored events cannot be deleted")


class IdempotencyRecord(models.Model):
    """One Idempotency-Key of one user: in progress (leased to one request) until the first answer is stored with it."""

    # The user's id, not a foreign key: records live 24 h (see core.idempotency), so
    # cascading deletes buy nothing and the insert takes no lock on the user row.
    user_id = models.BigIntegerField()
    key = models.CharField(max_length=255)
    # sha256 of method, path and body: a retry must be the same request.
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # While in progress, the request holding the lease runs; once it expires a retry may take
    # the key over with a new token (null: expired). The answer is stored only by the holder
    # of the current token, in the same transaction as the command (see core.idempotency).
    locked_until = models.DateTimeField(null=True)
    lease_token = models.UUIDField(null=True)
    # Null while the first request runs.
    status_code = models.PositiveSmallIntegerField(null=True)
    content_type = models.CharField(max_length=100, blank=True)
    # The rendered JSON as text: jsonb would reorder the keys, and replays must match byte for byte.
    response_body = models.TextField(blank=True)

    class Meta:
        db_table = "core_idempotency_record"
        constraints = [
            models.UniqueConstraint(fields=["user_id", "key"], name="core_idempotency_user_key_unique"),
        ]

    def __str__(self):
        return f"{self.user_id}:{self.key} -> {self.status_code or 'in progress'}"
