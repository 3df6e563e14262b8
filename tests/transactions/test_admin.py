"""The Django admin decides through the commands; transactions and events are view-only."""
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connections

from core import eventstore
from core.models import StoredEvent
from transactions import services
from transactions.admin import TransactionAdmin
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


def test_the_reverse_action_needs_a_reason_and_reverses_only_approved_transactions(client, admin_user):
    client.force_login(admin_user)
    pending = submit()
    approved = services.transaction_approve(transaction_id=submit().id, actor="checker", reason="ok").transaction
    client.post(CHANGELIST, {"action": "reverse_selected", "_selected_action": [approved.id], "reason": ""})
    assert Transaction.objects.get(pk=approved.id).status == "approved"
    response = client.post(CHANGELIST, {"action": "reverse_selected", "_selected_action": [approved.id, pending.id], "reason": "refund"},
                           follow=True)
    assert Transaction.objects.get(pk=approved.id).status == "reversed"
    assert Transaction.objects.get(pk=pending.id).status == "pending"
    event = eventstore.read_stream(approved.id)[-1]
    assert (event.type, event.data["reason"], event.metadata["actor"]) == ("TransactionReversed", "refund", "boss")
    shown = [str(m) for m in response.context["messages"]]
    assert "Reversed 1 transaction(s)." in shown and any(str(pending.id) in m and "pending" in m for m in shown)


def test_the_approve_action_reports_an_own_submission_and_approves_the_rest(client, admin_user):
    client.force_login(admin_user)
    mine, theirs = submit(actor="boss"), submit()
    response = client.post(CHANGELIST, {"action": "approve_selected", "_selected_action": [mine.id, theirs.id], "reason": "ok"}, follow=True)
    assert Transaction.objects.get(pk=mine.id).status == "pending"
    assert Transaction.objects.get(pk=theirs.id).status == "approved"
    assert any(str(mine.id) in str(m) and "cannot approve" in str(m) for m in response.context["messages"])


def test_the_change_form_is_view_only_and_a_post_to_it_is_refused(client, admin_user):
    client.force_login(admin_user)
    txn = submit()
    page = client.get(f"{CHANGELIST}{txn.id}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert client.post(f"{CHANGELIST}{txn.id}/change/", {"status": "approved", "amount": "999.00"}).status_code == 403
    txn.refresh_from_db()
    assert (txn.status, str(txn.amount), txn.version) == ("pending", "10.0000", 1)


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_saving_the_change_form_while_an_approval_commits_does_not_revert_it(client, admin_user, monkeypatch):
    client.force_login(admin_user)
    txn = submit()
    original_get_object = TransactionAdmin.get_object

    def approved_meanwhile(self, request, object_id, from_field=None):
        obj = original_get_object(self, request, object_id, from_field)
        # The form has read the row; an approval commits from another connection before it saves.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(approve_elsewhere, obj.id).result(timeout=10)
        return obj

    monkeypatch.setattr(TransactionAdmin, "get_object", approved_meanwhile)
    response = client.post(f"{CHANGELIST}{txn.id}/change/", {"_save": "Save"})

    row = Transaction.objects.get(pk=txn.id)
    assert (row.status, row.version) == ("approved", 2)
    assert row.last_position == eventstore.read_stream(txn.id)[-1].position
    assert response.status_code == 403


def approve_elsewhere(txn_id):
    try:
        services.transaction_approve(transaction_id=txn_id, actor="other-admin", reason="ok")
    finally:
        connections.close_all()


def test_a_user_with_the_approve_permission_sees_and_runs_the_actions(client, db):
    decider = get_user_model().objects.create_user("decider", "decider@example.com", "decider-password-123", is_staff=True)
    decider.user_permissions.add(Permission.objects.get(codename="approve_transaction"))
    client.force_login(decider)
    txn = submit()
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert "approve_selected" in page.content.decode() and "reject_selected" in page.content.decode()

    response = client.post(CHANGELIST, {"action": "approve_selected", "_selected_action": [txn.id], "reason": "checked"})

    assert response.status_code == 302
    assert Transaction.objects.get(pk=txn.id).status == "approved"
    assert eventstore.read_stream(txn.id)[-1].metadata["actor"] == "decider"
    assert client.post(f"{CHANGELIST}{txn.id}/change/", {"_save": "Save"}).status_code == 403


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


@pytest.mark.parametrize("query", ["status=%00", "q=%00", "currency=a%00b", "o=1%00", "%00=1"])
def test_it_answers_a_nul_in_an_admin_query_string_with_a_400(client, admin_user, query):
    client.force_login(admin_user)
    submit()
    response = client.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 400
    assert "NUL" in response.content.decode()
    assert client.get(f"{CHANGELIST}?status=pending").status_code == 200
