"""The review queue's reads refuse rows cut for another time zone or week start than the server's."""
from datetime import date

import pytest
from django.test.utils import override_settings

from analytics.models import ProjectionCheckpoint, ReviewQueueWeek
from analytics.review_queue_selectors import review_queue
from analytics.selectors import ProjectionRebuildPending

pytestmark = pytest.mark.django_db
URL = "/api/analytics/review-queue/"


@pytest.fixture
def stored():
    ProjectionCheckpoint.objects.update_or_create(name="review_queue", defaults={"position": 41, "config": "UTC/monday"})
    ReviewQueueWeek.objects.create(week_start=date(2026, 11, 16), approved=3, last_position=40)


def test_it_reads_rows_cut_for_the_servers_own_settings(stored):
    report = review_queue(start=date(2026, 11, 16), end=date(2026, 11, 16))

    assert report.as_of == 41 and report.weeks[0]["approved"] == 3


def test_it_refuses_rows_cut_for_another_week_start_instead_of_labelling_them_wrongly(stored):
    with override_settings(ANALYTICS_WEEK_START="sunday"), pytest.raises(ProjectionRebuildPending, match="'UTC/monday'"):
        review_queue(start=date(2026, 11, 15), end=date(2026, 11, 15))


def test_it_answers_503_with_a_problem_saying_a_rebuild_is_pending(api, stored):
    with override_settings(ANALYTICS_TIME_ZONE="Europe/Berlin"):
        response = api.get(URL)

    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json()["code"] == "projection_rebuild_pending"
    assert "rebuild_projections" in response.json()["detail"]
