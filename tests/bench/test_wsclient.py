"""The benchmark's websocket load client sees every marked message and counts refused handshakes by status."""
from __future__ import annotations

import asyncio
import http
import threading

import pytest
from websockets.asyncio.server import broadcast, serve

from bench.wsclient import LoadClient

pytestmark = pytest.mark.timeout(30)


class Server:
    """A websockets server on a loop in a thread: greets each socket, refuses /refused with 403."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self._run(self._start())
        self.port = self.server.sockets[0].getsockname()[1]

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _start(self):
        async def handler(ws):
            await ws.send('{"type":"snapshot","seq":0}')
            await ws.wait_closed()

        def refuse(connection, request):
            if request.path == "/refused":
                return connection.respond(http.HTTPStatus.FORBIDDEN, "no\n")
            return None

        return await serve(handler, "127.0.0.1", 0, compression="deflate", process_request=refuse)

    def send_all(self, message):
        async def send():
            if isinstance(message, list):  # one message in several frames
                await asyncio.gather(*(ws.send(iter(message)) for ws in self.server.connections))
            else:
                broadcast(self.server.connections, message)

        self._run(send())

    def close(self):
        self.server.close()
        self._run(self.server.wait_closed())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def server():
    server = Server()
    yield server
    server.close()


@pytest.fixture
def client():
    with LoadClient(processes=1) as client:
        yield client


def test_it_records_a_marked_message_on_every_socket_compressed_or_split_over_frames(server, client):
    opened = client.open(host="127.0.0.1", port=server.port, path="/ws/", headers={"Origin": "http://x"}, count=3)
    assert (opened.ok, opened.failed) == (3, {})

    server.send_all('{"type":"transaction.approved","pad":"' + "x" * 2000 + '","id":"BENCHMARK-41"}')
    times, live = client.collect(41, timeout=10)
    assert (len(times), live) == (3, 3)

    server.send_all(['{"id":"BENCH', "MARK-4", '2"}'])
    times, live = client.collect(42, timeout=10)
    assert (len(times), live) == (3, 3)


def test_it_counts_refused_handshakes_by_http_status(server, client):
    storm = client.storm(host="127.0.0.1", port=server.port, path="/refused", headers={}, count=5, timeout=10)
    assert (storm.ok, storm.failed) == (0, {"HTTP 403": 5})
