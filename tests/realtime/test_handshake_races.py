"""A change that lands while a socket is still in its handshake is not missed, and never breaks the handshake."""
import asyncio

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model

from realtime import consumers
from realtime.hub import current_hub
from tests.realtime.support import ORIGIN, closed, communicator, logged_in

pytestmark = pytest.mark.django_db(transaction=True)
User = get_user_model()


class SlowSlots:
    """The real counter, whose acquire waits until told to go (a Redis round trip in a handshake storm)."""

    def __init__(self, real):
        self.real = real
        self.entered = asyncio.Event()
        self.go = asyncio.Event()

    async def acquire(self, *args):
        self.entered.set()
        await self.go.wait()
        return await self.real.acquire(*args)

    def __getattr__(self, name):
        return getattr(self.real, name)


def demote(user_id):
    """Through the ORM, as the admin would: access.changed is sent."""
    user = User.objects.get(pk=user_id)
    user.is_staff = False
    user.save()


async def paused_in_the_slot_acquire(monkeypatch, cookie):
    """A socket whose access check passed and whose slot is being acquired; and an event set each time
    the hub has handled an access.changed."""
    slow = SlowSlots(consumers.slots())
    monkeypatch.setattr(consumers, "slots", lambda: slow)
    ws = communicator(ORIGIN, cookie)
    connecting = asyncio.ensure_future(ws.connect(timeout=10))
    await asyncio.wait_for(slow.entered.wait(), 10)
    hub = current_hub()
    handled = asyncio.Event()
    real = hub.on_access_changed

    def on_access_changed(*args):
        real(*args)
        handled.set()

    hub.on_access_changed = on_access_changed
    return ws, connecting, slow, handled


async def test_it_refuses_a_socket_whose_user_lost_staff_while_its_slot_was_acquired(staff_user, client_for, settings, monkeypatch):
    settings.REALTIME_ACCESS_RECHECK_SECONDS = 30  # the sweep must not be what closes it
    _, cookie = await logged_in(client_for, staff_user)
    ws, connecting, slow, handled = await paused_in_the_slot_acquire(monkeypatch, cookie)
    try:
        await database_sync_to_async(demote)(staff_user.pk)
        await asyncio.wait_for(handled.wait(), 3)
        slow.go.set()
        assert await connecting == (True, None)
        # Closed before anything is sent: no snapshot for a user who may no longer see it.
        assert await ws.receive_output(timeout=3) == closed(4403, "staff only")
        assert await ws.receive_nothing(timeout=0.2)
    finally:
        await ws.disconnect()


async def test_it_accepts_before_it_closes_a_socket_whose_session_logged_out_during_its_handshake(staff_user, client_for, monkeypatch):
    client, cookie = await logged_in(client_for, staff_user)
    ws, connecting, slow, handled = await paused_in_the_slot_acquire(monkeypatch, cookie)
    try:
        await database_sync_to_async(client.logout)()
        await asyncio.wait_for(handled.wait(), 3)
        slow.go.set()
        # Accepted, then closed with our code (what docs/api.md promises), and nothing after the close.
        assert await connecting == (True, None)
        assert await ws.receive_output(timeout=3) == closed(4401, "signed out")
        assert await ws.receive_nothing(timeout=0.2)
    finally:
        await ws.disconnect()
