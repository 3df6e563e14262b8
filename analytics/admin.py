"""Django admin for analytics: projection rows are derived data, shown read-only."""
from django.contrib import admin

from analytics.models import ProjectionCheckpoint, WeeklyIncome


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(WeeklyIncome)
class WeeklyIncomeAdmin(ReadOnlyAdmin):
    list_display = ["week_start", "currency", "total_minor", "count", "gross_minor", "reversed_minor", "reversed_count", "last_position"]
    list_filter = ["currency"]


@admin.register(ProjectionCheckpoint)
class ProjectionCheckpointAdmin(ReadOnlyAdmin):
    list_display = ["name", "position", "config", "updated_at"]
