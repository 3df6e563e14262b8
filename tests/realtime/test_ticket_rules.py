"""Tickets never linger: a presented ticket is spent whatever happens, a bad `?ticket=` never falls back
to the session, and a ticket outlives neither its user's access nor their password."""
import asyncio

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password

from realtime import consumers
from realtime.models import RealtimeTicket
from realtime.tickets import ticket_issue, ticket_redeem
from tests.realtime.support import ORIGIN, closed, communicator, handshake_refused, logged_in, snapshot_of, socket

pytestmark = pytest.mark.django_db(transaction=True)
User = get_user_model()
UNAUTHENTICATED = closed(4401, "authentication required")


def unused_tickets(user_id) -> int:
    return RealtimeTicket.objects.filter(user_id=user_id, used_at__isnull=True).count()


async def test_it_refuses_a_ticket_issued_before_the_user_was_deactivated(staff_user):
    ticket, _ = await database_sync_to_async(ticket_issue)(user=staff_user)
    # No signal (a raw UPDATE): the ticket is still unused; redeeming it must look at the user now.
    await database_sync_to_async(lambda: User.objects.filter(pk=staff_user.pk).update(is_active=False))()
    async with socket(ORIGIN, path=f"/ws/dashboard/?ticket={ticket}") as ws:
        assert await ws.receive_output(timeout=3) == UNAUTHENTICATED
    assert await database_sync_to_async(unused_tickets)(staff_user.pk) == 0


def raw_password_update(user_id, raw):
    """No signal (a raw UPDATE, a restore, another service): only what the ticket itself carries can tell."""
    User.objects.filter(pk=user_id).update(password=make_password(raw))


async def test_it_refuses_a_ticket_issued_before_a_password_change_made_outside_the_orm(staff_user):
    ticket, _ = await database_sync_to_async(ticket_issue)(user=staff_user)
    await database_sync_to_async(raw_password_update)(staff_user.pk, "changed-by-sql-123")
    assert await database_sync_to_async(unused_tickets)(staff_user.pk) == 1  # no signal spent it
    async with socket(ORIGIN, path=f"/ws/dashboard/?ticket={ticket}") as ws:
        assert await ws.receive_output(timeout=3) == UNAUTHENTICATED
    assert await database_sync_to_async(unused_tickets)(staff_user.pk) == 0


async def test_it_closes_a_ticket_socket_whose_password_changed_after_the_ticket_was_redeemed(staff_user, settings, monkeypatch):
    settings.REALTIME_ACCESS_RECHECK_SECONDS = 1
    ticket, _ = await database_sync_to_async(ticket_issue)(user=staff_user)
    redeemed, go = asyncio.Event(), asyncio.Event()
    real_get_hub = consumers.get_hub

    async def slow_get_hub():  # the socket's first wait after TicketAuthMiddleware redeemed its ticket
        redeemed.set()
        await go.wait()
        return await real_get_hub()

    monkeypatch.setattr(consumers, "get_hub", slow_get_hub)
    ws = communicator(ORIGIN, path=f"/ws/dashboard/?ticket={ticket}")
    connecting = asyncio.ensure_future(ws.connect(timeout=10))
    try:
        await asyncio.wait_for(redeemed.wait(), 10)
        await database_sync_to_async(raw_password_update)(staff_user.pk, "changed-by-sql-123")
        go.set()
        assert await connecting == (True, None)
        # Judged against the hash the ticket was issued with, not the one the socket first sees.
        assert await ws.receive_output(timeout=3) == closed(4401, "password changed; sign in again")
    finally:
        await ws.disconnect()


async def test_it_closes_an_open_ticket_socket_within_the_recheck_interval_when_the_password_changes_outside_the_orm(staff_user, settings):
    settings.REALTIME_ACCESS_RECHECK_SECONDS = 1
    ticket, _ = await database_sync_to_async(ticket_issue)(user=staff_user)
    async with socket(ORIGIN, path=f"/ws/dashboard/?ticket={ticket}") as ws:
        await snapshot_of(ws)
        await database_sync_to_async(raw_password_update)(staff_user.pk, "changed-by-sql-123")
        assert await ws.receive_output(timeout=4) == closed(4401, "password changed; sign in again")


async def test_it_spends_a_users_unused_tickets_when_they_are_deactivated_or_change_password(staff_user):
    def deactivate():
        user = User.objects.get(pk=staff_user.pk)
        user.is_active = False
        user.save()

    def new_password():
        user = User.objects.get(pk=staff_user.pk)
        user.set_password("another-password-789")
        user.save()

    for change in (new_password, deactivate):
        ticket, _ = await database_sync_to_async(ticket_issue)(user=staff_user)
        await database_sync_to_async(change)()
        assert await database_sync_to_async(unused_tickets)(staff_user.pk) == 0
        assert await database_sync_to_async(ticket_redeem)(ticket=ticket) is None


async def test_it_spends_a_ticket_refused_at_the_origin_check(admin_user):
    ticket, _ = await database_sync_to_async(ticket_issue)(user=admin_user)
    path = f"/ws/dashboard/?ticket={ticket}"
    assert await handshake_refused((b"origin", b"http://localhost:9999"), path=path)
    # The same ticket from the right page afterwards: dead.
    async with socket(ORIGIN, path=path) as ws:
        assert await ws.receive_output(timeout=3) == UNAUTHENTICATED


@pytest.mark.parametrize("query", ["ticket=", "ticket", "ticket=%20", "ticket=not*a*ticket", "ticket=" + "A" * 129, "ticket=short"])
async def test_it_closes_an_empty_or_malformed_ticket_with_4401_even_with_a_session_cookie(admin_user, client_for, query):
    _, cookie = await logged_in(client_for, admin_user)
    async with socket(ORIGIN, cookie, path=f"/ws/dashboard/?{query}") as ws:
        assert await ws.receive_output(timeout=3) == UNAUTHENTICATED


async def test_it_refuses_two_tickets_at_once_and_spends_both(admin_user):
    first, _ = await database_sync_to_async(ticket_issue)(user=admin_user)
    second, _ = await database_sync_to_async(ticket_issue)(user=admin_user)
    async with socket(ORIGIN, path=f"/ws/dashboard/?ticket={first}&ticket={second}") as ws:
        assert await ws.receive_output(timeout=3) == UNAUTHENTICATED
    assert await database_sync_to_async(unused_tickets)(admin_user.pk) == 0


async def test_it_lets_a_script_without_an_origin_header_in_with_a_ticket(admin_user):
    ticket, _ = await database_sync_to_async(ticket_issue)(user=admin_user)
    async with socket(path=f"/ws/dashboard/?ticket={ticket}") as ws:
        await snapshot_of(ws)


async def test_it_refuses_a_session_cookie_without_an_origin_header(admin_user, client_for):
    _, cookie = await logged_in(client_for, admin_user)
    assert await handshake_refused(cookie)
    assert await handshake_refused()


async def test_it_gives_a_script_without_an_origin_header_and_a_bad_ticket_4401_not_the_session(admin_user, client_for):
    _, cookie = await logged_in(client_for, admin_user)
    async with socket(cookie, path="/ws/dashboard/?ticket=") as ws:
        assert await ws.receive_output(timeout=3) == UNAUTHENTICATED
