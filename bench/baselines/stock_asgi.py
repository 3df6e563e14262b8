"""The stock tutorial fan-out: a Channels consumer on stock channels_redis RedisChannelLayer.

What a user would build from the Channels tutorial: each socket group_adds itself to one group on
connect and forwards each group message's text. Served by the product's own web command with this
module as the application (bench/fanout.py), so worker count and server flags are the same.
Environment: REDIS_URL, CHANNELS_PREFIX. GET /healthz answers 200 for the readiness check.
"""
import os

import django
from django.conf import settings

GROUP = "bench_fanout"

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-stock-baseline-not-secret",
    ALLOWED_HOSTS=["*"],
    INSTALLED_APPS=["channels"],
    # The layer as the channels-redis README configures it: no tuning.
    CHANNEL_LAYERS={
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [os.environ["REDIS_URL"]], "prefix": os.environ.get("CHANNELS_PREFIX", "asgi")},
        }
    },
)
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402 - needs settings first
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class FanoutConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def bench_message(self, event):
        await self.send(text_data=event["text"])


async def healthz(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


application = ProtocolTypeRouter(
    {
        "http": healthz,
        "lifespan": healthz,
        "websocket": URLRouter([path("ws/dashboard/", FanoutConsumer.as_asgi())]),
    }
)
