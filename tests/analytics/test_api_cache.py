"""Weekly income's answer cache: a repeat costs one position check, and every answer stays exactly right."""
from datetime import datetime, timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings
from rest_framework.renderers import JSONRenderer

from analytics import rebuild
from analytics.models import WeeklyIncome
from analytics.payloads import weekly_income_body, weekly_income_json
from analytics.selectors import weekly_income
from analytics.weekly_income_cache import ANSWERS, AnswerCache
from core import eventstore
from tests.analytics.rows import income, reverse
from tests.factories import approved, project_all

pytestmark = pytest.mark.django_db
MON = datetime(2026, 11, 16, 12, 0, tzinfo=timezone.utc)
LATER = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
URL = "/api/analytics/weekly-income/"
RANGE = {"from": "2026-11-09", "to": "2026-11-23"}


def rows_statements(queries) -> list[str]:
    return [q["sql"] for q in queries if "analytics_weeklyincome" in q["sql"]]


def test_it_answers_a_repeated_read_with_one_position_check_and_the_same_bytes(api):
    approved("10.00", "EUR", MON)
    project_all()
    first = api.get(URL, RANGE)
    with CaptureQueriesContext(connection) as queries:
        again = api.get(URL, RANGE)
    assert again.status_code == 200 and again.content == first.content
    assert again["Content-Type"] == first["Content-Type"] == "application/json"
    assert rows_statements(queries.captured_queries) == []
    assert [q["sql"] for q in queries.captured_queries if "analytics_projectioncheckpoint" in q["sql"]] != []


def test_the_body_is_byte_for_byte_what_drfs_json_renderer_writes():
    approved("10.00", "EUR", MON)
    approved("1500", "JPY", MON)
    reverse(approved("2.50", "EUR", MON).position, at=LATER)
    project_all()
    report = weekly_income(start=MON.date(), end=LATER.date())
    assert weekly_income_json(report) == JSONRenderer().render(weekly_income_body(report))


def test_a_projected_batch_shows_in_the_next_answer(api):
    approved("10.00", "EUR", MON)
    project_all()
    assert api.get(URL, RANGE).json()["results"][1] == income("2026-11-16", "EUR", "10.00", 1)
    position = approved("5.00", "EUR", MON).position
    project_all()
    body = api.get(URL, {**RANGE, "min_position": position}).json()
    assert body["as_of"] == position and body["results"][1] == income("2026-11-16", "EUR", "15.00", 2)
    assert api.get(URL, RANGE).json() == body


def test_a_rebuild_that_rewrites_rows_at_the_same_position_is_not_answered_from_the_cache(api):
    approved("10.00", "EUR", MON)
    project_all()
    WeeklyIncome.objects.update(total_minor=1)
    tampered = api.get(URL, RANGE).json()
    assert tampered["results"][1]["total"] == "0.01"
    assert rebuild.rebuild_weekly_income() == tampered["as_of"] == eventstore.last_position()
    assert api.get(URL, RANGE).json()["results"][1] == income("2026-11-16", "EUR", "10.00", 1)


def test_time_travel_answers_each_position_exactly_every_time(api):
    first = approved("10.00", "EUR", MON).position
    second = approved("5.00", "EUR", MON).position
    project_all()
    for _ in range(2):
        assert api.get(URL, {**RANGE, "at": first}).json()["results"][1] == income("2026-11-16", "EUR", "10.00", 1)
        assert api.get(URL, {**RANGE, "at": second}).json()["results"][1] == income("2026-11-16", "EUR", "15.00", 2)
    assert api.get(URL, RANGE).json() == api.get(URL, {**RANGE, "at": second}).json()


def test_time_travel_checks_the_log_and_the_checkpoint_and_reads_the_history_in_one_statement(api):
    position = approved("10.00", "EUR", MON).position
    project_all()
    api.get(URL, RANGE)  # the user's session and the query's shape, read and parsed once
    with CaptureQueriesContext(connection) as queries:
        body = api.get(URL, {**RANGE, "at": position}).json()
    assert body["as_of"] == position and body["results"][1] == income("2026-11-16", "EUR", "10.00", 1)
    read_model = [q["sql"] for q in queries.captured_queries if "analytics_" in q["sql"]]
    assert len(read_model) == 1 and "core_event" in read_model[0]


def test_time_travel_past_the_projection_waits_and_past_the_log_is_refused(api, monkeypatch):
    monkeypatch.setattr("analytics.api.MIN_POSITION_WAIT_SECONDS", 0.2)
    approved("10.00", "EUR", MON)
    project_all()
    unprojected = approved("5.00", "EUR", MON).position
    response = api.get(URL, {**RANGE, "at": unprojected})
    assert response.status_code == 503 and response.json()["code"] == "projection_behind"
    beyond = api.get(URL, {**RANGE, "at": unprojected + 1})
    assert beyond.status_code == 400 and beyond.json()["errors"][0]["field"] == "at"
    project_all()
    assert api.get(URL, {**RANGE, "at": unprojected}).json()["results"][1] == income("2026-11-16", "EUR", "15.00", 2)


def test_the_currency_filter_and_the_range_are_part_of_the_question(api):
    approved("10.00", "EUR", MON)
    approved("1500", "JPY", MON)
    project_all()
    assert {r["currency"] for r in api.get(URL, RANGE).json()["results"]} == {"EUR", "JPY"}
    assert {r["currency"] for r in api.get(URL, {**RANGE, "currency": "jpy"}).json()["results"]} == {"JPY"}
    assert len(api.get(URL, {"from": "2026-11-16", "to": "2026-11-16"}).json()["results"]) == 2
    assert len(api.get(URL, RANGE).json()["results"]) == 6


def test_the_time_zone_and_week_start_settings_are_part_of_the_question(api):
    approved("10.00", "EUR", MON)
    project_all()
    assert api.get(URL, RANGE).json()["week_start_day"] == "monday"
    other = override_settings(ANALYTICS_TIME_ZONE="America/New_York", ANALYTICS_WEEK_START="sunday")
    with other:
        # The rows are still cut by Monday in UTC: no answer under the new labels until they are recomputed.
        refused = api.get(URL, RANGE)
        rebuild.rebuild_weekly_income()
        body = api.get(URL, RANGE).json()
    assert refused.status_code == 503 and refused["Retry-After"] == "5"
    assert refused.json()["code"] == "projection_rebuild_pending"
    assert (body["time_zone"], body["week_start_day"]) == ("America/New_York", "sunday")
    assert body["results"][0]["week_start"] == "2026-11-08"
    assert [(r["week_start"], r["total"]) for r in body["results"] if r["count"]] == [("2026-11-15", "10.00")]
    # And back: the cached Monday answer is not served from rows now cut by Sunday.
    assert api.get(URL, RANGE).status_code == 503


def test_time_travel_is_refused_too_while_the_rows_are_for_other_settings(api):
    position = approved("10.00", "EUR", MON).position
    project_all()
    with override_settings(ANALYTICS_WEEK_START="sunday"):
        refused = api.get(URL, {**RANGE, "at": position})
    assert refused.status_code == 503 and refused.json()["code"] == "projection_rebuild_pending"
    assert api.get(URL, {**RANGE, "at": position}).status_code == 200


def test_csv_and_indented_json_are_rendered_as_before(api):
    approved("10.00", "EUR", MON)
    project_all()
    api.get(URL, RANGE)
    csv = api.get(URL, {**RANGE, "format": "csv"})
    assert b"".join(csv.streaming_content).splitlines()[2] == b"2026-11-16,EUR,10.00,1,10.00,0.00,0,10.00"
    indented = api.get(URL, RANGE, HTTP_ACCEPT="application/json; indent=2")
    assert indented.content.startswith(b'{\n  "time_zone": "UTC"')


def test_an_invalid_query_is_refused_every_time_after_a_valid_one(api):
    assert api.get(URL, RANGE).status_code == 200
    for _ in range(2):
        assert api.get(URL, {"from": "2026-11-09", "to": "2026-11-02"}).status_code == 400
        assert api.get(URL, {**RANGE, "currency": ""}).status_code == 400


def test_the_cache_drops_the_least_recently_used_answers_beyond_its_size():
    cache = AnswerCache(max_bytes=10)
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    assert cache.get("a") == b"1234"  # now the most recent
    cache.put("c", b"1234")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (b"1234", None, b"1234")
    assert cache.size_bytes == 8
    cache.put("huge", b"x" * 11)
    assert cache.get("huge") is None and len(cache) == 2



def test_a_position_is_checked_each_time_even_when_its_query_shape_was_seen(api):
    position = approved("10.00", "EUR", MON).position
    project_all()
    assert api.get(URL, {**RANGE, "at": position}).status_code == 200
    for bad in ("abc", "-1", "1.0", "١", str(2**63), ""):
        response = api.get(URL, {**RANGE, "at": bad})
        assert response.status_code == 400, bad
        assert [e["field"] for e in response.json()["errors"]] == ["at"], bad
    assert api.get(URL, {**RANGE, "at": position, "min_position": position}).status_code == 400
    body = api.get(URL, {**RANGE, "at": f"000{position}"}).json()
    assert body["as_of"] == position and body["results"][1] == income("2026-11-16", "EUR", "10.00", 1)
