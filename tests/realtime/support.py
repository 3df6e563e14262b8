"""Helpers for websocket tests: sockets that are always disconnected, users changed off the event loop."""
from contextlib import asynccontextmanager

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from core.asgi import application

ORIGIN = (b"origin", b"http://localhost")


def session_cookie_for(client) -> tuple[bytes, bytes]:
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


def logged_in_sync(client_for, user):
    client = client_for(user)
    return client, session_cookie_for(client)


async def logged_in(client_for, user):
    """(a test client signed in as `user`, the session cookie header for a socket)."""
    return await database_sync_to_async(logged_in_sync)(client_for, user)


def communicator(*headers, path="/ws/dashboard/", scheme=None):
    socket = WebsocketCommunicator(application, path, headers=list(headers))
    if scheme is not None:
        socket.scope["scheme"] = scheme  # read by the application when it first runs
    return socket


@asynccontextmanager
async def socket(*headers, path="/ws/dashboard/", scheme=None):
    """A connected websocket (asserting the handshake succeeded); always disconnected afterwards."""
    ws = communicator(*headers, path=path, scheme=scheme)
    try:
        connected, _ = await ws.connect()
        assert connected, "the handshake was refused"
        yield ws
    finally:
        await ws.disconnect()


async def handshake_refused(*headers, path="/ws/dashboard/", scheme=None) -> bool:
    ws = communicator(*headers, path=path, scheme=scheme)
    try:
        connected, _ = await ws.connect()
        return not connected
    finally:
        await ws.disconnect()


async def snapshot_of(ws) -> dict:
    message = await ws.receive_json_from(timeout=5)
    assert message["type"] == "snapshot", message
    return message


def closed(code: int, reason: str) -> dict:
    return {"type": "websocket.close", "code": code, "reason": reason}
