"""A websocket load client that is not the bottleneck: thousands of raw asyncio sockets per process.

Each socket does its own handshake (one pre-built request), then only reads the headers of the
server's (unmasked) frames and looks for a marker (`BENCHMARK-<n>`) in text messages, recording
when it arrived (time.monotonic(): CLOCK_MONOTONIC, the same clock in every process of the machine).
Pings are answered; nothing else is decoded. Like a browser it offers permessage-deflate (the server
decides), and inflates only compressed messages. Sockets are spread over a few processes
(LoadClient), driven over pipes by the benchmark: open in waves, open a storm of handshakes all at
once (counting failures by HTTP status or close code), collect the arrival times of a mark, close.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import multiprocessing
import os
import resource
import struct
import time
import zlib
from dataclasses import dataclass, field

MARK = b"BENCHMARK-"
_DIGITS = frozenset(b"0123456789")
_PONG_HEADER = b"\x8a"  # FIN + pong
_CLOSE_FRAME = b"\x88\x82\x00\x00\x00\x00\x03\xe8"  # FIN + close, masked (zero key), code 1000


def raise_fd_limit() -> int:
    """Raise this process's RLIMIT_NOFILE to its hard limit (each socket is one descriptor)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def handshake_request(*, host: str, port: int, path: str, headers: dict[str, str], deflate: bool) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
    ]
    if deflate:  # what browsers offer
        lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Socket(asyncio.Protocol):
    """One websocket: the handshake, then frame headers only."""

    __slots__ = ("owner", "request", "transport", "buffer", "state", "outcome", "ready", "inflater",
                 "fresh_inflater", "fragments", "compressed", "closed")

    def __init__(self, owner: "Worker", request: bytes, ready: asyncio.Future):
        self.owner = owner
        self.request = request
        self.ready = ready  # resolves to "ok" or a failure label
        self.transport = None
        self.buffer = b""
        self.state = 0  # 0 handshake, 1 open, 2 closed
        self.inflater = None
        self.fresh_inflater = False
        self.fragments: list[bytes] = []
        self.compressed = False
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc):
        if self.state == 1:
            self.owner.dropped(self)
        self.state = 2
        self._settle("connection lost before the handshake" if exc is None else f"connection lost: {type(exc).__name__}")

    def _settle(self, outcome: str) -> None:
        if not self.ready.done():
            self.ready.set_result(outcome)

    def data_received(self, data: bytes):
        now = time.monotonic()
        if self.buffer:
            data = self.buffer + data
            self.buffer = b""
        if self.state == 0:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = data
                return
            head = data[:end].decode("latin-1")
            data = data[end + 4:]
            status = head.split(" ", 2)[1] if head.startswith("HTTP/") else "garbage"
            if status != "101":
                self._settle(f"HTTP {status}")
                self.transport.close()
                return
            lower = head.lower()
            if "permessage-deflate" in lower:
                self.owner.deflated += 1
                self.inflater = zlib.decompressobj(-15)
                self.fresh_inflater = "server_no_context_takeover" in lower
            self.state = 1
            self.owner.opened(self)
            if not self.owner.expect_hello:
                self._settle("ok")
        self._frames(data, now)

    def _frames(self, data: bytes, now: float) -> None:
        size = len(data)
        at = 0
        while size - at >= 2:
            b0 = data[at]
            length = data[at + 1] & 0x7F
            header = 2
            if length == 126:
                if size - at < 4:
                    break
                length = struct.unpack_from("!H", data, at + 2)[0]
                header = 4
            elif length == 127:
                if size - at < 10:
                    break
                length = struct.unpack_from("!Q", data, at + 2)[0]
                header = 10
            end = at + header + length
            if end > size:
                break
            opcode = b0 & 0x0F
            if opcode == 1 or opcode == 0:
                if opcode == 1:
                    self.compressed = bool(b0 & 0x40)
                if b0 & 0x80 and not self.fragments:
                    self._message(data[at + header:end], now)
                else:
                    self.fragments.append(data[at + header:end])
                    if b0 & 0x80:
                        payload, self.fragments = b"".join(self.fragments), []
                        self._message(payload, now)
            elif opcode == 9:  # ping: a pong with the same payload, masked with a zero key
                payload = data[at + header:end]
                self.transport.write(_PONG_HEADER + bytes([0x80 | len(payload)]) + b"\x00\x00\x00\x00" + payload)
            elif opcode == 8:
                code = struct.unpack_from("!H", data, at + header)[0] if length >= 2 else 1005
                self._settle(f"closed {code}")
                if self.state == 1:
                    self.owner.dropped(self)
                self.state = 2
                self.transport.close()
                return
            at = end
        if at < size:
            self.buffer = data[at:]

    def _message(self, payload: bytes, now: float) -> None:
        self.owner.messages += 1
        if self.compressed and self.inflater is not None:
            if self.fresh_inflater:
                self.inflater = zlib.decompressobj(-15)
            payload = self.inflater.decompress(payload + b"\x00\x00\xff\xff")
        if not self.ready.done():
            self._settle("ok")  # the first message (the product's snapshot): this socket is live
        found = payload.find(MARK)
        if found >= 0:
            start = found + len(MARK)
            stop = start
            while stop < len(payload) and payload[stop] in _DIGITS:
                stop += 1
            self.owner.received(int(payload[start:stop]), now)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if self.state == 1:
                self.transport.write(_CLOSE_FRAME)
            self.transport.close()
        self.state = 2


class Worker:
    """The sockets of one client process and what they saw."""

    def __init__(self):
        self.live: set[Socket] = set()
        self.arrivals: dict[int, list[float]] = collections.defaultdict(list)
        self.drops = 0
        self.deflated = 0  # handshakes that negotiated permessage-deflate
        self.messages = 0  # data messages received, marked or not
        self.expect_hello = True
        self.waiters: list[tuple[int, asyncio.Future]] = []

    def opened(self, sock: Socket) -> None:
        self.live.add(sock)

    def dropped(self, sock: Socket) -> None:
        if sock in self.live:
            self.live.discard(sock)
            self.drops += 1

    def received(self, mark: int, now: float) -> None:
        times = self.arrivals[mark]
        times.append(now)
        if self.waiters and len(times) >= len(self.live):
            for waiter in [w for w in self.waiters if w[0] == mark]:
                if not waiter[1].done():
                    waiter[1].set_result(None)

    async def _one(self, loop, host, port, request, timeout) -> tuple[str, Socket | None]:
        ready = loop.create_future()
        sock = None
        try:
            _transport, sock = await asyncio.wait_for(
                loop.create_connection(lambda: Socket(self, request, ready), host, port), timeout
            )
            return await asyncio.wait_for(asyncio.shield(ready), timeout), sock
        except asyncio.TimeoutError:
            return "timeout", sock
        except OSError as exc:
            return f"connect failed: {exc.strerror or type(exc).__name__}", sock

    async def open(self, *, host, port, path, headers, count, inflight, deflate, expect_hello, timeout, keep=True):
        """Open `count` sockets with at most `inflight` handshakes at a time; failures by label."""
        self.expect_hello = expect_hello
        self.deflated = 0
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(max(1, inflight))
        failures: collections.Counter = collections.Counter()
        opened: list[Socket] = []

        async def one():
            async with gate:
                request = handshake_request(host=host, port=port, path=path, headers=headers, deflate=deflate)
                outcome, sock = await self._one(loop, host, port, request, timeout)
            if outcome == "ok":
                opened.append(sock)
            else:
                failures[outcome] += 1
                if sock is not None:
                    self.live.discard(sock)
                    sock.close()

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(count)))
        seconds = time.monotonic() - started
        if not keep:
            for sock in opened:
                self.live.discard(sock)
                sock.close()
        return {"ok": len(opened), "failed": dict(failures), "seconds": seconds, "deflated": self.deflated}

    async def collect(self, mark: int, timeout: float):
        """Arrival times of `mark` on this process's sockets, once every live socket has it (or at the timeout)."""
        if len(self.arrivals[mark]) < len(self.live):
            future = asyncio.get_running_loop().create_future()
            entry = (mark, future)
            self.waiters.append(entry)
            try:
                await asyncio.wait_for(future, timeout)
            except asyncio.TimeoutError:
                pass
            finally:
                self.waiters.remove(entry)
        return {"times": self.arrivals.pop(mark, []), "live": len(self.live), "drops": self.drops}

    async def cpu(self):
        return {"cpu": time.process_time(), "messages": self.messages}

    async def close_all(self):
        for sock in list(self.live):
            sock.close()
        closed = len(self.live)
        self.live.clear()
        self.arrivals.clear()
        self.drops = 0
        await asyncio.sleep(0.2)  # let the close frames leave before the next command
        return {"closed": closed}


def _serve(conn) -> None:
    """A client process: commands from the pipe, one at a time, on one event loop."""
    raise_fd_limit()
    worker = Worker()

    async def main():
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()
        loop.add_reader(conn.fileno(), lambda: inbox.put_nowait(conn.recv()))
        while True:
            command = await inbox.get()
            op = command.pop("op")
            if op == "stop":
                await worker.close_all()
                conn.send({"stopped": True})
                return
            handler = {"open": worker.open, "collect": worker.collect, "close": worker.close_all, "cpu": worker.cpu}[op]
            try:
                conn.send(await handler(**command))
            except Exception as exc:  # noqa: BLE001 - the benchmark must hear about it, not hang
                conn.send({"error": f"{type(exc).__name__}: {exc}"})

    asyncio.run(main())


@dataclass
class OpenResult:
    ok: int
    failed: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    deflated: int = 0  # handshakes that negotiated permessage-deflate (the server compresses each message)

    @property
    def failures(self) -> int:
        return sum(self.failed.values())


class LoadClient:
    """Sockets spread over `processes` client processes (spawned: no Django, nothing inherited)."""

    def __init__(self, processes: int = 2):
        ctx = multiprocessing.get_context("spawn")
        self.pipes = []
        self.procs = []
        for _ in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child,), daemon=True, name="wsbench-client")
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)

    def _all(self, commands: list[dict], timeout: float) -> list[dict]:
        for pipe, command in zip(self.pipes, commands):
            pipe.send(command)
        replies = []
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise TimeoutError(f"a client process did not answer within {timeout} s")
            reply = pipe.recv()
            if "error" in reply:
                raise RuntimeError(f"client process failed: {reply['error']}")
            replies.append(reply)
        return replies

    def _split(self, count: int) -> list[int]:
        n = len(self.pipes)
        return [count // n + (1 if i < count % n else 0) for i in range(n)]

    def open(self, *, host: str, port: int, path: str, headers: dict[str, str], count: int, inflight: int = 50,
             deflate: bool = True, expect_hello: bool = True, timeout: float = 30.0, keep: bool = True) -> OpenResult:
        """Open `count` sockets, at most `inflight` handshakes at a time across all processes.

        `expect_hello`: a socket counts as open once its first message arrived (the product's
        snapshot, sent after it joined the group), not at the 101. `keep=False` closes them after."""
        shares = self._split(count)
        gates = self._split(inflight)
        commands = [
            dict(op="open", host=host, port=port, path=path, headers=headers, count=share, inflight=max(1, gate),
                 deflate=deflate, expect_hello=expect_hello, timeout=timeout, keep=keep)
            for share, gate in zip(shares, gates)
        ]
        replies = self._all(commands, timeout=timeout * (count / max(1, inflight) + 2) + 60)
        failed: collections.Counter = collections.Counter()
        for reply in replies:
            failed.update(reply["failed"])
        return OpenResult(sum(r["ok"] for r in replies), dict(failed), max(r["seconds"] for r in replies),
                          sum(r["deflated"] for r in replies))

    def storm(self, *, count: int, **kwargs) -> OpenResult:
        """`count` handshakes in flight at once; every socket is closed again afterwards."""
        return self.open(count=count, inflight=count, keep=False, **kwargs)

    def collect(self, mark: int, timeout: float = 15.0) -> tuple[list[float], int]:
        """(arrival times of `mark` over every socket, sockets live)."""
        replies = self._all([dict(op="collect", mark=mark, timeout=timeout)] * len(self.pipes), timeout + 30)
        times = [t for reply in replies for t in reply["times"]]
        return times, sum(reply["live"] for reply in replies)

    def counters(self) -> tuple[float, int]:
        """(CPU seconds the client processes have used, data messages they received) so far."""
        replies = self._all([dict(op="cpu")] * len(self.pipes), 30)
        return sum(reply["cpu"] for reply in replies), sum(reply["messages"] for reply in replies)

    def close_all(self) -> int:
        return sum(reply["closed"] for reply in self._all([dict(op="close")] * len(self.pipes), 60))

    def stop(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send({"op": "stop"})
            except OSError:
                pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for pipe in self.pipes:
            pipe.close()

    def __enter__(self) -> "LoadClient":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
