"""The Django admin decides through the commands and cannot edit a status or an event."""
import pytest

from core import eventstore
from core.models import StoredEvent
from transactions.models import Transaction
from tests.factories import submit

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/transactions/transaction/"


def test_the_approve_action_appends_events_through_the_command(client, admin_user):
    client.force_login(admin_user)
    first, second = submit(), submit()
    response = client.post(CHANGELIST, {"action": "approve_selected", "_selected_action": [first.id, second.id], "reason": "batch ok"})
    assert response.status_code == 302
    for txn in (first, second):
        events = eventstore.read_stream(txn.id)
        assert [e.type for e in events] == ["TransactionSubmitted", "TransactionApproved"]
        assert events[-1].data["reason"] == "batch ok" and events[-1].metadata["actor"] == "boss"


def test_the_reject_action_needs_a_reason(client, admin_user):
    client.force_login(admin_user)
    txn = submit()
    client.post(CHANGELIST, {"action": "reject_selected", "_selected_action": [txn.id], "reason": ""})
    assert Transaction.objects.get(pk=txn.id).status == "pending"
    client.post(CHANGELIST, {"action": "reject_selected", "_selected_action": [txn.id], "reason": "duplicate"})
    assert Transaction.objects.get(pk=txn.id).status == "rejected"
    assert eventstore.read_stream(txn.id)[-1].data["reason"] == "duplicate"


def test_the_change_form_cannot_edit_the_status(client, admin_user):
    client.force_login(admin_user)
    txn = submit()
    client.post(f"{CHANGELIST}{txn.id}/change/", {"status": "approved", "amount": "999.00"})
    txn.refresh_from_db()
    assert (txn.status, str(txn.amount)) == ("pending", "10.0000")


def test_events_are_read_only_in_the_admin(client, admin_user):
    client.force_login(admin_user)
    submit()
    event = StoredEvent.objects.get()
    assert client.get("/admin/core/storedevent/add/").status_code == 403
    client.post(f"/admin/core/storedevent/{event.position}/delete/", {"post": "yes"})
    assert StoredEvent.objects.filter(position=event.position).exists()


def test_staff_without_the_approve_permission_do_not_see_the_actions(client, staff_user):
    from django.contrib.auth.models import Permission

    staff_user.user_permissions.add(Permission.objects.get(codename="view_transaction"))
    client.force_login(staff_user)
    page = client.get(CHANGELIST).content.decode()
    assert "approve_selected" not in page and "reject_selected" not in page
