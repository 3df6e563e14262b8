"""Open sockets do not outlive their user's rights or their session: they close within seconds, 4401, 4403 or 4410."""
import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.sessions.models import Session

from realtime.broadcast import publish
from realtime.tickets import ticket_issue
from tests.realtime.support import ORIGIN, closed, logged_in, session_cookie_for, snapshot_of, socket

pytestmark = pytest.mark.django_db(transaction=True)
User = get_user_model()
VIEW = "transactions.view_transaction"


def change_user(user_id, **fields):
    """Through the ORM, as the admin or a command would: signals fire."""
    user = User.objects.get(pk=user_id)
    for name, value in fields.items():
        setattr(user, name, value)
    user.save()


def change_password(user_id, raw):
    user = User.objects.get(pk=user_id)
    user.set_password(raw)
    user.save()


def transaction_message(seq):
    return {"type": "transaction.submitted", "seq": seq, "transaction": {"id": f"t{seq}"}}


async def test_it_closes_a_deactivated_users_socket_with_4401_and_sends_it_nothing_more(staff_user, admin_user, client_for):
    _, cookie = await logged_in(client_for, staff_user)
    _, admin_cookie = await logged_in(client_for, admin_user)
    async with socket(ORIGIN, cookie) as ws, socket(ORIGIN, admin_cookie) as bystander:
        seq = (await snapshot_of(ws))["seq"]
        await snapshot_of(bystander)
        await database_sync_to_async(change_user)(staff_user.pk, is_active=False)
        assert await ws.receive_output(timeout=3) == closed(4401, "account deactivated")
        await sync_to_async(publish)([transaction_message(seq + 1)], after=seq, through=seq + 1)
        assert await ws.receive_nothing(timeout=0.3)
        # Everyone else is still served.
        assert (await bystander.receive_json_from(timeout=3))["seq"] == seq + 1


async def test_it_closes_the_socket_with_4403_when_staff_status_is_removed(staff_user, client_for):
    _, cookie = await logged_in(client_for, staff_user)
    async with socket(ORIGIN, cookie) as ws:
        await snapshot_of(ws)
        await database_sync_to_async(change_user)(staff_user.pk, is_staff=False)
        assert await ws.receive_output(timeout=3) == closed(4403, "staff only")


async def test_it_closes_a_session_socket_with_4410_when_the_password_changes_and_its_reconnect_with_4401(staff_user, client_for):
    _, cookie = await logged_in(client_for, staff_user)
    async with socket(ORIGIN, cookie) as ws:
        await snapshot_of(ws)
        await database_sync_to_async(change_password)(staff_user.pk, "a-brand-new-password-456")
        assert await ws.receive_output(timeout=3) == closed(4410, "session ended; reconnect")
    async with socket(ORIGIN, cookie) as again:
        assert await again.receive_output(timeout=3) == closed(4401, "authentication required")


def change_own_password(client, old, new):
    """In the admin, in this client's session: Django keeps the session signed in, under a new key."""
    response = client.post("/admin/password_change/", {"old_password": old, "new_password1": new, "new_password2": new})
    assert response.status_code == 302, response.status_code
    return session_cookie_for(client)


async def test_it_closes_a_socket_whose_session_changed_its_own_password_with_4410_and_its_browser_reconnects(staff_user, client_for):
    client, cookie = await logged_in(client_for, staff_user)
    async with socket(ORIGIN, cookie) as ws:
        await snapshot_of(ws)
        renewed = await database_sync_to_async(change_own_password)(client, "viewer-password-123", "a-Brand-new-pass-4567")
        # Not "signed out": the browser still is signed in, under the renewed session key.
        assert await ws.receive_output(timeout=3) == closed(4410, "session ended; reconnect")
    async with socket(ORIGIN, renewed) as again:
        await snapshot_of(again)
    # Whoever else held the old key (a stolen cookie: why Django renews it) is not let back in.
    async with socket(ORIGIN, cookie) as stale:
        assert await stale.receive_output(timeout=3) == closed(4401, "authentication required")


async def test_it_closes_a_ticket_socket_with_4401_when_the_password_changes(staff_user):
    ticket, _ = await database_sync_to_async(ticket_issue)(user=staff_user)
    async with socket(ORIGIN, path=f"/ws/dashboard/?ticket={ticket}") as ws:
        await snapshot_of(ws)
        await database_sync_to_async(change_password)(staff_user.pk, "a-brand-new-password-456")
        assert await ws.receive_output(timeout=3) == closed(4401, "password changed; sign in again")


async def test_it_closes_the_socket_with_4401_when_its_session_logs_out(staff_user, client_for):
    client, cookie = await logged_in(client_for, staff_user)
    async with socket(ORIGIN, cookie) as ws:
        await snapshot_of(ws)
        await database_sync_to_async(client.logout)()
        assert await ws.receive_output(timeout=3) == closed(4401, "signed out")


async def test_it_keeps_the_sockets_of_the_users_other_sessions_when_one_logs_out(staff_user, client_for):
    leaving, leaving_cookie = await logged_in(client_for, staff_user)
    _, staying_cookie = await logged_in(client_for, staff_user)
    async with socket(ORIGIN, leaving_cookie) as gone, socket(ORIGIN, staying_cookie) as kept:
        await snapshot_of(gone)
        await snapshot_of(kept)
        await database_sync_to_async(leaving.logout)()
        assert (await gone.receive_output(timeout=3))["code"] == 4401
        assert await kept.receive_nothing(timeout=0.3)
        await kept.send_json_to({"type": "ping"})
        assert await kept.receive_json_from() == {"type": "pong"}


async def test_it_closes_the_socket_with_4410_when_its_session_is_deleted_elsewhere(staff_user, client_for, settings):
    settings.REALTIME_ACCESS_RECHECK_SECONDS = 1
    client, cookie = await logged_in(client_for, staff_user)
    session_key = client.cookies["sessionid"].value
    async with socket(ORIGIN, cookie) as ws:
        await snapshot_of(ws)
        # No signal: a logout from another tab's server, `clearsessions`, an operator's DELETE.
        await database_sync_to_async(lambda: Session.objects.filter(session_key=session_key).delete())()
        assert await ws.receive_output(timeout=4) == closed(4410, "session ended; reconnect")


async def test_it_notices_changes_made_outside_the_orm_within_the_recheck_interval(staff_user, client_for, settings):
    settings.REALTIME_ACCESS_RECHECK_SECONDS = 1
    _, cookie = await logged_in(client_for, staff_user)
    async with socket(ORIGIN, cookie) as ws:
        await snapshot_of(ws)
        # QuerySet.update sends no signal: only the periodic re-check can see it.
        await database_sync_to_async(lambda: User.objects.filter(pk=staff_user.pk).update(is_staff=False))()
        assert await ws.receive_output(timeout=4) == closed(4403, "staff only")


async def test_it_closes_the_socket_with_4403_when_the_view_permission_is_removed(staff_user, client_for, settings):
    settings.REALTIME_VIEW_PERMISSION = VIEW

    def grant():
        staff_user.user_permissions.add(Permission.objects.get(codename="view_transaction"))

    def revoke():
        User.objects.get(pk=staff_user.pk).user_permissions.clear()

    await database_sync_to_async(grant)()
    _, cookie = await logged_in(client_for, staff_user)
    async with socket(ORIGIN, cookie) as ws:
        await snapshot_of(ws)
        await database_sync_to_async(revoke)()
        assert await ws.receive_output(timeout=3) == closed(4403, f"needs the {VIEW} permission")


async def test_it_closes_the_socket_with_4403_when_the_users_group_loses_the_view_permission(staff_user, client_for, settings):
    settings.REALTIME_VIEW_PERMISSION = VIEW

    def join_viewers():
        group = Group.objects.create(name="viewers")
        group.permissions.add(Permission.objects.get(codename="view_transaction"))
        staff_user.groups.add(group)

    def strip_group():
        # From the permission's side: the reverse relation sends its own m2m_changed.
        Permission.objects.get(codename="view_transaction").group_set.clear()

    await database_sync_to_async(join_viewers)()
    _, cookie = await logged_in(client_for, staff_user)
    async with socket(ORIGIN, cookie) as ws:
        await snapshot_of(ws)
        await database_sync_to_async(strip_group)()
        assert await ws.receive_output(timeout=3) == closed(4403, f"needs the {VIEW} permission")


async def test_it_closes_the_socket_with_4403_when_the_user_leaves_the_group_that_gave_the_permission(staff_user, client_for, settings):
    settings.REALTIME_VIEW_PERMISSION = VIEW

    def join_viewers():
        group = Group.objects.create(name="viewers")
        group.permissions.add(Permission.objects.get(codename="view_transaction"))
        staff_user.groups.add(group)

    await database_sync_to_async(join_viewers)()
    _, cookie = await logged_in(client_for, staff_user)
    async with socket(ORIGIN, cookie) as ws:
        await snapshot_of(ws)
        await database_sync_to_async(lambda: Group.objects.get(name="viewers").user_set.remove(staff_user))()
        assert await ws.receive_output(timeout=3) == closed(4403, f"needs the {VIEW} permission")


async def test_it_closes_the_socket_with_4401_when_the_user_is_deleted(staff_user, client_for):
    _, cookie = await logged_in(client_for, staff_user)
    async with socket(ORIGIN, cookie) as ws:
        await snapshot_of(ws)
        await database_sync_to_async(lambda: User.objects.get(pk=staff_user.pk).delete())()
        assert (await ws.receive_output(timeout=3))["code"] == 4401


async def test_it_keeps_the_socket_open_when_an_unrelated_field_changes(staff_user, client_for):
    _, cookie = await logged_in(client_for, staff_user)
    async with socket(ORIGIN, cookie) as ws:
        await snapshot_of(ws)
        await database_sync_to_async(change_user)(staff_user.pk, first_name="Vera")
        assert await ws.receive_nothing(timeout=0.3)
        await ws.send_json_to({"type": "ping"})
        assert await ws.receive_json_from() == {"type": "pong"}


async def test_it_refuses_a_socket_when_the_view_permission_is_required_and_missing(staff_user, client_for, settings):
    settings.REALTIME_VIEW_PERMISSION = VIEW
    _, cookie = await logged_in(client_for, staff_user)
    async with socket(ORIGIN, cookie) as ws:
        assert await ws.receive_output(timeout=3) == closed(4403, f"needs the {VIEW} permission")
