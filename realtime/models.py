"""Single-use websocket tickets: only a digest is stored, never the ticket itself."""
from django.conf import settings
from django.db import models


class RealtimeTicket(models.Model):
    digest = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    # The user's session auth hash when the ticket was issued: a password changed since kills it.
    auth_hash = models.CharField(max_length=128, default="")
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"ticket for user {self.user_id} until {self.expires_at:%H:%M:%S}"
