"""Django admin for transactions: read-only rows; decisions go through the same commands as the API."""
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm

from core.errors import DomainError
from transactions import services
from transactions.models import Transaction


class DecisionActionForm(ActionForm):
    reason = forms.CharField(required=False, max_length=1000, label="Reason", help_text="Required to reject or reverse")


@admin.register(Transaction)
class TransactionAdmin(admin.ModelAdmin):
    list_display = ["id", "amount", "currency", "status", "occurred_at", "reference", "submitted_by", "first_approved_by", "decided_by"]
    list_filter = ["status", "currency"]
    search_fields = ["id", "reference", "description"]
    ordering = ["-created_at"]
    date_hierarchy = "occurred_at"
    action_form = DecisionActionForm
    actions = ["approve_selected", "reject_selected", "reverse_selected"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Transaction._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # Rows are view-only. The change form would save the copy it read, with every field,
        # over whatever a decision committed meanwhile; decisions go through the actions.
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        # Whoever may decide must see what they decide.
        return super().has_view_permission(request, obj) or self.has_approve_permission(request)

    def has_approve_permission(self, request):
        return request.user.has_perm("transactions.approve_transaction")

    @admin.action(description="Approve selected transactions", permissions=["approve"])
    def approve_selected(self, request, queryset):
        self._decide(request, queryset, services.transaction_approve, "Approved")

    @admin.action(description="Reject selected transactions (give a reason)", permissions=["approve"])
    def reject_selected(self, request, queryset):
        if not request.POST.get("reason", "").strip():
            self.message_user(request, "Give a reason to reject.", messages.ERROR)
            return
        self._decide(request, queryset, services.transaction_reject, "Rejected")

    @admin.action(description="Reverse selected approved transactions (give a reason)", permissions=["approve"])
    def reverse_selected(self, request, queryset):
        if not request.POST.get("reason", "").strip():
            self.message_user(request, "Give a reason to reverse.", messages.ERROR)
            return
        self._decide(request, queryset, services.transaction_reverse, "Reversed")

    def _decide(self, request, queryset, command, verb):
        # Through the commands, like the API: events are appended and dashboards hear of it.
        reason = request.POST.get("reason", "").strip() or "decided in admin"
        done = 0
        for txn_id in queryset.values_list("id", flat=True):
            try:
                command(
                    transaction_id=txn_id,
                    actor=request.user.get_username(),
                    reason=reason,
                    request_id=getattr(request, "id", None),
                    client_request_id=getattr(request, "client_request_id", None),
                )
                done += 1
            except DomainError as exc:
                self.message_user(request, f"{txn_id}: {exc.detail}", messages.WARNING)
        self.message_user(request, f"{verb} {done} transaction(s).", messages.SUCCESS if done else messages.WARNING)
