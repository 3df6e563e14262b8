"""Tell open sockets when their user's rights change, so they close within seconds.

After a change to a user commits (active, staff or superuser status, password, permissions, groups,
the user deleted) or when one of the user's sessions logs out, an `access.changed` message naming
the user goes to the access group, which each process's hub (realtime.hub) has joined once; the hub
checks that user's local sockets again from the database (realtime.access) and closes them with
4401 or 4403 if the user no longer qualifies (4410 when only the socket's session stopped being
valid). Changes made outside the ORM are caught by the hub's periodic sweep.

Unused tickets of a user whose password or rights changed are spent at once, in the same
transaction, so a ticket issued before the change cannot open a socket after it.

Imports django.contrib.auth only: no domain package.
"""
from __future__ import annotations

import logging
from functools import partial

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from realtime.access import session_digest

logger = logging.getLogger(__name__)

# The user fields whose change can end a socket.
WATCHED_FIELDS = ("password", "is_active", "is_staff", "is_superuser")


def notify(user_id, *, ended_session: str | None = None) -> None:
    """Send access.changed to a user's sockets now. Never raises: the periodic re-check is the safety net."""
    from realtime.broadcast import ACCESS_CHANGED, access_group, send_to_group

    event = {"type": ACCESS_CHANGED, "user_id": str(user_id)}
    if ended_session:
        event["ended_session"] = ended_session
    try:
        send_to_group(access_group(), event)
    except Exception:  # noqa: BLE001
        logger.warning(
            "telling user %s's sockets that their access changed failed; they are re-checked within %s s",
            user_id, settings.REALTIME_ACCESS_RECHECK_SECONDS, exc_info=True,
        )


def notify_after_commit(user_ids, **kwargs) -> None:
    for user_id in dict.fromkeys(user_ids):  # unique, in order
        transaction.on_commit(partial(notify, user_id, **kwargs), robust=True)


def _watched(user) -> tuple:
    return tuple(getattr(user, field, None) for field in WATCHED_FIELDS)


def _touches_watched(update_fields) -> bool:
    return update_fields is None or any(field in update_fields for field in WATCHED_FIELDS)


def user_pre_save(sender, instance, raw=False, update_fields=None, **kwargs):
    if raw or instance.pk is None or not _touches_watched(update_fields):
        return
    fields = [f for f in WATCHED_FIELDS if hasattr(instance, f)]
    row = sender._default_manager.filter(pk=instance.pk).values_list(*fields).first()
    instance._realtime_access_before = None if row is None else dict(zip(fields, row))


def user_post_save(sender, instance, created=False, raw=False, update_fields=None, **kwargs):
    before = instance.__dict__.pop("_realtime_access_before", None)
    if raw or created or not _touches_watched(update_fields):
        return
    after = {field: getattr(instance, field) for field in WATCHED_FIELDS if hasattr(instance, field)}
    if before == after:
        return
    from realtime.tickets import tickets_revoke

    tickets_revoke(user_id=instance.pk)
    notify_after_commit([instance.pk])


def user_post_delete(sender, instance, **kwargs):
    notify_after_commit([instance.pk])


def user_logged_out_handler(sender, request=None, user=None, **kwargs):
    if user is None or getattr(user, "pk", None) is None:
        return
    session = getattr(request, "session", None)
    # Sent before the session is flushed; the digest lets that session's sockets close at once.
    notify_after_commit([user.pk], ended_session=session_digest(getattr(session, "session_key", None)))


def _user_ids_of_groups(group_ids) -> list:
    return list(get_user_model()._default_manager.filter(groups__in=group_ids).values_list("pk", flat=True).distinct())


def user_m2m_handler(field: str):
    """A receiver for user.<field> (user_permissions or groups) changed from either side."""

    def changed(sender, instance, action, reverse, model, pk_set, **kwargs):
        if not reverse:  # instance is the user
            if action in ("post_add", "post_remove", "post_clear"):
                notify_after_commit([instance.pk])
            return
        # instance is a Permission or a Group, model the user model; pk_set holds user ids
        if action == "pre_clear":
            instance._realtime_cleared_users = list(model._default_manager.filter(**{field: instance.pk}).values_list("pk", flat=True))
        elif action in ("post_add", "post_remove"):
            notify_after_commit(sorted(pk_set or ()))
        elif action == "post_clear":
            notify_after_commit(instance.__dict__.pop("_realtime_cleared_users", []))

    changed.__name__ = f"user_{field}_changed"
    return changed


def group_permissions_changed(sender, instance, action, reverse, model, pk_set, **kwargs):
    """A group gained or lost permissions: only matters when a view permission is required."""
    if not settings.REALTIME_VIEW_PERMISSION or action not in ("pre_clear", "post_add", "post_remove", "post_clear"):
        return
    if not reverse:  # instance is the group
        if action != "pre_clear":
            notify_after_commit(_user_ids_of_groups([instance.pk]))
        return
    # instance is a Permission; pk_set holds group ids
    if action == "pre_clear":
        instance._realtime_cleared_groups = list(instance.group_set.values_list("pk", flat=True))
    elif action == "post_clear":
        notify_after_commit(_user_ids_of_groups(instance.__dict__.pop("_realtime_cleared_groups", [])))
    else:
        notify_after_commit(_user_ids_of_groups(sorted(pk_set or ())))


def connect() -> None:
    User = get_user_model()
    pre_save.connect(user_pre_save, sender=User, dispatch_uid="realtime.user_pre_save")
    post_save.connect(user_post_save, sender=User, dispatch_uid="realtime.user_post_save")
    post_delete.connect(user_post_delete, sender=User, dispatch_uid="realtime.user_post_delete")
    user_logged_out.connect(user_logged_out_handler, dispatch_uid="realtime.user_logged_out")
    for field in ("user_permissions", "groups"):
        descriptor = getattr(User, field, None)
        if descriptor is not None and hasattr(descriptor, "through"):
            m2m_changed.connect(
                user_m2m_handler(field), sender=descriptor.through, weak=False, dispatch_uid=f"realtime.user_{field}"
            )
    m2m_changed.connect(group_permissions_changed, sender=Group.permissions.through, dispatch_uid="realtime.group_permissions")

