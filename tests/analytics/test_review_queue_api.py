"""GET /api/analytics/review-queue/: zero-filled weeks, pending now, CSV, bad ranges, permissions."""
import csv
import io
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest

from analytics.models import ProjectionCheckpoint, ReviewQueueAdminWeek, ReviewQueuePending, ReviewQueueTotal, ReviewQueueWeek
from analytics.selectors import current_week_start

pytestmark = pytest.mark.django_db
URL = "/api/analytics/review-queue/"


def a_week(week_start, **counts):
    ReviewQueueWeek.objects.create(week_start=week_start, **counts)


def pending_since(*instants):
    """Pending rows, and the count the projection keeps beside them."""
    for position, instant in enumerate(instants, start=1):
        ReviewQueuePending.objects.create(transaction_id=uuid.uuid4(), submitted_at=instant, position=position)
    ReviewQueueTotal.objects.update_or_create(id=1, defaults={"pending": len(instants)})


@pytest.fixture
def stored():
    """Rows as the projection leaves them (the projection itself is tested in test_review_queue.py)."""
    ProjectionCheckpoint.objects.update_or_create(name="review_queue", defaults={"position": 41, "config": "UTC/monday"})
    a_week(date(2026, 11, 16), approved=3, rejected=1, reversed=1, p50_seconds=60, p90_seconds=3600, last_position=40)
    ReviewQueueAdminWeek.objects.create(week_start=date(2026, 11, 16), actor="ben", decisions=2)
    ReviewQueueAdminWeek.objects.create(week_start=date(2026, 11, 16), actor="ana", decisions=3)
    a_week(date(2026, 11, 2), reversed=1, last_position=12)
    ReviewQueueAdminWeek.objects.create(week_start=date(2026, 11, 2), actor="ana", decisions=1)


QUIET = {"approved": 0, "rejected": 0, "reversed": 0, "decisions": 0, "time_to_decision_p50_seconds": None,
         "time_to_decision_p90_seconds": None, "by_admin": []}


def test_it_answers_every_week_in_the_range_with_quiet_weeks_zero_filled(api, stored):
    body = api.get(URL, {"from": "2026-11-02", "to": "2026-11-18"}).json()
    assert (body["as_of"], body["time_zone"], body["week_start_day"]) == (41, "UTC", "monday")
    assert body["weeks"] == [
        {"week_start": "2026-11-02", "approved": 0, "rejected": 0, "reversed": 1, "decisions": 1,
         "time_to_decision_p50_seconds": None, "time_to_decision_p90_seconds": None,
         "by_admin": [{"actor": "ana", "decisions": 1}]},
        {"week_start": "2026-11-09", **QUIET},
        {"week_start": "2026-11-16", "approved": 3, "rejected": 1, "reversed": 1, "decisions": 5,
         "time_to_decision_p50_seconds": 60, "time_to_decision_p90_seconds": 3600,
         "by_admin": [{"actor": "ana", "decisions": 3}, {"actor": "ben", "decisions": 2}]},
    ]


def test_it_answers_the_last_twelve_weeks_by_default(api):
    weeks = api.get(URL).json()["weeks"]
    assert len(weeks) == 12
    assert weeks[-1] == {"week_start": current_week_start().isoformat(), **QUIET}


def test_it_reports_pending_now_with_the_oldest_age_computed_at_read_time(api):
    submitted = datetime.now(timezone.utc) - timedelta(hours=2)
    pending_since(submitted, submitted + timedelta(hours=1))
    pending = api.get(URL).json()["pending"]
    assert pending["count"] == 2
    assert datetime.fromisoformat(pending["oldest_submitted_at"].replace("Z", "+00:00")) == submitted
    assert 7200 <= pending["oldest_age_seconds"] < 7200 + 60


def test_it_reports_an_empty_queue_with_nulls(api):
    assert api.get(URL).json()["pending"] == {"count": 0, "oldest_submitted_at": None, "oldest_age_seconds": None}


def test_it_answers_csv_with_a_header_and_one_row_per_week(api, stored):
    response = api.get(URL, {"from": "2026-11-09", "to": "2026-11-16", "format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["X-As-Of"] == "41"
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows == [
        ["week_start", "approved", "rejected", "reversed", "decisions", "time_to_decision_p50_seconds",
         "time_to_decision_p90_seconds", "by_admin"],
        ["2026-11-09", "0", "0", "0", "0", "", "", ""],
        ["2026-11-16", "3", "1", "1", "5", "60", "3600", "ana=3;ben=2"],
    ]


def test_it_answers_csv_for_accept_text_csv(api, stored):
    response = api.get(URL, {"from": "2026-11-16", "to": "2026-11-16"}, HTTP_ACCEPT="text/csv")
    assert response.content.decode().splitlines()[1] == "2026-11-16,3,1,1,5,60,3600,ana=3;ben=2"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-13-01"}, "from"),
        ({"to": "16.11.2026"}, "to"),
        ({"from": "2026-11-20", "to": "2026-11-01"}, "to"),
        ({"from": "2000-01-03", "to": "2026-11-16"}, "to"),
        ({"from": "9999-12-01"}, "from"),
        ({"to": ""}, "to"),
        ({"format": "xml"}, "format"),
    ],
)
def test_it_refuses_a_bad_range_with_a_problem_naming_the_parameter(api, params, field):
    response = api.get(URL, params)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_it_needs_credentials(client_for):
    assert client_for(None).get(URL).status_code == 401


def test_it_is_for_staff_only(client_for, plain_user):
    assert client_for(plain_user).get(URL).status_code == 403


def test_staff_without_decision_rights_may_read_it(client_for, staff_user):
    assert client_for(staff_user).get(URL).status_code == 200


def test_it_is_in_the_openapi_schema(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = schema["paths"][URL]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"from", "to", "format"}
    assert set(operation["responses"]["200"]["content"]) == {"application/json", "text/csv"}


def test_the_dashboard_snapshot_carries_pending_now_and_this_weeks_queue(api):
    this_week = current_week_start()
    a_week(this_week, approved=2, p50_seconds=5, p90_seconds=9, last_position=3)
    ReviewQueueAdminWeek.objects.create(week_start=this_week, actor="ana", decisions=2)
    pending_since(datetime.now(timezone.utc))
    queue = api.get("/api/dashboard/snapshot/").json()["review_queue"]
    assert queue["pending"]["count"] == 1 and queue["pending"]["oldest_age_seconds"] < 60
    assert queue["this_week"] == {
        "week_start": this_week.isoformat(), "approved": 2, "rejected": 0, "reversed": 0, "decisions": 2,
        "time_to_decision_p50_seconds": 5, "time_to_decision_p90_seconds": 9, "by_admin": [{"actor": "ana", "decisions": 2}],
    }


def test_the_snapshot_schema_describes_the_review_queue(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert "review_queue" in schema["components"]["schemas"]["SnapshotOutput"]["properties"]


def test_it_quotes_a_by_admin_cell_that_a_spreadsheet_would_run_as_a_formula(api):
    ProjectionCheckpoint.objects.update_or_create(name="review_queue", defaults={"position": 9, "config": "UTC/monday"})
    a_week(date(2026, 11, 16), approved=4, last_position=9)
    ReviewQueueAdminWeek.objects.create(week_start=date(2026, 11, 16), actor="@ops", decisions=4)  # a valid Django username
    response = api.get(URL, {"from": "2026-11-16", "to": "2026-11-16", "format": "csv"})
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[1][-1] == "'@ops=4"
    assert api.get(URL, {"from": "2026-11-16", "to": "2026-11-16"}).json()["weeks"][0]["by_admin"][0]["actor"] == "@ops"
