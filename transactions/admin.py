"""Django admin for transactions: read-only rows; decisions go through the same commands as the API."""
from django.contrib import admin, messages

from core.errors import DomainError
from transactions import services
from transactions.models import Transaction, TransactionStatus


@admin.register(Transaction)
class TransactionAdmin(admin.ModelAdmin):
    list_display = ["id", "amount", "currency", "status", "occurred_at", "reference", "decided_by"]
    list_filter = ["status", "currency"]
    search_fields = ["id", "reference", "description"]
    ordering = ["-created_at"]
    actions = ["approve_selected"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Transaction._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Approve selected pending transactions", permissions=["approve"])
    def approve_selected(self, request, queryset):
        approved = 0
        for txn in queryset.filter(status=TransactionStatus.PENDING):
            try:
                services.transaction_approve(
                    transaction_id=txn.id, actor=request.user.get_username(), reason="approved in admin",
                    request_id=getattr(request, "id", None),
                )
                approved += 1
            except DomainError as exc:
                self.message_user(request, f"{txn.id}: {exc.detail}", messages.WARNING)
        self.message_user(request, f"Approved {approved} transaction(s).", messages.SUCCESS)

    def has_approve_permission(self, request):
        return request.user.has_perm("transactions.approve_transaction")
