"""seed_demo: a login, and weeks of transactions created through the real commands."""
from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from core import eventstore
from transactions.models import Transaction

pytestmark = pytest.mark.django_db


def test_it_prints_a_working_staff_login_and_seeds_mostly_approved_transactions():
    out = StringIO()
    call_command("seed_demo", "--transactions", "60", "--weeks", "12", stdout=out)
    assert "login: admin / ledgerpulse-demo" in out.getvalue()
    user = authenticate(username="admin", password="ledgerpulse-demo")
    assert user is not None and user.is_staff
    statuses = list(Transaction.objects.values_list("status", flat=True))
    assert len(statuses) == 60
    assert statuses.count("approved") > 30 and "pending" in statuses and "rejected" in statuses
    assert len(set(Transaction.objects.values_list("currency", flat=True))) == 3
    # Every row came from a command: one event per submission and per decision.
    assert len(eventstore.read_all(limit=1000)) == 60 + statuses.count("approved") + statuses.count("rejected")


def test_running_it_again_does_not_seed_twice():
    call_command("seed_demo", "--transactions", "5", stdout=StringIO())
    out = StringIO()
    call_command("seed_demo", "--transactions", "5", stdout=out)
    assert Transaction.objects.count() == 5
    assert "not seeding more" in out.getvalue()
