"""Money stays exact or is refused: totals beyond int64, an independent verify, and a poison event that is loud, not silent."""
import logging
import re
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.test import override_settings

from analytics import frames, projection, tasks
from analytics.models import ProjectionCheckpoint, WeeklyIncome, WeeklyIncomeHistory
from analytics.verification import verify_weekly_income
from core import eventstore
from core.models import StoredEvent
from tests.factories import approved, project_all
from transactions import events
from tests.analytics.rows import income

pytestmark = pytest.mark.django_db
MON = datetime(2026, 11, 16, 12, 0, tzinfo=timezone.utc)
# The reproduction: accepted before the per-transaction limit existed, 10^19 - 1 minor units.
LEGACY_MAX_CLF = Decimal("999999999999999.9999")


def append_legacy_approval(amount: Decimal, currency: str, occurred_at: str) -> int:
    """Write what an older version let into the log, bypassing today's checks: events are forever."""
    stream = uuid.uuid4()
    submitted = events.submitted(
        transaction_id=stream, amount=amount, currency=currency, occurred_at=MON, reference="", description=""
    )
    approval = events.approved(transaction_id=stream, amount=amount, currency=currency, occurred_at=MON, reason="")
    submitted.data["occurred_at"] = approval.data["occurred_at"] = occurred_at
    with transaction.atomic():
        recorded = eventstore.append(stream_id=stream, expected_version=0, events=[submitted, approval], metadata={"actor": "legacy"})
    return recorded[-1].position


def checkpoint() -> int:
    return ProjectionCheckpoint.objects.get(name="weekly_income").position


def test_it_sums_a_week_beyond_int64_exactly(api):
    for _ in range(2):
        append_legacy_approval(LEGACY_MAX_CLF, "CLF", MON.isoformat())
    project_all()
    row = WeeklyIncome.objects.get(currency="CLF")
    assert int(row.total_minor) == 2 * (10**19 - 1) > 2**63
    body = api.get("/api/analytics/weekly-income/", {"from": "2026-11-16", "to": "2026-11-16"}).json()
    assert body["results"] == [income("2026-11-16", "CLF", "1999999999999999.9998", 2)]
    assert verify_weekly_income() == []


def test_a_rebuild_writes_the_same_exact_total_and_verify_agrees():
    for _ in range(2):
        append_legacy_approval(LEGACY_MAX_CLF, "CLF", MON.isoformat())
    projection.rebuild_weekly_income()
    assert int(WeeklyIncome.objects.get(currency="CLF").total_minor) == 2 * (10**19 - 1)
    assert verify_weekly_income() == []


def test_ten_thousand_approvals_at_the_limit_sum_exactly_in_pandas():
    import pandas as pd

    n, top = 10_000, 10**15 - 1
    records = pd.DataFrame(
        {"position": range(1, n + 1), "occurred_at": [MON.isoformat()] * n, "currency": ["EUR"] * n, "amount_minor": [top] * n}
    )
    totals = frames.weekly_totals(records, time_zone="UTC", week_start="monday")
    running = frames.weekly_running_totals(records, time_zone="UTC", week_start="monday")
    assert totals["total_minor"].tolist() == [n * top]
    assert running["total_minor"].tolist()[-1] == n * top and running["count"].tolist()[-1] == n


def test_a_submission_over_the_per_transaction_limit_is_refused_and_nothing_is_stored(api):
    for amount, currency in (("999999999999999.9999", "CLF"), ("10000000000000.00", "EUR")):
        response = api.post("/api/transactions/", {"amount": amount, "currency": currency}, format="json")
        assert response.status_code == 400, amount
        assert response["Content-Type"] == "application/problem+json"
        assert [e["field"] for e in response.json()["errors"]] == ["amount"]
    assert StoredEvent.objects.count() == 0


def test_the_largest_allowed_amount_is_accepted_and_projected_exactly(api):
    approved("9999999999999.99", "EUR", MON)
    approved("9999999999999.99", "EUR", MON)
    project_all()
    body = api.get("/api/analytics/weekly-income/", {"from": "2026-11-16", "to": "2026-11-16", "currency": "EUR"}).json()
    assert body["results"][0]["total"] == "19999999999999.98"


def test_verify_recomputes_with_arithmetic_of_its_own(monkeypatch):
    position = approved("10.00", "EUR", MON).position
    # A projector whose arithmetic is off by one minor unit: verify must not share the bug.
    monkeypatch.setattr(frames, "_joined", lambda high, low: (high * frames._SPLIT + low + 1).astype("object"))
    # (a small batch is summed in plain Python unless told otherwise: through the frames here)
    monkeypatch.setattr("analytics.projection._small_running_totals", lambda batch: None)
    project_all()
    # Both sums come out one minor unit high; verify, with Decimal of its own, names them.
    assert verify_weekly_income() == [
        f"history row at {position}: 2026-11-16 EUR total=10.00 count=1 gross=10.01 reversed=0.01 reversed_count=0, "
        "the log says 2026-11-16 EUR total=10.00 count=1 gross=10.00 reversed=0.00 reversed_count=0",
        "2026-11-16 EUR: stored total=10.00 count=1 gross=10.01 reversed=0.01 reversed_count=0, "
        "log says total=10.00 count=1 gross=10.00 reversed=0.00 reversed_count=0",
    ]


def test_verify_notices_a_history_that_disagrees_with_the_rows():
    position = approved("10.00", "EUR", MON).position
    project_all()
    WeeklyIncomeHistory.objects.all().delete()
    assert verify_weekly_income() == [
        f"history of 2026-11-16 EUR: no row at {position}, the log says total=10.00 count=1 gross=10.00 reversed=0.00 reversed_count=0",
        "2026-11-16 EUR: history ends at none, stored total=10.00 count=1",
    ]


def test_verify_checks_every_history_row_that_time_travel_reads_and_each_buckets_last_position():
    first = approved("1.00", "EUR", MON).position
    second = approved("2.00", "EUR", MON).position
    project_all()
    assert verify_weekly_income() == []
    # The row `?at=first` reads, and the stored row's last position: the totals themselves still agree.
    WeeklyIncomeHistory.objects.filter(position=first).update(total_minor=777777, gross_minor=777777, count=9)
    WeeklyIncome.objects.update(last_position=first)
    assert verify_weekly_income() == [
        f"history row at {first}: 2026-11-16 EUR total=7777.77 count=9 gross=7777.77 reversed=0.00 reversed_count=0, "
        "the log says 2026-11-16 EUR total=1.00 count=1 gross=1.00 reversed=0.00 reversed_count=0",
        f"2026-11-16 EUR: stored last_position {first}, the log's last event of that bucket is at {second}",
    ]


def test_verify_names_a_history_row_for_which_the_log_has_no_event():
    approved("1.00", "EUR", MON)
    project_all()
    stray = WeeklyIncomeHistory.objects.get()
    stray.pk, stray.position = None, stray.position + 1000
    stray.save()
    assert verify_weekly_income() == [f"history row at {stray.position} (2026-11-16 EUR): no approval or reversal of that bucket there"]


@override_settings(ANALYTICS_TIME_ZONE="America/New_York")
def test_a_poison_event_is_logged_once_by_its_own_position_after_the_events_before_it_are_projected(caplog, monkeypatch, settings):
    projection.rebuild_weekly_income()  # the projection is computed for New York weeks
    approved("10.00", "EUR", MON)
    project_all()
    approved("5.00", "EUR", MON)
    approved("2.00", "EUR", MON)
    poison = append_legacy_approval(Decimal("1.00"), "EUR", "0001-01-01T00:00:00+00:00")
    approved("7.00", "EUR", MON)  # after the poison: held back with it
    before = poison - 1
    published = []
    monkeypatch.setattr(tasks, "publish", lambda messages, **k: published.append((k["after"], k["through"])))
    with caplog.at_level(logging.ERROR):
        # The two approvals before the poison with their submissions, and the poison's own submission.
        assert tasks.project_and_publish() == 5
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert f"events {poison}..{poison} could not be projected" in errors[0].getMessage()
    assert f"the checkpoint stays at {before}" in errors[0].getMessage()
    assert checkpoint() == before
    assert [int(t) for t in WeeklyIncome.objects.values_list("total_minor", flat=True)] == [1700]
    # What went through was published as batches that chain up to the poison.
    assert published[-1][1] == before and all(a[1] == b[0] for a, b in zip(published, published[1:]))


@override_settings(ANALYTICS_TIME_ZONE="America/New_York", READYZ_MAX_PROJECTION_LAG_SECONDS=30)
def test_readyz_turns_503_once_a_stuck_projection_is_older_than_the_limit(client, monkeypatch):
    projection.rebuild_weekly_income()
    append_legacy_approval(Decimal("1.00"), "EUR", "0001-01-01T00:00:00+00:00")
    with pytest.raises(projection.ProjectionFailed):
        project_all()
    assert client.get("/readyz").status_code == 200  # just behind: a busy projector is still ready
    later = datetime.now(timezone.utc) + timedelta(seconds=31)
    monkeypatch.setattr("analytics.selectors.timezone.now", lambda: later)
    response = client.get("/readyz")
    assert response.status_code == 503
    # One batch, one transaction: the poison holds back every registered projection, and each is named.
    assert re.fullmatch(r"error: weekly_income is \d+ events and 31(\.\d+)? s behind(; \w+ is \d+ events and 31(\.\d+)? s behind)* \(limit 30 s\)",
                        response.json()["checks"]["projections"])


@override_settings(ANALYTICS_TIME_ZONE="America/New_York")
def test_rebuild_names_the_poison_event_and_verify_reports_it_instead_of_crashing():
    projection.rebuild_weekly_income()
    approved("10.00", "EUR", MON)
    project_all()
    poison = append_legacy_approval(Decimal("1.00"), "EUR", "0001-01-01T00:00:00+00:00")
    with pytest.raises(CommandError, match=f"..{poison} could not be projected"):
        call_command("rebuild_projections")
    assert WeeklyIncome.objects.get().week_start == date(2026, 11, 16)  # the failed rebuild rolled back
    ProjectionCheckpoint.objects.filter(name="weekly_income").update(position=eventstore.last_position())
    problems = verify_weekly_income()
    assert any(p.startswith(f"event {poison}: occurred_at '0001-01-01T00:00:00+00:00' has no week here") for p in problems)
