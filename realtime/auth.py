"""Websocket authentication by `?ticket=`; without one, the session user set by AuthMiddleware stands."""
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser

from realtime.tickets import ticket_redeem


class TicketAuthMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "ticket" in query:
            user = await database_sync_to_async(ticket_redeem)(ticket=query["ticket"][0])
            # A bad, used or expired ticket means "not authenticated", even with a session cookie:
            # the client asked to be this ticket's user.
            scope = dict(scope, user=user or AnonymousUser())
        return await self.app(scope, receive, send)
