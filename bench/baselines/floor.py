"""The floor: a bare Redis PUBLISH to a plain `websockets` server that broadcasts to its clients.

`python -m bench.baselines.floor` serves on the inherited listening socket LISTEN_FD with
WEB_CONCURRENCY processes (like the product's web command); each process holds one Redis
subscription to FLOOR_CHANNEL on REDIS_URL and hands every message to `websockets.broadcast`
for all of its connections. No compression (the floor is the least work a server can do), no
authentication, no snapshot; uvloop when it is installed, as the product's web line uses it.
GET /healthz answers 200 for the readiness check.
"""
from __future__ import annotations

import asyncio
import http
import multiprocessing
import os
import signal
import socket


def _process_request(connection, request):
    if request.path == "/healthz":
        return connection.respond(http.HTTPStatus.OK, "ok\n")
    return None


async def _serve(fd: int) -> None:
    import redis.asyncio
    from websockets.asyncio.server import broadcast, serve

    async def handler(websocket):
        await websocket.wait_closed()

    sock = socket.socket(fileno=fd)
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(handler, sock=sock, compression=None, process_request=_process_request, max_queue=None) as server:
        client = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"])
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(os.environ["FLOOR_CHANNEL"])

        async def pump():
            async for message in pubsub.listen():
                if message["type"] == "message":
                    broadcast(server.connections, message["data"].decode())

        task = asyncio.create_task(pump())
        await stop
        task.cancel()
        await client.aclose()


def _worker(fd: int) -> None:
    try:  # the event loop the product's web line runs on (--loop uvloop), when installed
        import uvloop
    except ImportError:
        asyncio.run(_serve(fd))
    else:
        uvloop.run(_serve(fd))


def main() -> None:
    fd = int(os.environ["LISTEN_FD"])
    workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
    ctx = multiprocessing.get_context("fork")
    children = [ctx.Process(target=_worker, args=(fd,), name=f"floor-{i}") for i in range(workers)]
    for child in children:
        child.start()

    def forward(signum, _frame):
        for child in children:
            if child.is_alive():
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()


if __name__ == "__main__":
    main()
