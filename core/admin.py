"""Django admin for the event store: strictly read-only."""
from django.contrib import admin

from core.models import StoredEvent


@admin.register(StoredEvent)
class StoredEventAdmin(admin.ModelAdmin):
    list_display = ["position", "type", "stream_id", "version", "recorded_at"]
    list_filter = ["type"]
    search_fields = ["stream_id"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in StoredEvent._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
