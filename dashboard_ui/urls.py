"""URL routes for the dashboard page."""
from django.urls import path

from dashboard_ui import views

urlpatterns = [path("", views.dashboard, name="dashboard")]
