"""REST permissions: staff to read, model permissions to write (superusers have all)."""
from django.conf import settings
from rest_framework.permissions import BasePermission

# The backends whose permissions holds_perm answers in one query: ModelBackend's (user and group
# permissions), and the login limit's, which grants none. Any other configuration asks Django.
_SQL_BACKENDS = {"core.security.LoginLimitBackend", "django.contrib.auth.backends.ModelBackend"}


def _perm_sql() -> str:
    """One EXISTS over the user's own and their groups' permissions (ModelBackend's rule), with the tables' real names."""
    from django.contrib.auth.models import Group, Permission
    from django.contrib.contenttypes.models import ContentType
    from django.contrib.auth import get_user_model

    user_perms = get_user_model().user_permissions.through._meta.db_table
    user_groups = get_user_model().groups.through._meta.db_table
    group_perms = Group.permissions.through._meta.db_table
    perm, ct = Permission._meta.db_table, ContentType._meta.db_table
    matches = f"p.id = {{}}.permission_id AND p.codename = %s AND ct.id = p.content_type_id AND ct.app_label = %s"
    return (
        f"SELECT EXISTS (SELECT 1 FROM {user_perms} up, {perm} p, {ct} ct WHERE up.user_id = %s AND {matches.format('up')})"
        f" OR EXISTS (SELECT 1 FROM {user_groups} ug, {group_perms} gp, {perm} p, {ct} ct"
        f" WHERE ug.user_id = %s AND gp.group_id = ug.group_id AND {matches.format('gp')})"
    )


_PERM_SQL: list[str] = []


def holds_perm(user, perm: str) -> bool:
    """user.has_perm(perm) in one query instead of ModelBackend's two (per request: the user is read afresh each time).

    Same rule: an inactive user holds nothing, a superuser everything, anyone else what they or a group of theirs were given.
    """
    from django.db import connection

    from core.db import execute_prepared

    if hasattr(user, "_perm_cache"):
        # Read with the user (JWT: core/security.py): ModelBackend answers from it without a query.
        return user.has_perm(perm)
    if set(settings.AUTHENTICATION_BACKENDS) != _SQL_BACKENDS or connection.vendor != "postgresql" or not user.is_authenticated:
        return user.has_perm(perm)
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    app_label, _, codename = perm.partition(".")
    sql = _PERM_SQL[0] if _PERM_SQL else _PERM_SQL.append(_perm_sql()) or _PERM_SQL[0]
    with connection.cursor() as cursor:
        execute_prepared(cursor, sql, [user.pk, codename, app_label, user.pk, codename, app_label])  # planned once per connection
        return bool(cursor.fetchone()[0])


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
            return super().has_permission(request, view) and holds_perm(request.user, perm)

    StaffWithPermission.__name__ = f"StaffWith_{perm.replace('.', '_')}"
    return StaffWithPermission
