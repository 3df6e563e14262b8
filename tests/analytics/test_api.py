"""GET /api/analytics/weekly-income/ and /api/dashboard/snapshot/: zero-filled weeks, as_of, read-your-writes."""
import threading
import time
from datetime import datetime, timedelta, timezone

import uuid

import pytest
from django.db import connections
from django.db import transaction as db_transaction

from analytics.selectors import current_week_start
from core import eventstore
from core.eventstore import NewEvent
from scripts.faults import no_wake_up
from tests.factories import approved, project_all, submit
from tests.analytics.rows import income

pytestmark = pytest.mark.django_db
MON = datetime(2026, 11, 16, 12, 0, tzinfo=timezone.utc)


def test_weeks_in_the_range_are_zero_filled_for_every_currency(api):
    approved("10.00", "EUR", MON)
    approved("1500", "JPY", MON - timedelta(weeks=2))
    project_all()
    body = api.get("/api/analytics/weekly-income/", {"from": "2026-11-02", "to": "2026-11-18"}).json()
    assert body["time_zone"] == "UTC" and body["week_start_day"] == "monday"
    assert body["as_of"] == eventstore.last_position()
    assert body["results"] == [
        income("2026-11-02", "EUR", "0.00", 0),
        income("2026-11-02", "JPY", "1500", 1),
        income("2026-11-09", "EUR", "0.00", 0),
        income("2026-11-09", "JPY", "0", 0),
        income("2026-11-16", "EUR", "10.00", 1),
        income("2026-11-16", "JPY", "0", 0),
    ]


def test_the_default_range_is_the_last_twelve_weeks(api):
    approved("10.00", "EUR")
    project_all()
    rows = api.get("/api/analytics/weekly-income/").json()["results"]
    weeks = sorted({r["week_start"] for r in rows})
    assert len(weeks) == 12
    assert weeks[-1] == current_week_start().isoformat()
    assert rows[-1] == income(weeks[-1], "EUR", "10.00", 1)


def test_it_reads_a_years_weekly_income_in_one_statement(django_assert_num_queries):
    from analytics.selectors import weekly_income

    approved("10.00", "EUR", MON)
    approved("1500", "JPY", MON - timedelta(weeks=51))
    project_all()
    # One statement is one snapshot: the position and the rows agree without a transaction.
    with django_assert_num_queries(1):
        report = weekly_income(start=(MON - timedelta(weeks=51)).date(), end=MON.date())
    assert report.as_of == eventstore.last_position() and len(report.rows) == 52 * 2
    assert [r for r in report.rows if r["count"]] == [
        income("2025-11-24", "JPY", "1500", 1),
        income("2026-11-16", "EUR", "10.00", 1),
    ]


def test_a_currency_filter_shows_that_currency_even_without_income(api):
    approved("10.00", "EUR", MON)
    project_all()
    rows = api.get("/api/analytics/weekly-income/", {"from": "2026-11-16", "to": "2026-11-16", "currency": "usd"}).json()["results"]
    assert rows == [income("2026-11-16", "USD", "0.00", 0)]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-13-01"}, "from"),
        ({"from": "2026-11-20", "to": "2026-11-01"}, "to"),
        ({"from": "2000-01-03", "to": "2026-11-16"}, "to"),
        ({"currency": "ZZZ"}, "currency"),
        ({"min_position": "-1"}, "min_position"),
    ],
)
def test_bad_queries_are_400_problems_naming_the_parameter(api, params, field):
    response = api.get("/api/analytics/weekly-income/", params)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]


def test_min_position_already_reached_answers_at_once(api):
    approved("10.00", "EUR", MON)
    project_all()
    started = time.monotonic()
    body = api.get("/api/analytics/weekly-income/", {"min_position": eventstore.last_position()}).json()
    assert body["as_of"] == eventstore.last_position()
    assert time.monotonic() - started < 1


def test_min_position_not_reached_in_time_is_a_503_with_retry_after(api, monkeypatch):
    monkeypatch.setattr("analytics.api.MIN_POSITION_WAIT_SECONDS", 0.2)
    approved("10.00", "EUR", MON)
    response = api.get("/api/analytics/weekly-income/", {"min_position": eventstore.last_position()})
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.json()["code"] == "projection_behind"


@pytest.mark.django_db(transaction=True)
def test_min_position_waits_for_the_projection_to_catch_up(admin_user, client_for):
    api = client_for(admin_user)
    # Commit an event without waking the projector; another thread projects it later.
    with no_wake_up(), db_transaction.atomic():
        eventstore.append(stream_id=uuid.uuid4(), expected_version=0, events=[NewEvent("Noted", {})], metadata={})
    target = eventstore.last_position()

    def project_later():
        time.sleep(0.5)
        project_all()
        connections.close_all()

    thread = threading.Thread(target=project_later)
    thread.start()
    started = time.monotonic()
    body = api.get("/api/analytics/weekly-income/", {"min_position": target}).json()
    waited = time.monotonic() - started
    thread.join()
    assert body["as_of"] == target
    assert 0.4 < waited < 5


def test_the_snapshot_matches_the_websocket_snapshot_shape(api):
    approved("10.00", "EUR")
    pending = submit("3.00", "USD")
    project_all()
    body = api.get("/api/dashboard/snapshot/").json()
    assert body["type"] == "snapshot"
    assert body["seq"] == eventstore.last_position()
    assert body["time_zone"] == "UTC" and body["week_start_day"] == "monday"
    assert len({r["week_start"] for r in body["weekly_income"]}) == 12
    assert body["pending"]["count"] == 1
    assert [t["id"] for t in body["pending"]["latest"]] == [str(pending.id)]


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_the_snapshots_pending_list_claims_no_position_past_an_event_still_in_flight(monkeypatch):
    from analytics.snapshot import dashboard_snapshot
    from transactions import services

    monkeypatch.setattr("analytics.tasks.publish", lambda messages, **_: None)
    slow, fast = submit("7.00", "EUR", MON), submit("5.00", "EUR", MON)
    before = eventstore.last_position()
    appended, release = threading.Event(), threading.Event()
    real_append = eventstore.append

    def append_then_hold(**kwargs):
        recorded = real_append(**kwargs)
        if kwargs["stream_id"] == slow.id:  # A's approval keeps its position, uncommitted
            appended.set()
            release.wait(10)
        return recorded

    monkeypatch.setattr(eventstore, "append", append_then_hold)
    # Decisions take the transaction path (append, then commit), not the one-round-trip append_alone
    # that commits at once: A's position must stay uncommitted while it holds.
    monkeypatch.setattr(eventstore, "can_append_alone", lambda: False)

    def approve_slowly():
        try:
            services.transaction_approve(transaction_id=slow.id, actor="a", reason="slow")
        finally:
            connections.close_all()

    holder = threading.Thread(target=approve_slowly)
    holder.start()
    try:
        assert appended.wait(10)
        services.transaction_approve(transaction_id=fast.id, actor="b", reason="fast")  # commits above A's hole
        snapshot = dashboard_snapshot()
        # The list shows B decided and A still pending; it reflects every event up to A's hole, not B's.
        assert eventstore.last_position() > before + 1
        assert snapshot["pending"]["as_of"] == before
        assert [t["id"] for t in snapshot["pending"]["latest"]] == [str(slow.id)]
    finally:
        release.set()
        holder.join(10)


def test_the_snapshot_shows_each_pending_transaction_exactly_as_the_rest_api_does(api):
    first = submit("3.00", "USD", MON)
    second = submit("1500", "JPY", MON)
    project_all()
    latest = api.get("/api/dashboard/snapshot/").json()["pending"]["latest"]
    assert latest == [api.get(f"/api/transactions/{txn.id}/").json() for txn in (second, first)]


def test_min_position_beyond_the_end_of_the_log_is_a_400_at_once(api):
    approved("10.00", "EUR", MON)
    project_all()
    beyond = eventstore.last_position() + 1
    started = time.monotonic()
    response = api.get("/api/analytics/weekly-income/", {"min_position": 1_000_000_000})
    assert time.monotonic() - started < 1
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "min_position", "message": f"no event at position 1000000000: the log ends at {beyond - 1}", "code": "invalid"}
    ]
    assert api.get("/api/analytics/weekly-income/", {"min_position": beyond}).status_code == 400


@pytest.mark.django_db(transaction=True)
def test_at_a_position_the_projection_has_not_applied_yet_waits_for_it_then_reads_history(admin_user, client_for):
    api = client_for(admin_user)
    approved("10.00", "EUR", MON)
    project_all()
    with no_wake_up():
        approved("5.00", "EUR", MON)
    target = eventstore.last_position()

    def project_later():
        time.sleep(0.3)
        project_all()
        connections.close_all()

    thread = threading.Thread(target=project_later)
    thread.start()
    body = api.get("/api/analytics/weekly-income/", {"from": "2026-11-16", "to": "2026-11-16", "at": target}).json()
    thread.join()
    assert body["as_of"] == target
    assert body["results"] == [income("2026-11-16", "EUR", "15.00", 2)]


@pytest.mark.parametrize("currency", ["EUR", "JPY", "BHD"])
def test_it_writes_every_total_exactly_as_format_minor_units_would(currency):
    from analytics.selectors import minor_units_text
    from core.money import currency_exponent, format_minor_units

    for minor in (0, 1, 9, 10, 99, 100, 101, 12345, 10**15 - 1, 10**38 - 1, -5, -1250):
        assert minor_units_text(minor, currency_exponent(currency)) == format_minor_units(minor, currency)
