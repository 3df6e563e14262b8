"""Websocket tickets: issued over REST, single-use, short-lived, accepted by /ws/dashboard/?ticket=."""
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.utils import timezone

from core.asgi import application
from realtime.models import RealtimeTicket
from realtime.tickets import ticket_issue, ticket_redeem

ORIGIN = (b"origin", b"http://localhost")


@pytest.mark.django_db
def test_staff_get_a_ticket_valid_for_sixty_seconds(api):
    response = api.post("/api/realtime/tickets/")
    assert response.status_code == 201
    body = response.json()
    assert body["expires_in"] == 60 and len(body["ticket"]) >= 40
    # Only a digest is stored: the ticket itself is nowhere in the database.
    assert not RealtimeTicket.objects.filter(digest=body["ticket"]).exists()


@pytest.mark.django_db
def test_only_staff_get_tickets(client_for, plain_user):
    assert client_for(None).post("/api/realtime/tickets/").status_code == 401
    assert client_for(plain_user).post("/api/realtime/tickets/").status_code == 403


@pytest.mark.django_db
def test_a_ticket_redeems_once(admin_user):
    ticket, _ = ticket_issue(user=admin_user)
    assert ticket_redeem(ticket=ticket).user == admin_user
    assert ticket_redeem(ticket=ticket) is None


@pytest.mark.django_db
def test_an_expired_ticket_does_not_redeem(admin_user):
    ticket, _ = ticket_issue(user=admin_user)
    RealtimeTicket.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert ticket_redeem(ticket=ticket) is None


@pytest.mark.django_db
@pytest.mark.parametrize("ticket", ["", "nope", "x" * 500])
def test_unknown_tickets_do_not_redeem(ticket):
    assert ticket_redeem(ticket=ticket) is None


@asynccontextmanager
async def socket_with(query: str):
    """A websocket on /ws/dashboard/?<query>, with its first output; always disconnected afterwards,
    so the consumer finishes and no task or database connection outlives the test."""
    communicator = WebsocketCommunicator(application, f"/ws/dashboard/?{query}", headers=[ORIGIN])
    try:
        connected, _ = await communicator.connect()
        assert connected
        yield await communicator.receive_output()
    finally:
        await communicator.disconnect()


@pytest.fixture
async def no_leftover_connections():
    """ORM calls here run in asgiref's executor thread (database_sync_to_async closes what it opens);
    close anything still open there before pytest-django flushes and, at the end, drops the database."""
    yield
    await database_sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
async def test_a_ticket_opens_the_websocket_once(admin_user, no_leftover_connections):
    ticket, _ = await database_sync_to_async(ticket_issue)(user=admin_user)
    async with socket_with(f"ticket={ticket}") as first:
        assert first["type"] == "websocket.send" and '"type":"snapshot"' in first["text"]
    async with socket_with(f"ticket={ticket}") as again:
        assert again == {"type": "websocket.close", "code": 4401, "reason": "authentication required"}


@pytest.mark.django_db(transaction=True)
async def test_a_non_staff_users_ticket_is_closed_with_4403(plain_user, no_leftover_connections):
    ticket, _ = await database_sync_to_async(ticket_issue)(user=plain_user)
    async with socket_with(f"ticket={ticket}") as first:
        assert first["type"] == "websocket.close" and first["code"] == 4403
