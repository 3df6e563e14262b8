"""App config for the dashboard page."""
from django.apps import AppConfig


class DashboardUiConfig(AppConfig):
    name = "dashboard_ui"
