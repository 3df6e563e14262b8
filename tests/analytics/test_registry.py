"""The projection registry: one batch read once, each projection fed past its own checkpoint, all in one transaction."""
from datetime import datetime, timezone
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from analytics import registry, selectors
from analytics.models import ProjectionCheckpoint, WeeklyIncome
from analytics.projection import ProjectionFailed, project_next_batch
from core import eventstore
from tests.factories import approved, submit
from transactions import events as txn_events

pytestmark = pytest.mark.django_db
MON = datetime(2026, 11, 16, 12, 0, tzinfo=timezone.utc)


class Submissions(registry.Projection):
    """A second read model for these tests: the submissions it was handed, kept in memory."""

    name = "test_submissions"
    handles = frozenset({txn_events.SUBMITTED})
    seen: list[int] = []
    poison: set[int] = set()

    def apply(self, events, *, through):
        for event in events:
            if event.position in self.poison:
                raise ValueError(f"cannot take event {event.position}")
        Submissions.seen += [event.position for event in events]
        return [{"type": "test_submissions.updated", "seq": through, "count": len(events)}]

    def rebuild(self, *, readers):
        checkpoint, _ = ProjectionCheckpoint.objects.get_or_create(name=self.name)
        checkpoint.position = eventstore.last_position()
        checkpoint.save()
        return registry.Rebuilt(checkpoint.position, "replayed")

    def verify(self):
        return ["3 submissions missing"] if self.poison else []


@pytest.fixture
def two_projections(monkeypatch):
    monkeypatch.setattr(registry, "PROJECTIONS", (*registry.PROJECTIONS, "tests.analytics.test_registry.Submissions"))
    monkeypatch.setattr(Submissions, "seen", [])
    monkeypatch.setattr(Submissions, "poison", set())
    registry.projections.cache_clear()
    yield
    registry.projections.cache_clear()


def positions():
    return dict(ProjectionCheckpoint.objects.values_list("name", "position"))


def totals():
    return {(r.week_start.isoformat(), r.currency): (int(r.total_minor), r.count) for r in WeeklyIncome.objects.all()}


def test_it_lists_weekly_income_first_and_finds_projections_by_name():
    assert registry.names()[0] == "weekly_income"
    assert registry.get("weekly_income").handles >= {txn_events.APPROVED}
    with pytest.raises(registry.UnknownProjection, match="no projection named 'nope'"):
        registry.get("nope")


def test_it_applies_one_batch_to_every_projection_with_only_the_events_each_handles(two_projections):
    approved("10.00", "EUR", MON)
    submit("5.00", "EUR", MON)
    batch = project_next_batch()
    last = eventstore.last_position()
    submissions = [e.position for e in eventstore.read_all(after=0) if e.type == txn_events.SUBMITTED]
    assert Submissions.seen == submissions
    assert totals() == {("2026-11-16", "EUR"): (1000, 1)}
    assert positions() == {name: last for name in registry.names()}
    assert (batch.after, batch.through) == (0, last)
    kinds = [m["type"] for m in batch.messages]
    assert "weekly_income.updated" in kinds and {"type": "test_submissions.updated", "seq": last, "count": 2} in batch.messages


def test_it_feeds_a_projection_that_is_behind_without_applying_anything_twice_to_the_others(two_projections):
    approved("10.00", "EUR", MON)
    project_next_batch()
    ProjectionCheckpoint.objects.filter(name="test_submissions").update(position=0)  # new, or reset
    Submissions.seen = []
    seen_by_dashboards = eventstore.last_position()
    approved("2.50", "EUR", MON)
    batch = project_next_batch()
    assert batch.after == 0  # read once, from the lowest checkpoint
    # Dashboards already had the first approval's messages: only the new events' are sent again.
    assert {m["seq"] for m in batch.messages if m["type"].startswith("transaction.")} == {seen_by_dashboards + 1, seen_by_dashboards + 2}
    assert len(Submissions.seen) == 2  # every submission, the old one included
    assert totals() == {("2026-11-16", "EUR"): (1250, 2)}  # the first approval not counted again
    assert set(positions().values()) == {eventstore.last_position()}


def test_it_feeds_a_projection_that_is_ahead_only_what_lies_past_its_checkpoint(two_projections):
    submit("1.00", "EUR", MON)
    project_next_batch()
    ahead = eventstore.last_position()
    ProjectionCheckpoint.objects.filter(name="weekly_income").update(position=0)
    approved("3.00", "EUR", MON)
    Submissions.seen = []
    project_next_batch()
    assert Submissions.seen == [ahead + 1]  # the new submission only
    assert totals() == {("2026-11-16", "EUR"): (300, 1)}


def test_a_poison_event_in_one_projection_rolls_back_the_whole_batch_and_names_it(two_projections):
    approved("10.00", "EUR", MON)
    project_next_batch()
    before = positions(), totals()
    approved("7.00", "EUR", MON)
    Submissions.poison = {eventstore.last_position() - 1}  # the new submission
    with pytest.raises(ProjectionFailed, match="test submissions: events .* could not be projected") as failed:
        project_next_batch()
    assert failed.value.projection == "test_submissions" and failed.value.after == before[0]["test_submissions"]
    assert (positions(), totals()) == before
    Submissions.poison = set()
    project_next_batch()
    assert totals() == {("2026-11-16", "EUR"): (1700, 2)}


def test_the_projection_position_is_the_lowest_checkpoint_unless_one_is_named(two_projections):
    approved("10.00", "EUR", MON)
    project_next_batch()
    last = eventstore.last_position()
    ProjectionCheckpoint.objects.filter(name="test_submissions").update(position=1)
    assert selectors.projection_position() == 1
    assert selectors.projection_position("weekly_income") == last
    lag = selectors.projection_lag()
    assert lag["test_submissions"]["behind"] == last - 1 and lag["weekly_income"]["behind"] == 0


def test_verify_and_rebuild_take_one_projection_by_name(two_projections):
    approved("10.00", "EUR", MON)
    project_next_batch()
    WeeklyIncome.objects.update(total_minor=1)
    Submissions.poison = {10**9}
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="^test_submissions: 1 mismatch"):
        call_command("verify_projections", "--projection", "test_submissions", stdout=out, stderr=err)
    assert "weekly_income" not in out.getvalue() + err.getvalue()
    ProjectionCheckpoint.objects.filter(name="test_submissions").update(position=2)
    call_command("rebuild_projections", "--projection", "weekly_income", stdout=out)
    assert positions()["test_submissions"] == 2  # left alone
    assert totals() == {("2026-11-16", "EUR"): (1000, 1)}


def test_the_commands_refuse_an_unknown_projection():
    for command in ("verify_projections", "rebuild_projections"):
        with pytest.raises(CommandError, match="no projection named 'nope'; registered: weekly_income"):
            call_command(command, "--projection", "nope", stdout=StringIO())


def test_weekly_income_reads_wait_on_its_own_checkpoint_not_on_a_projection_catching_up(two_projections, api, monkeypatch):
    from analytics import api as analytics_api, waiting

    approved("10.00", "EUR", MON)
    project_next_batch()
    last = eventstore.last_position()
    ProjectionCheckpoint.objects.filter(name="test_submissions").update(position=0)  # replaying from the start
    monkeypatch.setattr(analytics_api, "MIN_POSITION_WAIT_SECONDS", 0.05)
    answer = api.get("/api/analytics/weekly-income/", {"min_position": last, "from": "2026-11-16", "to": "2026-11-16"})
    assert answer.status_code == 200 and answer.json()["as_of"] == last
    assert waiting._read_position() == last
    assert api.get("/api/analytics/summary/").json()["as_of"] == last


def test_a_checkpoint_row_that_disappeared_is_created_again_before_any_lock_is_taken(two_projections):
    approved("10.00", "EUR", MON)
    project_next_batch()  # this process now remembers both rows exist
    ProjectionCheckpoint.objects.filter(name="test_submissions").delete()  # a restore, a flushed test database
    Submissions.seen = []
    approved("1.00", "EUR", MON)
    project_next_batch()
    assert len(Submissions.seen) == 2  # replayed from 0: both submissions
    assert set(positions().values()) == {eventstore.last_position()}


class NoVerify(registry.Projection):
    """A read model that forgot its verify hook."""

    name = "test_no_verify"
    handles = frozenset({txn_events.SUBMITTED})

    def apply(self, events, *, through):
        return []

    def rebuild(self, *, readers):
        return registry.Rebuilt(0, "")


def test_it_refuses_to_load_a_projection_that_lacks_one_of_its_hooks(monkeypatch):
    monkeypatch.setattr(registry, "PROJECTIONS", (*registry.PROJECTIONS, "tests.analytics.test_registry.NoVerify"))
    registry.projections.cache_clear()
    try:
        with pytest.raises(TypeError, match="abstract method verify"):
            registry.projections()
    finally:
        registry.projections.cache_clear()
