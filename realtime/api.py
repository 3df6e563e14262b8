"""POST /api/realtime/tickets/: a single-use websocket ticket for the caller."""
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from realtime.tickets import ticket_issue


class TicketApi(APIView):
    @extend_schema(
        summary="Issue a websocket ticket",
        description=(
            "A single-use ticket valid for 60 seconds: open `/ws/dashboard/?ticket=<ticket>`. "
            "Lets clients that authenticate with a JWT open the websocket without putting the JWT in a URL."
        ),
        request=None,
        responses={201: inline_serializer("Ticket", {"ticket": serializers.CharField(), "expires_in": serializers.IntegerField()})},
    )
    def post(self, request):
        ticket, expires_in = ticket_issue(user=request.user)
        return Response({"ticket": ticket, "expires_in": expires_in}, status=status.HTTP_201_CREATED)
