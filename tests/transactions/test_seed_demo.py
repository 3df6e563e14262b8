"""seed_demo: a login, and weeks of transactions created through the real commands."""
from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from core import eventstore
from tests.factories import submit
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
    assert statuses.count("approved") > 30 and {"pending", "rejected", "reversed"} <= set(statuses)
    assert len(set(Transaction.objects.values_list("currency", flat=True))) == 3
    # Every row came from a command: one event per submission and per decision (a reversal follows an approval).
    decided = statuses.count("approved") + statuses.count("rejected") + 2 * statuses.count("reversed")
    assert len(eventstore.read_all(limit=1000)) == 60 + decided
    # Submitted by the seed, not by the demo login: the admin may approve what is pending.
    assert set(Transaction.objects.values_list("submitted_by", flat=True)) == {"seed_demo"}
    assert set(Transaction.objects.exclude(status="pending").values_list("decided_by", flat=True)) == {"admin"}


def test_running_it_again_does_not_seed_twice():
    call_command("seed_demo", "--transactions", "5", stdout=StringIO())
    out = StringIO()
    call_command("seed_demo", "--transactions", "5", stdout=out)
    assert Transaction.objects.count() == 5
    assert "not seeding" in out.getvalue()


def test_it_leaves_an_existing_admin_with_its_password_and_flags():
    User = get_user_model()
    User.objects.create_user("admin", "ops@example.com", "the-operators-own-password", is_staff=True, is_superuser=False)
    out = StringIO()
    call_command("seed_demo", "--transactions", "3", stdout=out)
    admin = User.objects.get(username="admin")
    assert admin.check_password("the-operators-own-password")
    assert not admin.check_password("ledgerpulse-demo")
    assert (admin.is_staff, admin.is_superuser, admin.is_active, admin.email) == (True, False, True, "ops@example.com")
    assert "left unchanged" in out.getvalue() and "ledgerpulse-demo" not in out.getvalue()


def test_it_leaves_a_database_with_one_transaction_alone():
    submit()
    users_before = list(get_user_model().objects.values_list("username", "password", "is_superuser"))
    events_before = len(eventstore.read_all(limit=1000))
    out = StringIO()
    call_command("seed_demo", "--transactions", "5", stdout=out)  # exit 0: no exception
    assert Transaction.objects.count() == 1
    assert len(eventstore.read_all(limit=1000)) == events_before
    assert list(get_user_model().objects.values_list("username", "password", "is_superuser")) == users_before
    assert not get_user_model().objects.filter(username="admin").exists()
    assert "not seeding" in out.getvalue()
