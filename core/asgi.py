"""ASGI entry point: Django for HTTP, the realtime consumer for websockets."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - needs Django set up first
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from realtime.auth import OriginCheck, TicketAuthMiddleware  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # The Origin must be exactly (scheme, host, port) an allowed one, so a page on another
        # port or scheme of the same host cannot ride an admin's cookie (realtime/auth.py).
        "websocket": OriginCheck(AuthMiddlewareStack(TicketAuthMiddleware(URLRouter(websocket_urlpatterns)))),
    }
)
