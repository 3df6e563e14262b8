"""Websocket tests run the real ASGI application through WebsocketCommunicator, which sends no Host
header: the page they play is served at http://localhost, so that origin is configured explicitly."""
import pytest

from realtime import sockets

TEST_ORIGIN = "http://localhost"


@pytest.fixture(autouse=True)
def _websocket_test_origin(settings):
    settings.WEBSOCKET_ALLOWED_ORIGINS = [TEST_ORIGIN]


@pytest.fixture(autouse=True)
def _fresh_socket_counts():
    """In-process socket counts start empty: a test that failed before disconnecting leaks no slots."""
    sockets._slots.clear()
    yield
    sockets._slots.clear()
