"""URL routes for the transactions API."""
from django.urls import path

from transactions import api, bulk_api

urlpatterns = [
    path("transactions/", api.TransactionListCreateApi.as_view(), name="transaction-list"),
    path("transactions/<uuid:transaction_id>/", api.TransactionDetailApi.as_view(), name="transaction-detail"),
    path("transactions/bulk-decisions/", bulk_api.TransactionBulkDecisionsApi.as_view(), name="transaction-bulk-decisions"),
    path("transactions/<uuid:transaction_id>/approve/", api.TransactionApproveApi.as_view(), name="transaction-approve"),
    path("transactions/<uuid:transaction_id>/reject/", api.TransactionRejectApi.as_view(), name="transaction-reject"),
    path("transactions/<uuid:transaction_id>/reverse/", api.TransactionReverseApi.as_view(), name="transaction-reverse"),
    path("transactions/<uuid:transaction_id>/events/", api.TransactionEventsApi.as_view(), name="transaction-events"),
]
