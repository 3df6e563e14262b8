"""Income history extras: CSV, time travel with at=P, and the per-currency summary."""
import csv
import io
from datetime import datetime, timedelta, timezone

import pytest

from analytics.selectors import current_week_start, percent_change
from core import eventstore
from tests.factories import approved, project_all
from tests.analytics.rows import income

pytestmark = pytest.mark.django_db
MON = datetime(2026, 11, 16, 12, 0, tzinfo=timezone.utc)


def test_csv_by_query_parameter_has_a_header_row_and_exact_totals(api):
    approved("10.50", "EUR", MON)
    approved("1500", "JPY", MON)
    project_all()
    response = api.get("/api/analytics/weekly-income/", {"from": "2026-11-09", "to": "2026-11-16", "format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["X-As-Of"] == str(eventstore.last_position())
    text = b"".join(response.streaming_content).decode()
    assert list(csv.reader(io.StringIO(text))) == [
        ["week_start", "currency", "total", "count", "gross", "reversed", "reversed_count", "net"],
        ["2026-11-09", "EUR", "0.00", "0", "0.00", "0.00", "0", "0.00"],
        ["2026-11-09", "JPY", "0", "0", "0", "0", "0", "0"],
        ["2026-11-16", "EUR", "10.50", "1", "10.50", "0.00", "0", "10.50"],
        ["2026-11-16", "JPY", "1500", "1", "1500", "0", "0", "1500"],
    ]


def test_csv_by_accept_header(api):
    response = api.get("/api/analytics/weekly-income/", HTTP_ACCEPT="text/csv")
    assert response["Content-Type"].startswith("text/csv")
    assert b"".join(response.streaming_content).startswith(b"week_start,currency,total,count,gross,reversed,reversed_count,net\r\n")


def test_a_bad_csv_request_still_answers_problem_json(api):
    response = api.get("/api/analytics/weekly-income/", {"format": "csv", "from": "nope"})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "from"


def test_at_p_answers_the_weekly_income_as_it_stood_after_event_p(api):
    approved("10.00", "EUR", MON)
    after_first = eventstore.last_position()
    approved("5.00", "EUR", MON)
    approved("7.00", "USD", MON)
    project_all()
    params = {"from": "2026-11-16", "to": "2026-11-16"}
    then = api.get("/api/analytics/weekly-income/", {**params, "at": after_first}).json()
    now = api.get("/api/analytics/weekly-income/", params).json()
    assert then["as_of"] == after_first
    assert then["results"] == [income("2026-11-16", "EUR", "10.00", 1)]
    assert [r["total"] for r in now["results"]] == ["15.00", "7.00"]


def test_at_p_matches_a_replay_of_the_first_p_events(api):
    for amount in ("1.00", "2.00", "3.00", "4.00"):
        approved(amount, "EUR", MON)
    project_all()
    log = eventstore.read_all()
    for count, event in enumerate(log, start=1):
        replayed = sum(int(e.data["amount"].replace(".", "")) for e in log[:count] if e.type == "TransactionApproved")
        body = api.get("/api/analytics/weekly-income/", {"from": "2026-11-16", "to": "2026-11-16", "at": event.position}).json()
        answered = sum(int(r["total"].replace(".", "")) for r in body["results"])
        assert answered == replayed, event.position


def test_at_beyond_the_log_is_a_400(api):
    response = api.get("/api/analytics/weekly-income/", {"at": 99})
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "at"


def test_at_and_min_position_together_are_refused(api):
    response = api.get("/api/analytics/weekly-income/", {"at": 1, "min_position": 1})
    assert response.status_code == 400


def test_the_summary_compares_weeks_and_four_week_periods(api):
    this_week = datetime.combine(current_week_start(), datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=1)
    approved("30.00", "EUR", this_week)
    approved("20.00", "EUR", this_week - timedelta(weeks=1))
    approved("50.00", "EUR", this_week - timedelta(weeks=5))
    approved("9.00", "USD", this_week)
    project_all()
    body = api.get("/api/analytics/summary/").json()
    assert body["as_of"] == eventstore.last_position()
    eur, usd = body["results"]
    assert eur["currency"] == "EUR"
    assert eur["this_week"]["total"] == "30.00" and eur["last_week"]["total"] == "20.00"
    assert eur["change_percent"] == "50.0"
    assert eur["last_4_weeks"]["total"] == "50.00" and eur["previous_4_weeks"]["total"] == "50.00"
    assert eur["change_percent_4_weeks"] == "0.0"
    assert usd["change_percent"] is None


@pytest.mark.parametrize(("current", "previous", "expected"), [(150, 100, "50.0"), (0, 100, "-100.0"), (1, 3, "-66.7"), (5, 0, None)])
def test_percent_change_is_exact_and_null_without_a_base(current, previous, expected):
    assert percent_change(current, previous) == expected


def test_at_p_reads_the_same_history_after_a_rebuild(api):
    from analytics.projection import rebuild_weekly_income

    for amount, currency in (("1.00", "EUR"), ("2.00", "USD"), ("3.00", "EUR")):
        approved(amount, currency, MON)
    project_all()
    params = {"from": "2026-11-16", "to": "2026-11-16"}
    positions = [e.position for e in eventstore.read_all()]
    before = [api.get("/api/analytics/weekly-income/", {**params, "at": p}).json() for p in positions]
    rebuild_weekly_income()
    after = [api.get("/api/analytics/weekly-income/", {**params, "at": p}).json() for p in positions]
    assert after == before
    assert [r["currency"] for r in before[0]["results"]] == []  # nothing approved yet at the first event
    assert [(r["currency"], r["total"]) for r in before[-1]["results"]] == [("EUR", "4.00"), ("USD", "2.00")]
