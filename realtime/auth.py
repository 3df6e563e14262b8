"""The websocket handshake's guards: the Origin check, then authentication by `?ticket=` or the session.

Order (core/asgi.py): OriginCheck -> TicketAuthMiddleware -> the consumer, which reads the session
cookie itself (its user comes from the hub's batched access check, realtime/access.py).

* OriginCheck: the Origin header must equal, exactly (scheme, host and port), one of
  WEBSOCKET_ALLOWED_ORIGINS or the origin the server itself was reached at (the handshake's Host
  header, when it is in ALLOWED_HOSTS, with http for ws and https for wss). A handshake without
  Origin (a script, not a browser) passes only with a ticket: a session cookie alone never
  authenticates it. A refused handshake spends any ticket it carried.
* TicketAuthMiddleware: `?ticket=` present means the socket is the ticket's user or nobody, even
  with a session cookie: an empty, malformed, repeated, used, expired or unknown ticket closes 4401.
"""
from __future__ import annotations

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import split_domain_port, validate_host

from core.origins import normalize_origin
from realtime.tickets import ticket_burn, ticket_redeem

# scope["realtime_auth"]: how the socket's user was established.
BY_TICKET = "ticket"


def presented_tickets(scope) -> list[str] | None:
    """Every `ticket=` value in the query string ([""] for a bare `?ticket=`); None when there is none."""
    query = scope.get("query_string", b"").decode("latin-1")
    values = parse_qs(query, keep_blank_values=True).get("ticket")
    return values or None


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _allowed_hosts() -> list[str]:
    hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]  # as Django's HttpRequest.get_host does
    return hosts


def own_origin(scope) -> str | None:
    """The origin this handshake reached the server at, if its Host header is one we serve."""
    host = _header(scope, b"host")
    if not host:
        return None
    domain, _port = split_domain_port(host.lower())
    if not domain or not validate_host(domain, _allowed_hosts()):
        return None
    scheme = "https" if scope.get("scheme") == "wss" else "http"
    proxy_header = settings.SECURE_PROXY_SSL_HEADER
    if proxy_header:
        # Behind a TLS-terminating proxy (DJANGO_BEHIND_PROXY): the proxy says what the browser used.
        name = proxy_header[0].removeprefix("HTTP_").replace("_", "-").lower().encode("latin-1")
        forwarded = _header(scope, name)
        if forwarded is not None and forwarded.split(",", 1)[0].strip() == proxy_header[1]:
            scheme = "https"
    return normalize_origin(f"{scheme}://{host}")


def origin_allowed(scope, origin: str) -> bool:
    candidate = normalize_origin(origin)
    if candidate is None:  # "null", garbage, a path...
        return False
    return candidate in settings.WEBSOCKET_ALLOWED_ORIGINS or candidate == own_origin(scope)


def _burn_all(tickets: list[str]) -> None:
    for ticket in tickets:
        ticket_burn(ticket=ticket)


class OriginCheck:
    """Refuses the handshake (HTTP 403) unless the Origin is allowed, or absent with a ticket."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            raise ValueError("OriginCheck only guards websockets")
        tickets = presented_tickets(scope)
        origins = [value.decode("latin-1") for key, value in scope.get("headers", []) if key == b"origin"]
        if not origins:
            allowed = tickets is not None  # a script with a ticket; never a bare cookie
        else:
            allowed = len(origins) == 1 and origin_allowed(scope, origins[0])
        if not allowed:
            if tickets:
                await database_sync_to_async(_burn_all)(tickets)
            return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)


def _redeem(tickets: list[str]):
    if len(tickets) != 1:
        _burn_all(tickets)
        return None
    return ticket_redeem(ticket=tickets[0])


class TicketAuthMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        tickets = presented_tickets(scope)
        if tickets is not None:
            redeemed = await database_sync_to_async(_redeem)(tickets)
            # A bad, used or expired ticket means "not authenticated", even with a session cookie:
            # the client asked to be this ticket's user.
            user, auth_hash = (redeemed.user, redeemed.auth_hash) if redeemed else (AnonymousUser(), None)
            scope = dict(scope, user=user, realtime_auth=BY_TICKET, realtime_auth_hash=auth_hash)
        return await self.app(scope, receive, send)
