"""Websocket tickets: issued over REST, single-use, short-lived, accepted by /ws/dashboard/?ticket=."""
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
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
    assert ticket_redeem(ticket=ticket) == admin_user
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


async def connect_with(query: str):
    communicator = WebsocketCommunicator(application, f"/ws/dashboard/?{query}", headers=[ORIGIN])
    connected, _ = await communicator.connect()
    assert connected
    return communicator, await communicator.receive_output()


@pytest.mark.django_db(transaction=True)
async def test_a_ticket_opens_the_websocket_once(admin_user):
    ticket, _ = await sync_to_async(ticket_issue)(user=admin_user)
    communicator, first = await connect_with(f"ticket={ticket}")
    assert first["type"] == "websocket.send" and '"type":"snapshot"' in first["text"]
    await communicator.disconnect()
    _, again = await connect_with(f"ticket={ticket}")
    assert again == {"type": "websocket.close", "code": 4401, "reason": "authentication required"}


@pytest.mark.django_db(transaction=True)
async def test_a_non_staff_users_ticket_is_closed_with_4403(plain_user):
    ticket, _ = await sync_to_async(ticket_issue)(user=plain_user)
    _, first = await connect_with(f"ticket={ticket}")
    assert first["code"] == 4403
