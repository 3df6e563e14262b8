"""The /ws/dashboard/ consumer: a snapshot on connect, then every projected batch, through the process's hub.

A plain ASGI application, not a Channels consumer: it has no channel-layer channel and no group of
its own. It registers with the process's hub (realtime.hub), which delivers the dashboard stream,
routes `access.changed` for its user to it, and re-checks every local socket's user from the database
every REALTIME_ACCESS_RECHECK_SECONDS; it closes with 4401 or 4403 when the user no longer qualifies,
4410 when the session it was opened with stopped being valid (realtime.access.CLOSE_SESSION_ENDED).
Everything sent to the client goes through the socket's bounded outbox, drained by a writer task
that exists only while there is something to send.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import time
from collections import deque

from django.conf import settings
from django.http.cookie import parse_cookie

from core import metrics
from realtime.access import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED, Refusal
from realtime.auth import BY_TICKET
from realtime.hub import OUTBOX_LIMIT, get_hub
from realtime.sockets import slots

logger = logging.getLogger(__name__)

__all__ = ["CLOSE_FORBIDDEN", "CLOSE_TOO_MANY_MESSAGES", "CLOSE_TOO_MANY_SOCKETS", "CLOSE_UNAUTHENTICATED", "DashboardConsumer"]

CLOSE_TOO_MANY_MESSAGES = 4429
# The same code, another reason: more open sockets for this user than REALTIME_MAX_SOCKETS_PER_USER.
CLOSE_TOO_MANY_SOCKETS = 4429
MAX_FRAME_BYTES = 64 * 1024
# No message this API takes nests deeper than 2; deeper than this is refused before it is parsed.
MAX_FRAME_DEPTH = 32
# A dashboard sends a ping every few seconds and a resume after reconnecting; a client
# far beyond this is broken or hostile, and is closed before it costs everyone else.
BURST_FRAMES = 50
FRAMES_PER_SECOND = 20.0

# For the depth check: string literals (their brackets do not count) and everything but brackets.
# The scan runs in the regex engine and C iterators, not in a Python loop per character.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def too_deep(text: str, limit: int = MAX_FRAME_DEPTH) -> bool:
    """Whether JSON text nests arrays/objects deeper than `limit` (a few ms for 64 KiB of brackets)."""
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(itertools.accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0) > limit


PONG = {"type": "websocket.send", "text": '{"type":"pong"}'}


def session_cookie(scope) -> str | None:
    """The session key the handshake's Cookie header carries (Channels' cookie parsing when it already ran)."""
    cookies = scope.get("cookies")
    if cookies is None:
        header = b"; ".join(value for name, value in scope.get("headers", ()) if name == b"cookie")
        cookies = parse_cookie(header.decode("latin-1")) if header else {}
    return cookies.get(settings.SESSION_COOKIE_NAME) or None
ACCEPT = {"type": "websocket.accept"}


def _frame(payload: dict) -> dict:
    return {"type": "websocket.send", "text": json.dumps(payload, separators=(",", ":"))}


async def _finish(step, blocked_on):
    """Drive a coroutine that push() started and that suspended, as its task would have: wait for what it
    is blocked on (an asyncio future, or None for a bare yield), then resume it, until it returns."""
    while True:
        try:
            if blocked_on is None:
                await asyncio.sleep(0)
            else:
                # What a task does with a future its coroutine yields: it is now ours to wait on.
                blocked_on._asyncio_future_blocking = False
                await blocked_on
        except asyncio.CancelledError as exc:
            if asyncio.current_task().cancelling():
                step.close()  # the writer itself is cancelled (the socket is gone)
                raise
            try:
                blocked_on = step.throw(exc)  # only what it awaited was cancelled: the coroutine decides
            except StopIteration:
                return
            continue
        except BaseException as exc:  # noqa: BLE001 - the coroutine sees what it awaited raise
            try:
                blocked_on = step.throw(exc)
            except StopIteration:
                return
            continue
        try:
            blocked_on = step.send(None)
        except StopIteration:
            return


class DashboardConsumer:
    """One dashboard websocket. Slots keep an idle socket small: its state is little more than `applied`."""

    __slots__ = (
        "send_raw", "hub", "user_id", "user_key", "session_key", "auth_hash", "applied", "outbox", "writer",
        "closing", "accepted", "live", "member", "slot_held", "access_dirty", "allowance", "checked_at",
    )

    def __init__(self, send):
        self.send_raw = send
        self.hub = None
        self.user_id = None
        self.user_key = None
        self.session_key = None
        self.auth_hash = None
        # Everything up to `applied` is in what this client has (or has queued); None while its snapshot is on the way.
        self.applied = None
        self.outbox = None
        self.writer = None
        self.closing = False
        self.accepted = False  # websocket.accept sent: a close may go out from now on
        self.live = False
        self.member = None
        self.slot_held = False
        self.access_dirty = False
        self.allowance = float(BURST_FRAMES)
        self.checked_at = 0.0

    @classmethod
    def as_asgi(cls):
        async def app(scope, receive, send):
            await cls(send).run(scope, receive)

        app.consumer_class = cls
        return app

    async def run(self, scope, receive):
        if (await receive())["type"] != "websocket.connect":
            return
        try:
            await self.connect(scope)
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    self.receive(message.get("text"), message.get("bytes"))
                elif kind == "websocket.disconnect":
                    if not self.closing:
                        metrics.websocket_closed(message.get("code", 1005), by="client")
                    break
        finally:
            # However the socket ends (a disconnect, a crash), its registration and its slot go with it.
            await self.release()

    def _within_rate(self) -> bool:
        """Token bucket: BURST_FRAMES at once, FRAMES_PER_SECOND sustained."""
        now = time.monotonic()
        self.allowance = min(BURST_FRAMES, self.allowance + (now - (self.checked_at or now)) * FRAMES_PER_SECOND)
        self.checked_at = now
        if self.allowance < 1:
            return False
        self.allowance -= 1
        return True

    # --- lifecycle ----------------------------------------------------------
    async def connect(self, scope):
        if scope.get("realtime_auth") == BY_TICKET:
            user = scope.get("user")  # the ticket's (realtime.auth.TicketAuthMiddleware)
            # Every check of this socket compares the password to the one the ticket was issued
            # with, not to whatever the first check sees: it ends when the password changes.
            self.auth_hash = scope.get("realtime_auth_hash")
            if user is None or not user.is_authenticated or not self.auth_hash:
                await self.refuse(CLOSE_UNAUTHENTICATED, "authentication required")
                return
            self.user_id = user.pk
        else:
            # The session cookie alone: the hub finds its user with everyone else's in one batched query.
            self.session_key = session_cookie(scope)
            if not self.session_key:
                # Accept first so the browser sees our close code, not a bare handshake failure.
                await self.refuse(CLOSE_UNAUTHENTICATED, "authentication required")
                return
        hub = self.hub = await get_hub()
        # Registered before checking, so a change committed in between is not missed: the hub sets
        # access_dirty (or shuts a signed-out session's socket) while we wait, and the recheck sweep
        # skips sockets that are not live. So every wait below is followed by another pass, and the
        # socket goes live only after a pass during which nothing changed.
        hub.register(self)
        limit = settings.REALTIME_MAX_SOCKETS_PER_USER
        while True:
            self.access_dirty = False
            verdict = await hub.check(self.access_request())
            if self.closing:
                break
            if isinstance(verdict, Refusal):
                reason = verdict.reason
                if self.user_id is None and verdict.code == CLOSE_UNAUTHENTICATED:
                    reason = "authentication required"  # a cookie that signs nobody in (any more)
                await self.refuse(verdict.code, reason)
                return
            if self.user_id is None:
                self.user_id = verdict.user_id
                hub.identify(self)
            if not self.slot_held and not self.access_dirty:
                # A Redis round trip, which can take seconds in a handshake storm.
                if not await slots().acquire(self.user_key, self.member, limit):
                    await self.refuse(CLOSE_TOO_MANY_SOCKETS, f"too many open sockets for this user (at most {limit})")
                    return
                self.slot_held = True
            if not self.accepted and not self.access_dirty and not self.closing:
                await self.send_raw(ACCEPT)
                self.accepted = True
            if self.closing or not self.access_dirty:
                break
        if self.closing:
            await self.close_handshake()  # the hub shut it meanwhile (its session logged out)
            return
        self.live = True
        metrics.WEBSOCKET_CONNECTIONS.inc()
        # The hub is already subscribed: the snapshot is read after this, and batches that arrive
        # meanwhile are replayed after it; messages the snapshot already covers are dropped by seq.
        hub.join(self)

    def access_request(self) -> tuple:
        return (self.user_id, self.session_key, self.auth_hash)

    async def refuse(self, code: int, reason: str):
        """Close a socket in its handshake (a no-op shut() when the hub shut it first: its close is sent)."""
        self.shut(code, reason)
        await self.close_handshake()

    async def close_handshake(self):
        """Send the close shut() queued during the handshake, after an accept: a browser sees our close
        code only on an accepted socket (a close before the accept is a bare HTTP 403 handshake failure)."""
        if not self.accepted:
            await self.send_raw(ACCEPT)
            self.accepted = True
        self._start_writer()

    def shut(self, code: int, reason: str, *, drop_queued: bool = True):
        """Close from the server side, once; nothing more is sent to this client after it.
        drop_queued: what is queued but not yet written is dropped (the user lost access).
        Safe in the handshake too: before the accept the close is only queued, and refuse() sends it."""
        if self.closing:
            return
        self.closing = True
        metrics.websocket_closed(code, by="server")
        reason = reason.encode("utf-8")[:123].decode("utf-8", "ignore")  # a close frame's limit
        if self.outbox is None:
            self.outbox = deque()
        elif drop_queued:
            self.outbox.clear()
        self.outbox.append({"type": "websocket.close", "code": code, "reason": reason})
        if self.accepted:
            self._start_writer()

    def push(self, messages: list) -> None:
        """Send ASGI messages to the client, or queue them behind what it has not taken yet. Past
        OUTBOX_LIMIT the queue (and these messages) is dropped and the socket waits for a snapshot
        (`applied` None): whoever pushed, a reply or a batch, the client never skips what was dropped."""
        if self.closing:
            return
        outbox = self.outbox
        if outbox is None and self.writer is None:
            # Nothing queued: write now, on this stack. The server's send normally completes without
            # suspending (the transport takes the bytes), so the common case costs no task at all.
            send = self.send_raw
            for index, message in enumerate(messages):
                step = send(message)
                try:
                    blocked_on = step.send(None)
                except StopIteration:
                    continue
                except Exception:  # noqa: BLE001 - the connection is gone; the receive loop sees the disconnect
                    self.closing = True
                    return
                # The client is not reading (flow control): finish this send and the rest in a writer task.
                self.outbox = deque(messages[index + 1:])
                self.writer = asyncio.get_running_loop().create_task(self._drain(step, blocked_on))
                return
            return
        if outbox is None:
            outbox = self.outbox = deque(messages)
        elif outbox and len(outbox) + len(messages) > OUTBOX_LIMIT:
            outbox.clear()  # a client this far behind gets a snapshot, not the backlog
            self.hub.behind(self)
            return
        else:
            outbox.extend(messages)
        self._start_writer()

    def _start_writer(self):
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self, step=None, blocked_on=None):
        outbox = self.outbox
        try:
            if step is not None:
                await _finish(step, blocked_on)
            while outbox:
                message = outbox.popleft()
                await self.send_raw(message)
                if message["type"] == "websocket.close":
                    outbox.clear()
                    break
        except Exception:  # noqa: BLE001 - the connection is gone; the receive loop sees the disconnect
            logger.debug("sending to a dashboard socket failed", exc_info=True)
            self.closing = True
            outbox.clear()
        finally:
            self.writer = None
            if self.outbox is outbox and not outbox:
                self.outbox = None  # an idle socket holds no queue

    async def release(self):
        if self.live:
            metrics.WEBSOCKET_CONNECTIONS.dec()
        self.closing = True
        self.live = False
        writer, self.writer = self.writer, None
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
        if self.hub is not None:
            self.hub.unregister(self)
        if self.slot_held:
            self.slot_held = False
            await slots().release(self.user_key, self.member)

    # --- client -> server ---------------------------------------------------
    def send_error(self, detail: str, code: str = "bad_request"):
        metrics.SENT_REPLIES.inc()
        self.push([_frame({"type": "error", "code": code, "detail": detail})])

    def receive(self, text_data=None, bytes_data=None):
        if self.closing:
            return
        if not self._within_rate():
            self.shut(CLOSE_TOO_MANY_MESSAGES, "too many messages", drop_queued=False)
            return
        if text_data is None:
            self.send_error("binary frames are not supported; send JSON text")
            return
        if len(text_data) > MAX_FRAME_BYTES:
            self.send_error(f"frames are limited to {MAX_FRAME_BYTES} bytes", code="frame_too_large")
            return
        # json.loads recurses per level: a frame nested thousands deep must never reach it.
        if too_deep(text_data):
            self.send_error(f"frame nests deeper than {MAX_FRAME_DEPTH} levels")
            return
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):
            self.send_error("frame is not valid JSON")
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self.send_error('a frame must be a JSON object with a string "type"')
            return
        kind = message["type"]
        if kind == "ping":
            metrics.SENT_REPLIES.inc()
            self.push([PONG])
        elif kind == "resume":
            self.on_resume(message)
        else:
            self.send_error(f"unknown message type {kind[:64]!r}; expected ping or resume")

    def on_resume(self, message):
        since = message.get("since")
        if isinstance(since, bool) or not isinstance(since, int) or since < 0:
            self.send_error('resume needs "since": a non-negative integer seq')
            return
        # A fresh snapshot is always a correct answer: values are absolute, and
        # the client drops whatever it already has by seq.
        if self.live:
            self.hub.resync([self])
