"""URL routes for the analytics API."""
from django.urls import path

from analytics import api, review_queue_api

urlpatterns = [
    path("analytics/weekly-income/", api.weekly_income_view, name="weekly-income"),
    path("analytics/review-queue/", review_queue_api.ReviewQueueApi.as_view(), name="review-queue"),
    path("analytics/summary/", api.WeeklySummaryApi.as_view(), name="weekly-summary"),
    path("dashboard/snapshot/", api.DashboardSnapshotApi.as_view(), name="dashboard-snapshot"),
]
