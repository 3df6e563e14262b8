"""The /ws/dashboard/ consumer: a snapshot on connect, then the admin_dashboard group's messages.

A socket lives only as long as its user's rights: it joins its user's group (realtime.revocation)
and re-checks the user from the database (realtime.access) on every `access.changed` and every
REALTIME_ACCESS_RECHECK_SECONDS, closing with 4401 or 4403 when they no longer qualify.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import re
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils.module_loading import import_string

from realtime import access
from realtime.access import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED, Refusal, session_digest
from realtime.auth import BY_TICKET
from realtime.revocation import user_group
from realtime.sockets import LEASE_RENEW_SECONDS, slots

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


def _check_access(**kwargs):
    return access.verdict(**kwargs)


# Thread-sensitive like every other ORM call of this consumer (the snapshot): one connection per thread.
check_access = database_sync_to_async(_check_access)


class DashboardConsumer(AsyncWebsocketConsumer):
    joined = False
    closing = False
    user_id = None
    user_joined = False
    slot_held = False
    session_key = None
    auth_hash = None
    ticker = None
    allowance = float(BURST_FRAMES)
    checked_at = 0.0

    def _within_rate(self) -> bool:
        """Token bucket: BURST_FRAMES at once, FRAMES_PER_SECOND sustained."""
        now = time.monotonic()
        self.allowance = min(BURST_FRAMES, self.allowance + (now - (self.checked_at or now)) * FRAMES_PER_SECOND)
        self.checked_at = now
        if self.allowance < 1:
            return False
        self.allowance -= 1
        return True

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            # However the consumer ends (a disconnect, a crash), its timer and its slot go with it.
            await self._release()

    # --- lifecycle ----------------------------------------------------------
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Accept first so the browser sees our close code, not a bare handshake failure.
            await self.refuse(CLOSE_UNAUTHENTICATED, "authentication required")
            return
        self.user_id = user.pk
        if self.scope.get("realtime_auth") != BY_TICKET:
            session = self.scope.get("session")
            self.session_key = getattr(session, "session_key", None)
            if not self.session_key:
                await self.refuse(CLOSE_UNAUTHENTICATED, "authentication required")
                return
        # Join the user's group before checking, so a change committed in between is not missed.
        await self.channel_layer.group_add(user_group(self.user_id), self.channel_name)
        self.user_joined = True
        verdict = await check_access(user_id=self.user_id, session_key=self.session_key)
        if isinstance(verdict, Refusal):
            await self.refuse(verdict.code, verdict.reason)
            return
        if self.session_key is None:
            self.auth_hash = verdict.auth_hash  # a ticket socket ends when the password changes
        limit = settings.REALTIME_MAX_SOCKETS_PER_USER
        if not await slots().acquire(str(self.user_id), self.channel_name, limit):
            await self.refuse(CLOSE_TOO_MANY_SOCKETS, f"too many open sockets for this user (at most {limit})")
            return
        self.slot_held = True
        self.group = settings.REALTIME_GROUP
        # Join before reading the snapshot, so nothing committed in between is missed;
        # messages the snapshot already covers are dropped by their seq.
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.joined = True
        await self.accept()
        self.ticker = asyncio.create_task(self._tick(), name=f"dashboard-socket-ticker {self.channel_name}")
        await self.send_snapshot()

    async def refuse(self, code: int, reason: str):
        await self.accept()
        await self.shut(code, reason)

    async def shut(self, code: int, reason: str):
        """Close from the server side, once; nothing more is sent to this client after it."""
        if self.closing:
            return
        self.closing = True
        reason = reason.encode("utf-8")[:123].decode("utf-8", "ignore")  # a close frame's limit
        if self.joined:
            # Stop the flow of dashboard messages now, not when the client acknowledges the close.
            self.joined = False
            await self.channel_layer.group_discard(self.group, self.channel_name)
        await self.close(code=code, reason=reason)

    async def send(self, text_data=None, bytes_data=None, close=False):
        if self.closing:
            return
        await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

    async def disconnect(self, code):
        await self._release()

    async def _release(self):
        ticker, self.ticker = self.ticker, None
        if ticker is not None and ticker is not asyncio.current_task():
            ticker.cancel()
        if self.joined:
            self.joined = False
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.user_joined:
            self.user_joined = False
            await self.channel_layer.group_discard(user_group(self.user_id), self.channel_name)
        if self.slot_held:
            self.slot_held = False
            await slots().release(str(self.user_id), self.channel_name)

    # --- access ------------------------------------------------------------------------
    async def recheck(self) -> bool:
        """Check the user again; close the socket if they no longer qualify. True while it stays open."""
        if self.closing:
            return False
        verdict = await check_access(user_id=self.user_id, session_key=self.session_key, auth_hash=self.auth_hash)
        if isinstance(verdict, Refusal):
            await self.shut(verdict.code, verdict.reason)
            return False
        return True

    async def access_changed(self, event):
        """From realtime.revocation: this user's rights, password or sessions changed."""
        ended = event.get("ended_session")
        if ended and self.session_key and ended == session_digest(self.session_key):
            await self.shut(CLOSE_UNAUTHENTICATED, "signed out")
            return
        await self.recheck()

    async def _tick(self):
        """The safety net for changes the ORM did not see; also renews this socket's slot lease."""
        interval = settings.REALTIME_ACCESS_RECHECK_SECONDS
        now = time.monotonic()
        # Spread the re-checks of sockets opened together (a deploy reconnects everyone at once).
        next_check = now + interval * random.uniform(0.8, 1.0)
        next_renew = now + LEASE_RENEW_SECONDS
        while not self.closing:
            await asyncio.sleep(max(0.0, min(next_check, next_renew) - time.monotonic()))
            now = time.monotonic()
            try:
                if now >= next_renew:
                    next_renew = now + LEASE_RENEW_SECONDS
                    await slots().renew(str(self.user_id), self.channel_name)
                if now >= next_check:
                    next_check = now + interval * random.uniform(0.9, 1.1)
                    if not await self.recheck():
                        return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a database hiccup must not end the safety net
                logger.warning("re-checking a dashboard socket's user failed; trying again later", exc_info=True)

    async def send_snapshot(self):
        snapshot = await database_sync_to_async(import_string(settings.REALTIME_SNAPSHOT_PROVIDER))()
        # Everything up to `applied` is in what this client has; batches chain from there.
        self.applied = snapshot["seq"]
        self.key_seq: dict[str, int] = {}
        await self.send(text_data=json.dumps(snapshot, separators=(",", ":")))

    async def send_error(self, detail: str, code: str = "bad_request"):
        await self.send(text_data=json.dumps({"type": "error", "code": code, "detail": detail}))

    # --- client -> server ---------------------------------------------------
    async def receive(self, text_data=None, bytes_data=None):
        if self.closing:
            return
        if not self._within_rate():
            await self.shut(CLOSE_TOO_MANY_MESSAGES, "too many messages")
            return
        if text_data is None:
            await self.send_error("binary frames are not supported; send JSON text")
            return
        if len(text_data) > MAX_FRAME_BYTES:
            await self.send_error(f"frames are limited to {MAX_FRAME_BYTES} bytes", code="frame_too_large")
            return
        # json.loads recurses per level: a frame nested thousands deep must never reach it.
        if too_deep(text_data):
            await self.send_error(f"frame nests deeper than {MAX_FRAME_DEPTH} levels")
            return
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):
            await self.send_error("frame is not valid JSON")
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self.send_error('a frame must be a JSON object with a string "type"')
            return
        handler = {"ping": self.on_ping, "resume": self.on_resume}.get(message["type"])
        if handler is None:
            await self.send_error(f"unknown message type {message['type'][:64]!r}; expected ping or resume")
            return
        await handler(message)

    async def on_ping(self, message):
        await self.send(text_data='{"type":"pong"}')

    async def on_resume(self, message):
        since = message.get("since")
        if isinstance(since, bool) or not isinstance(since, int) or since < 0:
            await self.send_error('resume needs "since": a non-negative integer seq')
            return
        # A fresh snapshot is always a correct answer: values are absolute, and
        # the client drops whatever it already has by seq.
        await self.send_snapshot()

    # --- group -> client: events from realtime.broadcast ------------------------------
    async def dashboard_batch(self, event):
        """Messages for event positions (after, through], in order."""
        if self.closing:
            return
        if event["through"] <= self.applied:
            return  # the snapshot this client has already reflects it
        if event["after"] > self.applied:
            # A batch never reached us (the layer dropped it for capacity, or it was
            # lost): rather than leave the client silently wrong, start it over.
            await self.send_snapshot()
            return
        for item in event["items"]:
            if item["seq"] <= self.applied:
                continue
            key = item["key"]
            if key is not None:
                if self.key_seq.get(key, 0) >= item["seq"]:
                    continue  # never let a weekly value go backwards
                self.key_seq[key] = item["seq"]
            await self.send(text_data=item["text"])
        self.applied = event["through"]

    async def dashboard_resync(self, event):
        if self.closing:
            return
        await self.send_snapshot()
