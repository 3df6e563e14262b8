"""Reversals in weekly income: counted in the week they happened (closed weeks never change), net may go below zero, exact."""
import csv
import io
from datetime import date, datetime, timedelta, timezone

import pytest
from django.test import override_settings

from analytics import rebuild, selectors
from analytics.models import WeeklyIncome, WeeklyIncomeHistory
from analytics.projection import ProjectionFailed, project_next_batch
from analytics.snapshot import dashboard_snapshot
from analytics.verification import verify_weekly_income
from core import eventstore
from tests.analytics.rows import income, reverse
from tests.factories import approved, project_all

pytestmark = pytest.mark.django_db
MON = datetime(2026, 11, 16, 12, 0, tzinfo=timezone.utc)  # week of 2026-11-16
LATER = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)  # week of 2026-11-23
WEEKS = {"from": "2026-11-16", "to": "2026-11-23"}


def approve(amount="10.00", currency="EUR", occurred_at=MON) -> int:
    approved(amount, currency, occurred_at)
    return eventstore.last_position()


def rows():
    return {
        (r.week_start.isoformat(), r.currency): (int(r.gross_minor), r.count, int(r.reversed_minor), r.reversed_count, int(r.total_minor))
        for r in WeeklyIncome.objects.all()
    }


def everything():
    fields = ("week_start", "currency", "total_minor", "count", "gross_minor", "reversed_minor", "reversed_count", "last_position")
    history = ("week_start", "currency", "position", "total_minor", "count", "gross_minor", "reversed_minor", "reversed_count")
    return sorted(WeeklyIncome.objects.values_list(*fields)), sorted(WeeklyIncomeHistory.objects.values_list(*history))


def test_a_reversal_in_a_later_week_leaves_the_approval_week_closed_and_lands_in_its_own_week(api):
    reverse(approve("10.00"), at=LATER)
    project_all()
    assert rows() == {("2026-11-16", "EUR"): (1000, 1, 0, 0, 1000), ("2026-11-23", "EUR"): (0, 0, 1000, 1, -1000)}
    body = api.get("/api/analytics/weekly-income/", WEEKS).json()
    assert body["results"] == [
        income("2026-11-16", "EUR", "10.00", 1),
        income("2026-11-23", "EUR", "-10.00", 0, gross="0.00", reversed_="10.00", reversed_count=1),
    ]
    assert verify_weekly_income() == []


def test_a_reversal_in_the_approval_week_nets_it_out(api):
    reverse(approve("10.00"), at=MON + timedelta(hours=3))
    approve("2.50")
    project_all()
    [row] = api.get("/api/analytics/weekly-income/", {"from": "2026-11-16", "to": "2026-11-16"}).json()["results"]
    assert row == income("2026-11-16", "EUR", "2.50", 2, gross="12.50", reversed_="10.00", reversed_count=1)


def test_a_reversal_is_placed_by_when_it_was_recorded_in_the_analytics_time_zone():
    # 23:30 UTC on Sunday 22 Nov is already Monday 23 Nov in Berlin.
    with override_settings(ANALYTICS_TIME_ZONE="Europe/Berlin"):
        rebuild.rebuild_weekly_income()  # an empty log: the checkpoint now says these are Berlin's weeks
        reverse(approve("1.00"), at=datetime(2026, 11, 22, 23, 30, tzinfo=timezone.utc))
        project_all()
        assert rows()[("2026-11-23", "EUR")] == (0, 0, 100, 1, -100)
        assert verify_weekly_income() == []


def test_a_huge_reversal_is_exact_and_never_wraps(api):
    top = "9999999999999.99"  # the per-transaction limit: three of them carry out of every low part
    for _ in range(3):
        reverse(approve(top), at=LATER)
    project_all()
    [_, later] = api.get("/api/analytics/weekly-income/", WEEKS).json()["results"]
    assert later["reversed"] == "29999999999999.97" and later["net"] == later["total"] == "-29999999999999.97"
    assert later["reversed_count"] == 3 and later["gross"] == "0.00"
    assert verify_weekly_income() == []


def test_a_reversal_past_int64_from_an_older_log_is_exact_in_rows_history_and_rebuild():
    from tests.analytics.test_exact_totals import LEGACY_MAX_CLF, append_legacy_approval

    first = append_legacy_approval(LEGACY_MAX_CLF, "CLF", MON.isoformat())
    second = append_legacy_approval(LEGACY_MAX_CLF, "CLF", MON.isoformat())
    reverse(first, at=LATER)
    reverse(second, at=LATER)
    project_all()
    huge = 10**19 - 1
    assert rows()[("2026-11-23", "CLF")] == (0, 0, 2 * huge, 2, -2 * huge)
    incremental = everything()
    rebuild.rebuild_weekly_income()
    assert everything() == incremental
    assert verify_weekly_income() == []


def test_time_travel_between_the_approval_and_the_reversal_shows_the_income_unreversed(api):
    approval = approve("10.00")
    reversal = reverse(approval, at=LATER)
    project_all()
    before = api.get("/api/analytics/weekly-income/", {**WEEKS, "at": approval}).json()
    after = api.get("/api/analytics/weekly-income/", {**WEEKS, "at": reversal}).json()
    assert before["as_of"] == approval and before["results"] == [
        income("2026-11-16", "EUR", "10.00", 1), income("2026-11-23", "EUR", "0.00", 0),
    ]
    assert after["results"] == [
        income("2026-11-16", "EUR", "10.00", 1),
        income("2026-11-23", "EUR", "-10.00", 0, gross="0.00", reversed_="10.00", reversed_count=1),
    ]


def test_csv_carries_the_reversal_columns(api):
    reverse(approve("10.00"), at=LATER)
    project_all()
    response = api.get("/api/analytics/weekly-income/", {**WEEKS, "format": "csv"})
    lines = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert lines == [
        ["week_start", "currency", "total", "count", "gross", "reversed", "reversed_count", "net"],
        ["2026-11-16", "EUR", "10.00", "1", "10.00", "0.00", "0", "10.00"],
        ["2026-11-23", "EUR", "-10.00", "0", "0.00", "10.00", "1", "-10.00"],
    ]


def test_the_live_message_and_the_snapshot_carry_gross_reversed_and_net(monkeypatch):
    approval = approve("10.00")
    project_all()
    reverse(approval, at=LATER)
    batch = project_next_batch()
    [update] = [m for m in batch.messages if m["type"] == "weekly_income.updated"]
    assert update == {
        "type": "weekly_income.updated", "seq": batch.through, "week_start": "2026-11-23", "currency": "EUR",
        "total": "-10.00", "count": 0, "gross": "0.00", "reversed": "10.00", "reversed_count": 1, "net": "-10.00",
    }
    monkeypatch.setattr(selectors, "current_week_start", lambda now=None: date(2026, 11, 23))
    snapshot = dashboard_snapshot()
    assert income("2026-11-23", "EUR", "-10.00", 0, gross="0.00", reversed_="10.00", reversed_count=1) in snapshot["weekly_income"]


def test_the_summary_shows_net_gross_and_reversed_and_a_rise_from_a_negative_week_is_positive(api, monkeypatch, settings):
    settings.OCCURRED_AT_MAX_AHEAD = timedelta(days=3650)  # an approval in next week, for a fixed calendar
    reverse(approve("10.00", occurred_at=MON - timedelta(weeks=1)), at=MON)  # last week +10, this week -10 ...
    approve("5.00", occurred_at=LATER)  # ... and next week +5
    project_all()
    monkeypatch.setattr(selectors, "current_week_start", lambda now=None: date(2026, 11, 23))
    [eur] = api.get("/api/analytics/summary/").json()["results"]
    assert eur["this_week"] == {"week_start": "2026-11-23", "total": "5.00", "gross": "5.00", "reversed": "0.00"}
    assert eur["last_week"] == {"week_start": "2026-11-16", "total": "-10.00", "gross": "0.00", "reversed": "10.00"}
    assert eur["change_percent"] == "150.0"


def test_verify_catches_a_tampered_reversed_column_and_rebuild_repairs_it():
    reverse(approve("10.00"), at=LATER)
    project_all()
    WeeklyIncome.objects.filter(week_start=date(2026, 11, 23)).update(reversed_minor=1)
    assert verify_weekly_income() == [
        "2026-11-23 EUR: stored total=-10.00 count=0 gross=0.00 reversed=0.01 reversed_count=1, "
        "log says total=-10.00 count=0 gross=0.00 reversed=10.00 reversed_count=1"
    ]
    rebuild.rebuild_weekly_income()
    assert verify_weekly_income() == []


def test_verify_catches_history_that_lost_its_reversal():
    reverse(approve("10.00"), at=LATER)
    project_all()
    position = WeeklyIncomeHistory.objects.get(reversed_count=1).position
    WeeklyIncomeHistory.objects.filter(reversed_count=1).update(reversed_minor=0, total_minor=0)
    assert verify_weekly_income() == [
        f"history row at {position}: 2026-11-23 EUR total=0.00 count=0 gross=0.00 reversed=0.00 reversed_count=1, "
        "the log says 2026-11-23 EUR total=-10.00 count=0 gross=0.00 reversed=10.00 reversed_count=1",
        "2026-11-23 EUR: history ends at total=0.00 count=0 gross=0.00 reversed=0.00 reversed_count=1, "
        "stored total=-10.00 count=0 gross=0.00 reversed=10.00 reversed_count=1"
    ]


@pytest.mark.parametrize("zone, week_start", [("UTC", "monday"), ("America/New_York", "sunday")])
def test_a_rebuild_writes_the_same_rows_and_history_as_the_incremental_projector(zone, week_start):
    with override_settings(ANALYTICS_TIME_ZONE=zone, ANALYTICS_WEEK_START=week_start):
        rebuild.rebuild_weekly_income()  # an empty log; the checkpoint now says which weeks these are
        first = approve("10.00")
        approve("1500", "JPY")
        reverse(first, at=LATER)  # a week with no approvals: negative
        reverse(approve("0.0001", "CLF"), at=MON + timedelta(minutes=5))
        reverse(approve("3.00"), at=LATER + timedelta(weeks=5), amount="3.00")
        project_all()
        incremental = everything()
        stats = rebuild.RebuildStats()
        assert rebuild.rebuild_weekly_income(stats=stats) == eventstore.last_position()
        assert stats.approvals == len(incremental[1]) == 7  # approvals and reversals, each with its history row
        assert everything() == incremental
        assert verify_weekly_income() == []


@pytest.mark.parametrize("changes", [{"currency": "XXQ"}, {"amount": "1.234"}, {"amount": "-5.00"}])
def test_a_poison_reversal_fails_its_batch_loudly_and_writes_nothing(changes):
    approval = approve("10.00")
    project_all()
    before = everything()
    poison = reverse(approval, at=LATER, **changes)
    with pytest.raises(ProjectionFailed, match=rf"weekly income: events {poison}\.\.{poison} could not be projected"):
        project_next_batch()
    assert everything() == before
    with pytest.raises(ProjectionFailed, match=rf"events {poison}\.\.{poison} could not be projected"):
        rebuild.rebuild_weekly_income()
    assert everything() == before


def test_a_reversal_through_the_reverse_command_counts_in_this_week(api):
    from tests.factories import reversed_

    reversed_("7.50", "EUR", MON)
    project_all()
    this_week = selectors.current_week_start()
    [row] = api.get("/api/analytics/weekly-income/", {"from": this_week.isoformat(), "to": this_week.isoformat()}).json()["results"]
    assert (row["reversed"], row["reversed_count"]) == ("7.50", 1)
    assert verify_weekly_income() == []
