"""Both week-range queries (weekly income, review queue) count the weeks the days fall in, up to 520."""
from datetime import date, datetime, timedelta, timezone

import pytest

from tests.factories import approved, project_all

URLS = ["/api/analytics/weekly-income/", "/api/analytics/review-queue/"]
MONDAY = date(2016, 11, 21)


@pytest.mark.django_db
@pytest.mark.parametrize("url", URLS)
def test_it_answers_exactly_520_weeks_from_a_monday_to_a_sunday(api, url):
    approved("10.00", "EUR", datetime(2020, 6, 1, 12, tzinfo=timezone.utc))  # one currency shown: its weeks are listed
    project_all()
    response = api.get(url, {"from": MONDAY.isoformat(), "to": (MONDAY + timedelta(weeks=520, days=-1)).isoformat()})
    assert response.status_code == 200, response.content
    weeks = response.json()["weeks"] if "review-queue" in url else response.json()["results"]
    assert len(weeks) == 520


@pytest.mark.django_db
@pytest.mark.parametrize("url", URLS)
def test_it_refuses_521_weeks_when_from_is_late_in_its_week(api, url):
    sunday = MONDAY - timedelta(days=1)  # its week began six days earlier
    to = sunday + timedelta(weeks=519, days=1)  # 519 weeks and a day later: 521 weeks touched
    response = api.get(url, {"from": sunday.isoformat(), "to": to.isoformat()})
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["to"]
