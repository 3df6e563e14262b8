"""The signed-in variant's permission (status_site.settings.SIGNED_IN): Django's own model permission."""
from rest_framework.permissions import BasePermission


class MayApprove(BasePermission):
    def has_permission(self, request, view):
        return request.user.has_perm("items.change_item")
