"""URL routes for the realtime REST API."""
from django.urls import path

from realtime import api

urlpatterns = [path("realtime/tickets/", api.TicketApi.as_view(), name="realtime-ticket")]
