"""rebuild_projections and verify_projections as an operator runs them."""
import re
from datetime import datetime, timezone
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from analytics.models import WeeklyIncome
from analytics.projection import project_next_batch
from tests.factories import approved

pytestmark = pytest.mark.django_db
MON = datetime(2026, 11, 16, 12, 0, tzinfo=timezone.utc)


def test_verify_passes_when_the_rows_match_the_log():
    approved("10.00", "EUR", MON)
    project_next_batch()
    out = StringIO()
    call_command("verify_projections", stdout=out)
    assert "matches the event log" in out.getvalue()


def test_verify_fails_with_a_diff_when_a_row_is_wrong():
    approved("10.00", "EUR", MON)
    project_next_batch()
    WeeklyIncome.objects.update(count=5)
    err = StringIO()
    with pytest.raises(CommandError, match="1 mismatch"):
        call_command("verify_projections", stderr=err)
    assert "2026-11-16 EUR: stored total=10.00 count=5, log says total=10.00 count=1" in err.getvalue()


def test_rebuild_repairs_what_verify_found():
    approved("10.00", "EUR", MON)
    project_next_batch()
    WeeklyIncome.objects.update(total_minor=1)
    out = StringIO()
    call_command("rebuild_projections", stdout=out)
    call_command("verify_projections", stdout=StringIO())
    assert WeeklyIncome.objects.get().total_minor == 1000
    assert re.search(r"rebuilt through position \d+: 1 events read in bulk up to position \d+, 0 events caught up after it, "
                     r"1 rows \(lock [0-9.]+ s, read", out.getvalue())


def test_rebuild_refuses_zero_readers_and_changes_nothing():
    approved("10.00", "EUR", MON)
    project_next_batch()
    WeeklyIncome.objects.update(total_minor=1)
    with pytest.raises(CommandError, match="--readers must be at least 1"):
        call_command("rebuild_projections", "--readers", "0", stdout=StringIO())
    assert WeeklyIncome.objects.get().total_minor == 1
