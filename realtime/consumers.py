"""The /ws/dashboard/ consumer: a snapshot on connect, then the admin_dashboard group's messages."""
from __future__ import annotations

import json
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils.module_loading import import_string



CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_MANY_MESSAGES = 4429
MAX_FRAME_BYTES = 64 * 1024
# A dashboard sends a ping every few seconds and a resume after reconnecting; a client
# far beyond this is broken or hostile, and is closed before it costs everyone else.
BURST_FRAMES = 50
FRAMES_PER_SECOND = 20.0



class DashboardConsumer(AsyncWebsocketConsumer):
    joined = False
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

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Accept first so the browser sees our close code, not a bare handshake failure.
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED, reason="authentication required")
            return
        if not user.is_staff:
            await self.accept()
            await self.close(code=CLOSE_FORBIDDEN, reason="staff only")
            return
        self.group = settings.REALTIME_GROUP
        # Join before reading the snapshot, so nothing committed in between is missed;
        # messages the snapshot already covers are dropped by their seq.
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.joined = True
        await self.accept()
        await self.send_snapshot()

    async def disconnect(self, code):
        if self.joined:
            await self.channel_layer.group_discard(self.group, self.channel_name)

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
        if not self._within_rate():
            await self.close(code=CLOSE_TOO_MANY_MESSAGES, reason="too many messages")
            return
        if text_data is None:
            await self.send_error("binary frames are not supported; send JSON text")
            return
        if len(text_data) > MAX_FRAME_BYTES:
            await self.send_error(f"frames are limited to {MAX_FRAME_BYTES} bytes", code="frame_too_large")
            return
        try:
            message = json.loads(text_data)
        except ValueError:
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
        await self.send_snapshot()
