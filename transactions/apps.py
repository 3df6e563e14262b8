"""App config for transactions."""
from django.apps import AppConfig


class TransactionsConfig(AppConfig):
    name = "transactions"

    def ready(self):
        from transactions import event_data

        event_data.register()
