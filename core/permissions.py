"""REST permissions: staff to read, model permissions to write (superusers have all)."""
from rest_framework.permissions import BasePermission


class IsStaff(BasePermission):
    message = "Only staff users may use this API."

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff)


def staff_with(perm: str) -> type[BasePermission]:
    """A permission class: an authenticated staff user holding `perm`."""

    class StaffWithPermission(IsStaff):
        message = f"This needs the {perm} permission."

        def has_permission(self, request, view):
            return super().has_permission(request, view) and request.user.has_perm(perm)

    StaffWithPermission.__name__ = f"StaffWith_{perm.replace('.', '_')}"
    return StaffWithPermission
