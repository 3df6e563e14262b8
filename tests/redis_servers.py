"""Real redis-server processes for topology tests: a master, its replica and Sentinels watching them.

Ports: Sentinel speaks TCP only (it announces addresses, which a Unix socket has none of), so every
server gets a port from scripts.stack.PortReservation, held bound (not listening) by this process for
the servers' whole life: redis-server binds with SO_REUSEADDR and gets it, while no other process can
take the number in between (no "bind port 0, close, hope" race, no retry). Each server runs in its own
process group and is SIGKILLed with it; readiness is "answers PING", a failover is awaited as Sentinel's
own +switch-master event.
"""
from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from scripts.stack import PortReservation, kill_group

MASTER_NAME = "lpmaster"
# How fast the Sentinels act: a master silent this long is down; a failover stuck this long is retried.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
    return path


@dataclass
class RedisProcess:
    name: str
    port: int
    popen: subprocess.Popen
    log: Path
    reservation: PortReservation

    def client(self, **options) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **{"socket_timeout": 5, "socket_connect_timeout": 5, **options})

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as a crash or a lost machine: no shutdown save, no goodbye to the clients."""
        kill_group(self.popen)


@dataclass
class RedisTopology:
    """Redis processes started under `directory`; stop() (or leaving the `with` block) kills every one."""

    directory: Path
    processes: list[RedisProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _start(self, name: str, config: str, *args: str, reservation: PortReservation | None = None) -> RedisProcess:
        reservation = reservation or PortReservation()
        try:
            conf = self.directory / f"{name}.conf"
            # Sentinel rewrites its config file (what it learned): it must be a writable file of its own.
            conf.write_text(
                f"port {reservation.port}\nbind 127.0.0.1\ndir {self.directory}\ndbfilename {name}.rdb\n"
                f"save \"\"\nappendonly no\nlogfile \"\"\n{config}"
            )
            log = self.directory / f"{name}.log"
            with log.open("ab") as handle:
                popen = subprocess.Popen(
                    [redis_server_binary(), str(conf), *args], stdout=handle, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )
        except BaseException:
            reservation.close()
            raise
        process = RedisProcess(name, reservation.port, popen, log, reservation)
        self.processes.append(process)
        self._wait_for_ping(process)
        return process

    def _wait_for_ping(self, process: RedisProcess, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        client = process.client(socket_timeout=1, socket_connect_timeout=1)
        try:
            while True:
                if process.popen.poll() is not None:
                    raise RuntimeError(f"{process.name} exited with {process.popen.returncode}:\n{process.output()[-3000:]}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{process.name} not answering after {timeout} s:\n{process.output()[-3000:]}") from None
                    time.sleep(0.02)  # connection refused until it listens: nothing to wait on but the port
        finally:
            client.close()

    def start_server(self, name: str, *, replica_of: RedisProcess | None = None) -> RedisProcess:
        # A replica's first sync starts at once: by default a master waits 5 s for more replicas to share it.
        config = "repl-diskless-sync-delay 0\n" + (f"replicaof 127.0.0.1 {replica_of.port}\n" if replica_of else "")
        return self._start(name, config)

    def start_sentinel(self, name: str, master: RedisProcess, quorum: int, *, known: str = "",
                       down_after_ms: int = DOWN_AFTER_MS, reservation: PortReservation | None = None) -> RedisProcess:
        """A Sentinel monitoring `master`; `known`: config lines (its id, replicas and peers) it would otherwise learn."""
        config = (
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} {quorum}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            f"{known}"
        )
        return self._start(name, config, "--sentinel", reservation=reservation)

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.reservation.close()
        self.processes.clear()

    def __enter__(self) -> "RedisTopology":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class SentinelSetup:
    """A master, one replica and two Sentinels (quorum 1) that know both and each other."""

    topology: RedisTopology
    master: RedisProcess
    replica: RedisProcess
    sentinels: list[RedisProcess]

    @property
    def sentinel_addresses(self) -> str:
        """REDIS_SENTINELS for the project's processes."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def redis_url(self, db: int = 0) -> str:
        """REDIS_URL in Sentinel mode: the master's name, not an address."""
        return f"redis://{MASTER_NAME}/{db}"

    def master_port(self) -> int:
        """Where the Sentinels say the master is now."""
        client = self.sentinels[0].client()
        try:
            return int(client.sentinel_get_master_addr_by_name(MASTER_NAME)[1])
        finally:
            client.close()

    def fail_over(self, timeout: float = 30) -> RedisProcess:
        """SIGKILL the master and wait for a Sentinel to announce the promoted replica (+switch-master)."""
        old = self.master
        client = self.sentinels[0].client()
        pubsub = client.pubsub()
        try:
            pubsub.subscribe("+switch-master")
            pubsub.get_message(timeout=5)  # the subscribe confirmation: subscribed before the kill
            old.kill()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                message = pubsub.get_message(ignore_subscribe_messages=True, timeout=deadline - time.monotonic())
                if message and message["type"] == "message":
                    # "<name> <old ip> <old port> <new ip> <new port>"
                    new_port = int(message["data"].split()[4])
                    assert new_port == self.replica.port, message
                    self.master, self.replica = self.replica, old
                    return self.master
            raise AssertionError(f"no +switch-master within {timeout} s:\n" + "\n".join(s.output()[-2000:] for s in self.sentinels))
        finally:
            pubsub.close()
            client.close()


def start_sentinel_setup(directory: Path, sentinels: int = 2) -> SentinelSetup:
    """Start the processes and wait until the Sentinels can fail over: each knows the replica and the others.

    Each Sentinel's config names the replica and the other Sentinels (with their ids), the lines Sentinel
    itself writes into its config once it has learnt them: learning them from the master's INFO and the
    peers' hello messages (every 2 s) took ~5 s per setup. Ready is still checked on each Sentinel's live
    state: the replica reported by INFO with its link to the master up, every peer connected."""
    topology = RedisTopology(directory)
    reservations = [PortReservation() for _ in range(sentinels)]
    try:
        master = topology.start_server("master")
        replica = topology.start_server("replica", replica_of=master)
        ids = [secrets.token_hex(20) for _ in range(sentinels)]
        _wait_until(lambda: _replica_online(master), "the replica to sync with the master")
        watchers = []
        for i, reservation in enumerate(reservations):
            known = f"sentinel myid {ids[i]}\nsentinel known-replica {MASTER_NAME} 127.0.0.1 {replica.port}\n" + "".join(
                f"sentinel known-sentinel {MASTER_NAME} 127.0.0.1 {other.port} {ids[j]}\n"
                for j, other in enumerate(reservations) if j != i
            )
            # The first Sentinel notices a dead master first and leads the failover, the others vote for it: two
            # that notice at once could split the vote, and a split vote is retried only after 2 x failover-timeout
            # (a quarter of the failovers took 12 s instead of 2).
            watchers.append(topology.start_sentinel(f"sentinel{i}", master, quorum=1, known=known, reservation=reservation,
                                                    down_after_ms=DOWN_AFTER_MS * (1 + 2 * i)))
        for sentinel in watchers:
            _wait_until(lambda s=sentinel: _sentinel_ready(s, sentinels - 1), f"{sentinel.name} to know the replica and the other Sentinels")
        return SentinelSetup(topology, master, replica, watchers)
    except BaseException:
        topology.stop()
        for reservation in reservations:
            reservation.close()  # those of Sentinels never started (the others close with the topology)
        raise


def _replica_online(master: RedisProcess) -> bool:
    client = master.client()
    try:
        info = client.info("replication")
        return info.get("connected_slaves") == 1 and info.get("slave0", {}).get("state") == "online"
    finally:
        client.close()


def _sentinel_ready(sentinel: RedisProcess, others: int) -> bool:
    """The Sentinel has the replica's own INFO (fresh, its link to the master up: a promotable replica) and a
    live link to every other Sentinel (they vote on the failover)."""
    client = sentinel.client()
    try:
        replicas = [_fields(r) for r in client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)]
        peers = [_fields(p) for p in client.execute_command("SENTINEL", "SENTINELS", MASTER_NAME)]
        return (
            len(replicas) == 1 and replicas[0]["flags"] == "slave" and replicas[0].get("master-link-status") == "ok"
            and int(replicas[0]["info-refresh"]) < 10_000
            and len(peers) == others and all(p["flags"] == "sentinel" for p in peers)
        )
    finally:
        client.close()


def _fields(entry) -> dict[str, str]:
    """A SENTINEL REPLICAS / SENTINELS entry (a flat name, value list, or a dict under RESP3) as a dict of str."""
    if isinstance(entry, dict):
        return {_str(k): _str(v) for k, v in entry.items()}
    return {_str(entry[i]): _str(entry[i + 1]) for i in range(0, len(entry), 2)}


def _str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _wait_until(condition, what: str, timeout: float = 30) -> None:
    # Sentinel learns replicas and peers from INFO and hello messages it sends on its own schedule
    # (every 1-2 s): there is no event to subscribe to before the Sentinel exists, so poll its state.
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
