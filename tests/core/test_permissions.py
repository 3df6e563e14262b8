"""holds_perm: ModelBackend's rule (active; superuser; own or group permission) in one query."""
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.permissions import holds_perm

APPROVE = "transactions.approve_transaction"


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user("perm-staff", password="perm-password-123", is_staff=True)


def fresh(user):
    """The user as a request sees it: read afresh, no permission cache."""
    return get_user_model().objects.get(pk=user.pk)


def test_it_grants_a_permission_given_to_the_user_in_one_query(staff):
    staff.user_permissions.add(Permission.objects.get(codename="approve_transaction"))
    user = fresh(staff)
    with CaptureQueriesContext(connection) as queries:
        assert holds_perm(user, APPROVE) is True
    assert len(queries.captured_queries) == 1


def test_it_grants_a_permission_given_to_a_group_of_the_user(staff):
    group = Group.objects.create(name="finance")
    group.permissions.add(Permission.objects.get(codename="approve_transaction"))
    staff.groups.add(group)
    assert holds_perm(fresh(staff), APPROVE) is True


def test_it_refuses_a_user_without_the_permission_or_with_another_one(staff):
    staff.user_permissions.add(Permission.objects.get(codename="add_transaction"))
    assert holds_perm(fresh(staff), APPROVE) is False
    assert fresh(staff).has_perm(APPROVE) is False


def test_it_refuses_a_codename_of_another_app(staff):
    staff.user_permissions.add(Permission.objects.get(codename="approve_transaction"))
    assert holds_perm(fresh(staff), "analytics.approve_transaction") is False


def test_it_refuses_an_inactive_user_whatever_they_were_given(staff):
    staff.user_permissions.add(Permission.objects.get(codename="approve_transaction"))
    staff.is_active = False
    staff.save()
    assert holds_perm(fresh(staff), APPROVE) is False


def test_it_grants_a_superuser_everything_without_a_query(db):
    root = fresh(get_user_model().objects.create_superuser("perm-root", password="perm-password-123"))
    with CaptureQueriesContext(connection) as queries:
        assert holds_perm(root, APPROVE) is True
    assert len(queries.captured_queries) == 0


def test_it_answers_as_django_does_for_the_anonymous_user():
    from django.contrib.auth.models import AnonymousUser

    assert holds_perm(AnonymousUser(), APPROVE) is False


def bearer_client(user):
    from rest_framework.test import APIClient
    from rest_framework_simplejwt.tokens import RefreshToken

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


def test_it_reads_a_bearers_permissions_with_the_user_so_an_approval_asks_no_more(staff):
    from tests.factories import submit

    group = Group.objects.create(name="approvers")
    group.permissions.add(Permission.objects.get(codename="approve_transaction"))
    staff.groups.add(group)
    client = bearer_client(staff)
    with CaptureQueriesContext(connection) as queries:
        response = client.post(f"/api/transactions/{submit().id}/approve/", {}, format="json")
    assert response.status_code == 200, response.content
    # The one that reads the user: its permissions come along. It is a prepared statement, sent with its text on a
    # connection's first use and by name after that.
    from core.db import prepared_name
    from core.security import _USER_SQL

    (user_sql, _, _), = _USER_SQL.values()
    name = prepared_name(user_sql)
    assert len([q for q in queries.captured_queries if "auth_permission" in q["sql"] or name in q["sql"]]) == 1


def test_it_refuses_a_bearer_on_the_next_request_once_the_permission_is_taken_away(staff):
    from tests.factories import submit

    staff.user_permissions.add(Permission.objects.get(codename="approve_transaction"))
    client = bearer_client(staff)
    assert client.post(f"/api/transactions/{submit().id}/approve/", {}, format="json").status_code == 200
    staff.user_permissions.clear()
    refused = client.post(f"/api/transactions/{submit().id}/approve/", {}, format="json")
    assert refused.status_code == 403
    assert refused["Content-Type"].startswith("application/problem+json")
