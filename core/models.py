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
    # The global position: assigned by the database sequence while the appender
    # holds the table lock (see core.eventstore), so it grows in commit order.
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
