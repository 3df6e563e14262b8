"""Migration analytics 0006: weeks stored before it get their timed count and percentile marks, and the pending count is kept."""
import uuid
from datetime import date, datetime, timezone

import pytest
from django.db import connection

from tests.database import migrate, migrated_to

pytestmark = [pytest.mark.needs_postgres, pytest.mark.django_db(transaction=True)]
BEFORE, AFTER = [("analytics", "0005_weekly_income_reversals")], [("analytics", "0006_review_queue_marks")]
WEEK, QUIET_WEEK = date(2026, 11, 16), date(2026, 11, 9)


@pytest.fixture
def before_0006():
    with migrated_to(BEFORE, "analytics"):
        yield


def test_it_fills_each_weeks_marks_and_the_pending_count_from_the_rows(before_0006):
    waits = [30, 5, 30, 600, 30, 7, None]  # ties at 30; a reversal is untimed
    with connection.cursor() as cursor:
        for position, seconds in enumerate(waits, start=10):
            cursor.execute(
                "INSERT INTO analytics_reviewqueuedecision (position, transaction_id, week_start, kind, actor, seconds) "
                "VALUES (%s, %s, %s, %s, 'ana', %s)",
                [position, uuid.uuid4(), WEEK, "reversed" if seconds is None else "approved", seconds],
            )
        cursor.execute(
            "INSERT INTO analytics_reviewqueueweek (week_start, approved, rejected, reversed, p50_seconds, p90_seconds, last_position) "
            "VALUES (%s, 6, 0, 1, 30, 600, 16), (%s, 0, 0, 1, NULL, NULL, 3)",
            [WEEK, QUIET_WEEK],
        )
        for position in (20, 21):
            cursor.execute("INSERT INTO analytics_reviewqueuepending (transaction_id, submitted_at, position) VALUES (%s, %s, %s)",
                           [uuid.uuid4(), datetime(2026, 11, 17, tzinfo=timezone.utc), position])
    migrate(AFTER)
    with connection.cursor() as cursor:
        cursor.execute("SELECT week_start, timed, p50_seconds, p50_position, p90_seconds, p90_position FROM analytics_reviewqueueweek "
                       "ORDER BY week_start")
        weeks = cursor.fetchall()
        cursor.execute("SELECT id, pending FROM analytics_reviewqueuetotal")
        totals = cursor.fetchall()
    # (seconds, position) order: (5,11) (7,15) (30,10) (30,12) (30,14) (600,13); rank 3 for p50, 6 for p90.
    assert weeks == [(QUIET_WEEK, 0, None, None, None, None), (WEEK, 6, 30, 10, 600, 13)]
    assert totals == [(1, 2)]
