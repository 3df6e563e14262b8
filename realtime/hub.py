"""The process-local dashboard hub: one channel-layer channel per process, fanned out to its own sockets.

One hub per ASGI worker process (per event loop), started by the first socket and stopped with the
last. The hub's one channel is the process's only member of the dashboard group (REALTIME_GROUP) and
of the access group (access_group()), so one channel-layer message per projected batch reaches each
process once; with RedisPubSubChannelLayer a group is a Redis subscription of the process's
connection, so membership dies with the process and can never go stale. Sockets register with the
hub, not with the layer: no per-socket Redis work, no per-socket group.

On a batch the hub checks the chain once per distinct position of its sockets, and hands each socket
the ASGI messages built once per batch from texts the publisher encoded once (realtime.broadcast).
A socket's state is its `applied` position (None while it waits for a snapshot) and a bounded outbox
that a short-lived writer task drains, so a slow client never delays the others. Past the bound its
queue is dropped and it starts over from a snapshot.

Snapshots (on connect, resume, a gap, a rebuild) are single-flight and cached per position: a storm
of sockets costs one snapshot query per batch position, and the text is encoded once. A socket is
registered before the snapshot is read, and the batches that arrive meanwhile are replayed from a
short ring after it, so nothing committed in between is missed.

Access: `access.changed` messages name a user and are routed to that user's local sockets; every
REALTIME_ACCESS_RECHECK_SECONDS one sweep re-checks all local sockets with a few queries, and every
LEASE_RENEW_SECONDS one pipelined call renews their socket-count leases (realtime.sockets).
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import time
import uuid
from collections import deque

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils.module_loading import import_string

from core import metrics
from realtime import access
from realtime.access import Refusal, session_digest
from realtime.broadcast import ACCESS_CHANGED, BATCH_EVENT, RESYNC_EVENT, access_group
from realtime.sockets import LEASE_RENEW_SECONDS, slots

logger = logging.getLogger(__name__)

# Messages a socket may have queued before its queue is dropped and it is sent a snapshot instead.
OUTBOX_LIMIT = 1000
# Recent batches kept to replay to sockets whose snapshot was read while they arrived.
RING_SIZE = 64
# Sockets re-checked per query batch in a sweep.
SWEEP_CHUNK = 1000
# How long the first socket waits for the hub to subscribe before it is served anyway.
SUBSCRIBE_WAIT_SECONDS = 5
# Close code for a socket whose snapshot could not be read (it reconnects).
CLOSE_INTERNAL_ERROR = 1011


def text_message(text: str) -> dict:
    """An ASGI send message; the same dict object is handed to every socket (servers only read it)."""
    return {"type": "websocket.send", "text": text}


def _read_snapshot() -> dict:
    return import_string(settings.REALTIME_SNAPSHOT_PROVIDER)()


def _verdicts(requests):
    return access.verdicts(requests)


# Thread-sensitive like every ORM call of the websocket path: one connection for it.
read_snapshot = database_sync_to_async(_read_snapshot)
check_many = database_sync_to_async(_verdicts)


class Hub:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.id = uuid.uuid4().hex[:12]
        self.serial = itertools.count(1)
        self.sockets: set = set()  # registered sockets: live ones and those waiting for their snapshot
        self.by_user: dict[str, set] = {}
        self.unknown: set = set()  # sockets in their handshake whose user is not known yet
        self.waiting: set = set()  # sockets whose next message is a snapshot
        self.serve_scheduled = False  # behind() asked for the waiting sockets to be served
        self.ring: deque = deque(maxlen=RING_SIZE)  # (arrival, after, through, items), oldest first
        self.arrivals = 0  # batches received so far
        self.epoch = 0  # bumped by a rebuild: snapshots read before it are worthless
        # The last snapshot read, while no batch past its seq has arrived: (seq, message, epoch, arrivals before it).
        self.cached = None
        self.starting: asyncio.Task | None = None
        self.fetching: asyncio.Task | None = None
        self.channel: str | None = None
        self.layer = None
        self.tasks: list[asyncio.Task] = []
        self.stopped = False
        self.subscribed = asyncio.Event()
        self.pending_checks: list = []  # (request, future) for the next batched access check
        self.check_task: asyncio.Task | None = None
        self.layer_messages = 0  # how many channel-layer messages this hub received (tests, metrics)

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self.layer = get_channel_layer()
        self.tasks = [
            self.loop.create_task(self._feed(), name=f"realtime-hub-feed {self.id}"),
            self.loop.create_task(self._sweep(), name=f"realtime-hub-sweep {self.id}"),
        ]
        # The first socket reads its snapshot only once the hub hears every batch after it.
        # With Redis away it does not wait for ever: sockets are resynced once the hub subscribes.
        waiter = self.loop.create_task(self.subscribed.wait())
        await asyncio.wait([waiter, self.tasks[0]], timeout=SUBSCRIBE_WAIT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            waiter.cancel()

    async def stop(self) -> None:
        self.stopped = True
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self._unsubscribe(), SUBSCRIBE_WAIT_SECONDS)
        except asyncio.TimeoutError:
            logger.info("leaving the dashboard groups timed out (Redis away); the membership ends with the connection")

    async def _subscribe(self) -> None:
        self.channel = await self.layer.new_channel(prefix=f"hub.{self.id}.")
        await self.layer.group_add(settings.REALTIME_GROUP, self.channel)
        await self.layer.group_add(access_group(), self.channel)

    async def _unsubscribe(self) -> None:
        channel, self.channel = self.channel, None
        if channel is None:
            return
        try:
            await self.layer.group_discard(settings.REALTIME_GROUP, channel)
            await self.layer.group_discard(access_group(), channel)
        except Exception:  # noqa: BLE001 - the layer is gone; so is the membership (pub/sub)
            logger.info("leaving the dashboard groups failed", exc_info=True)

    async def _feed(self) -> None:
        """Receive this process's channel-layer messages for ever; re-subscribe after a failure."""
        delay = 0.1
        failed = False
        while True:
            try:
                if self.channel is None:
                    await self._subscribe()
                    self.subscribed.set()
                    if failed:
                        # Whatever was published while we were deaf is lost: every socket starts over.
                        logger.warning("dashboard hub re-subscribed; sending %d sockets a fresh snapshot", len(self.sockets))
                        self.resync(list(self.sockets))
                        failed = False
                message = await self.layer.receive(self.channel)
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis went away: retry with backoff
                logger.warning("the dashboard hub lost its channel layer; re-subscribing in %.1f s", delay, exc_info=True)
                failed = True
                await self._unsubscribe()
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, 5.0)
                continue
            self.layer_messages += 1
            try:
                self.dispatch(message)
            except Exception:  # noqa: BLE001 - one bad message must not end the feed
                logger.exception("the dashboard hub could not handle a %r message", message.get("type"))

    def dispatch(self, message: dict) -> None:
        kind = message.get("type")
        if kind == BATCH_EVENT:
            self.on_batch(message["after"], message["through"], message["items"])
        elif kind == RESYNC_EVENT:
            self.on_rebuild()
        elif kind == ACCESS_CHANGED:
            self.on_access_changed(str(message.get("user_id")), message.get("ended_session"))

    # --- sockets ----------------------------------------------------------------------
    def register(self, socket) -> None:
        """Route access changes to the socket from now on (before its first access check). A socket
        whose user is not known yet (its cookie's session is being read) hears every user's changes."""
        socket.member = f"{self.id}.{next(self.serial)}"
        self.sockets.add(socket)
        self.identify(socket)

    def identify(self, socket) -> None:
        """File the socket under its user (once the access check has said who that is)."""
        self.unknown.discard(socket)
        if socket.user_id is None:
            self.unknown.add(socket)
            return
        socket.user_key = str(socket.user_id)
        self.by_user.setdefault(socket.user_key, set()).add(socket)

    def unregister(self, socket) -> None:
        self.sockets.discard(socket)
        self.waiting.discard(socket)
        self.unknown.discard(socket)
        users = self.by_user.get(socket.user_key)
        if users is not None:
            users.discard(socket)
            if not users:
                del self.by_user[socket.user_key]
        if not self.sockets and not self.stopped:
            _forget(self)
            _stopping[self.loop] = self.loop.create_task(self.stop(), name=f"realtime-hub-stop {self.id}")

    def join(self, socket) -> None:
        """Start the socket's stream: a snapshot, then every batch after it."""
        self.resync([socket])

    # --- batches ----------------------------------------------------------------------
    def on_batch(self, after: int, through: int, items: list) -> None:
        """Messages for event positions (after, through], in order, for every local socket."""
        self.arrivals += 1
        self.ring.append((self.arrivals, after, through, items))
        if self.cached is not None and self.cached[0] < through:
            self.cached = None  # a newer position: the next snapshot must be read again
        texts_from: dict[int, list] = {}
        behind = []
        sent = 0
        for socket in self.sockets:
            applied = socket.applied
            if applied is None or through <= applied:
                continue  # waiting for its snapshot, or the snapshot already reflects the batch
            if after > applied:
                # A batch never reached us (lost while Redis was away, or published before
                # we subscribed): rather than leave the client silently wrong, start it over.
                behind.append(socket)
                continue
            messages = texts_from.get(applied)
            if messages is None:
                messages = texts_from[applied] = _messages_after(items, applied)
            socket.applied = through
            sent += len(messages)
            if messages:
                socket.push(messages)  # past its bound it is queued for a snapshot (behind())
        if sent:
            metrics.SENT_UPDATES.inc(sent)  # once per batch, not per socket: this loop is the fan-out
        if behind:
            self.resync(behind)

    def _replay(self, socket, read_after: int) -> bool:
        """Send the socket the batches that arrived after its snapshot was read (those before are in it);
        False on a gap: a batch past the snapshot never arrived, and a newer snapshot is needed."""
        for arrival, after, through, items in self.ring:
            if arrival <= read_after:
                continue
            applied = socket.applied
            if through <= applied:
                continue
            if after > applied:
                return False
            messages = _messages_after(items, applied)
            socket.applied = through
            metrics.SENT_UPDATES.inc(len(messages))
            if messages:
                socket.push(messages)
                if socket.applied is None:
                    return False  # it overflowed: its backlog was dropped (behind())
        return True

    # --- snapshots ----------------------------------------------------------------------
    def resync(self, sockets) -> None:
        """Send these sockets a snapshot (cached for the current position, or read once for all)."""
        for socket in sockets:
            if socket.closing:
                continue
            socket.applied = None
            self.waiting.add(socket)
        if not self.waiting:
            return
        cached = self.cached
        if cached is not None and cached[2] == self.epoch:
            self._hand_out(*cached)
        elif self.fetching is None:
            self.fetching = self.loop.create_task(self._fetch(), name=f"realtime-hub-snapshot {self.id}")

    async def _fetch(self) -> None:
        try:
            while self.waiting:
                epoch, read_after = self.epoch, self.arrivals
                try:
                    snapshot = await read_snapshot()
                    message = text_message(json.dumps(snapshot, separators=(",", ":")))
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - the database is away: these clients reconnect later
                    logger.exception("reading the dashboard snapshot failed; closing %d waiting sockets", len(self.waiting))
                    for socket in list(self.waiting):
                        socket.shut(CLOSE_INTERNAL_ERROR, "snapshot unavailable; reconnect")
                    self.waiting.clear()
                    return
                if epoch != self.epoch:
                    continue  # a rebuild happened while we read: read again
                seq = snapshot["seq"]
                entry = (seq, message, epoch, read_after)
                # Cached while no batch past it has arrived (then every socket would need one anyway).
                if not any(arrival > read_after and through > seq for arrival, _, through, _ in self.ring):
                    self.cached = entry
                self._hand_out(*entry)
        finally:
            self.fetching = None

    def behind(self, socket) -> None:
        """The socket's outbox overflowed and its backlog was dropped (consumer.push): it waits for a
        snapshot. Served on the next loop turn, not on the pusher's stack, which may be this hub's
        own fan-out or hand-out loop."""
        socket.applied = None
        self.waiting.add(socket)
        if not self.serve_scheduled:
            self.serve_scheduled = True
            self.loop.call_soon(self._serve_waiting)

    def _serve_waiting(self) -> None:
        self.serve_scheduled = False
        self.resync(())

    def _hand_out(self, seq: int, message: dict, epoch: int, read_after: int) -> None:
        waiting, self.waiting = self.waiting, set()
        again = []
        handed = 0
        for socket in waiting:
            if socket.closing:
                continue
            socket.applied = seq
            handed += 1
            socket.push([message])
            if socket.applied is None or not self._replay(socket, read_after):
                again.append(socket)
        metrics.SENT_SNAPSHOTS.inc(handed)
        if again:
            # A batch missing from the ring after this snapshot: a newer snapshot covers it.
            if self.cached is not None and self.cached[1] is message:
                self.cached = None
            self.resync(again)

    def on_rebuild(self) -> None:
        """The projections were rebuilt: every snapshot read before now is stale."""
        self.epoch += 1
        self.cached = None
        self.ring.clear()
        self.resync(list(self.sockets))

    # --- access -------------------------------------------------------------------------
    def on_access_changed(self, user_key: str, ended_session: str | None) -> None:
        def signed_out(socket) -> bool:
            return bool(ended_session and socket.session_key and session_digest(socket.session_key) == ended_session)

        for socket in list(self.unknown):
            if signed_out(socket):
                socket.shut(access.CLOSE_UNAUTHENTICATED, "signed out")  # in its handshake: sent after its accept
            else:
                socket.access_dirty = True  # it checks again once it knows its user
        recheck = []
        for socket in [s for s in self.by_user.get(user_key, ()) if not s.closing]:
            if signed_out(socket):
                socket.shut(access.CLOSE_UNAUTHENTICATED, "signed out")
            else:
                socket.access_dirty = True  # one still in its handshake checks again before it goes live
                recheck.append(socket)
        if recheck:
            self.loop.create_task(self.recheck(recheck), name=f"realtime-hub-recheck {self.id}")

    async def recheck(self, sockets) -> None:
        live = [s for s in sockets if s.live and not s.closing]
        for socket in live:
            socket.access_dirty = False
        if not live:
            return  # sockets still connecting check again themselves (access_dirty)
        try:
            answers = await check_many([s.access_request() for s in live])
        except Exception:  # noqa: BLE001 - the sweep tries again
            logger.warning("re-checking %d dashboard sockets failed; the next sweep retries", len(live), exc_info=True)
            return
        for socket, answer in zip(live, answers):
            if isinstance(answer, Refusal):
                if answer.session_ended:
                    # Not "signed out": a password changed in this very session renews its key (Django's
                    # update_session_auth_hash), and the old key is not followed, since whoever else holds
                    # it (a stolen cookie) is what the renewal shuts out. The browser's reconnect decides.
                    socket.shut(access.CLOSE_SESSION_ENDED, access.SESSION_ENDED_REASON)
                else:
                    socket.shut(answer.code, answer.reason)

    async def check(self, request: tuple):
        """One socket's verdict; handshakes arriving together share one batched query."""
        future = self.loop.create_future()
        self.pending_checks.append((request, future))
        if self.check_task is None:
            self.check_task = self.loop.create_task(self._check_pending(), name=f"realtime-hub-check {self.id}")
        return await future

    async def _check_pending(self) -> None:
        try:
            while self.pending_checks:
                pending, self.pending_checks = self.pending_checks[:SWEEP_CHUNK], self.pending_checks[SWEEP_CHUNK:]
                try:
                    answers = await check_many([request for request, _ in pending])
                except BaseException as exc:  # noqa: BLE001 - handed to every waiting handshake
                    for _, future in pending:
                        if not future.done():
                            future.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for (_, future), answer in zip(pending, answers):
                    if not future.done():
                        future.set_result(answer)
        finally:
            self.check_task = None

    async def _sweep(self) -> None:
        """The safety net for changes the ORM did not see, and the socket-count leases."""
        now = time.monotonic()
        next_check = now + settings.REALTIME_ACCESS_RECHECK_SECONDS
        next_renew = now + LEASE_RENEW_SECONDS
        while True:
            await asyncio.sleep(max(0.0, min(next_check, next_renew) - time.monotonic()))
            now = time.monotonic()
            try:
                if now >= next_renew:
                    next_renew = now + LEASE_RENEW_SECONDS
                    await slots().renew_many([(s.user_key, s.member) for s in self.sockets if s.slot_held])
                if now >= next_check:
                    next_check = now + settings.REALTIME_ACCESS_RECHECK_SECONDS
                    live = [s for s in self.sockets if s.live and not s.closing]
                    for start in range(0, len(live), SWEEP_CHUNK):
                        await self.recheck(live[start:start + SWEEP_CHUNK])
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a hiccup must not end the safety net
                logger.warning("the dashboard hub's sweep failed; trying again later", exc_info=True)


def _messages_after(items: list, applied: int) -> list:
    """The batch's ASGI messages past `applied`, never letting a weekly value go backwards."""
    messages = []
    last_seq: dict = {}
    for item in items:
        seq = item["seq"]
        if seq <= applied:
            continue
        key = item["key"]
        if key is not None:
            if last_seq.get(key, 0) >= seq:
                continue
            last_seq[key] = seq
        messages.append(text_message(item["text"]))
    return messages


_hubs: dict = {}
# A hub leaving its groups: the next one subscribes only after it has left, or the last unsubscribe
# of the (shared) layer's group could land after the new hub's subscribe and leave it deaf.
_stopping: dict = {}


def _forget(hub: Hub) -> None:
    if _hubs.get(hub.loop) is hub:
        del _hubs[hub.loop]


async def get_hub() -> Hub:
    """This process's hub on the running loop, started (and subscribed) on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is not None:
        if hub.starting is not None:
            await asyncio.shield(hub.starting)
        return hub
    for registry in (_hubs, _stopping):
        for stale in [other for other in registry if other.is_closed()]:
            del registry[stale]
    stopping = _stopping.get(loop)
    if stopping is not None:
        await asyncio.shield(stopping)
        if _stopping.get(loop) is stopping:
            del _stopping[loop]
        return await get_hub()  # another socket may have started one meanwhile
    hub = _hubs[loop] = Hub(loop)
    hub.starting = loop.create_task(hub.start())
    try:
        await asyncio.shield(hub.starting)
    finally:
        hub.starting = None
    return hub


def serving_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop of a running hub in this process (embedded mode has one), for publishing from a thread."""
    for loop, hub in list(_hubs.items()):
        if not loop.is_closed() and not hub.stopped:
            return loop
    return None


def current_hub() -> Hub | None:
    """The running loop's hub, if one is started (tests, metrics)."""
    try:
        return _hubs.get(asyncio.get_running_loop())
    except RuntimeError:
        return None
