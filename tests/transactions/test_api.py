"""The transactions REST API: shapes, status codes, permissions and problem+json errors."""
from decimal import Decimal
import uuid

import pytest

from core import eventstore
from transactions.models import Transaction
from tests.factories import submit

pytestmark = pytest.mark.django_db
PROBLEM = "application/problem+json"


def create(api, **overrides):
    body = {"amount": "12.50", "currency": "EUR", "occurred_at": "2026-11-18T09:30:00+01:00", "reference": "INV-7"}
    body.update(overrides)
    return api.post("/api/transactions/", body, format="json")


def assert_problem(response, status, field=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"].startswith("urn:ledgerpulse:problem:")
    if field is not None:
        assert field in [error["field"] for error in body["errors"]], body
    return body


def test_creating_a_transaction_answers_201_with_decimal_strings(api):
    response = create(api)
    assert response.status_code == 201
    body = response.json()
    assert body["amount"] == "12.50"
    assert body["currency"] == "EUR"
    assert body["status"] == "pending" and body["version"] == 1
    assert body["occurred_at"] == "2026-11-18T08:30:00Z"
    assert Transaction.objects.filter(pk=body["id"]).exists()


def test_a_json_number_amount_is_read_exactly_never_as_a_float(api):
    response = api.post(
        "/api/transactions/", data=b'{"amount": 0.30, "currency": "USD"}', content_type="application/json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["amount"] == "0.30"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"amount": "0"}, "amount"),
        ({"amount": "-1.00"}, "amount"),
        ({"amount": "12.505"}, "amount"),
        ({"amount": "NaN"}, "amount"),
        ({"amount": "Infinity"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": None}, "amount"),
        ({"currency": "ZZZ"}, "currency"),
        ({"currency": "EURO"}, "currency"),
        ({"occurred_at": "2026-11-18T09:30:00"}, "occurred_at"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"reference": "x" * 141}, "reference"),
        ({"description": ["not", "text"]}, "description"),
    ],
)
def test_bad_fields_get_a_problem_naming_the_field_and_store_nothing(api, overrides, field):
    assert_problem(create(api, **overrides), 400, field)
    assert not Transaction.objects.exists()
    assert eventstore.read_all() == []


def test_a_missing_amount_is_named(api):
    response = api.post("/api/transactions/", {"currency": "EUR"}, format="json")
    assert_problem(response, 400, "amount")


def test_malformed_json_is_a_400_problem(api):
    response = api.post("/api/transactions/", data=b'{"amount": "1.00",', content_type="application/json")
    assert_problem(response, 400)
    assert not Transaction.objects.exists()


def test_nan_literals_in_json_are_refused(api):
    response = api.post("/api/transactions/", data=b'{"amount": NaN, "currency": "EUR"}', content_type="application/json")
    assert_problem(response, 400)


def test_the_list_is_newest_first_with_cursor_pages(api):
    ids = [str(submit(amount=f"{n}.00").id) for n in range(1, 6)]
    first = api.get("/api/transactions/", {"limit": 2}).json()
    assert [t["id"] for t in first["results"]] == ids[::-1][:2]
    assert first["previous"] is None and first["next"]
    second = api.get(first["next"]).json()
    assert [t["id"] for t in second["results"]] == ids[::-1][2:4]


def test_the_list_filters_on_status_and_currency(api):
    keep = submit(currency="USD")
    submit(currency="EUR")
    decided = submit(currency="USD")
    api.post(f"/api/transactions/{decided.id}/approve/", {}, format="json")
    results = api.get("/api/transactions/", {"status": "pending", "currency": "usd"}).json()["results"]
    assert [t["id"] for t in results] == [str(keep.id)]


def test_an_unknown_status_filter_is_a_400_problem(api):
    assert_problem(api.get("/api/transactions/", {"status": "maybe"}), 400, "status")


def test_it_filters_on_several_statuses_given_comma_separated(api, settings):
    settings.APPROVAL_DUAL_CONTROL = {"EUR": Decimal("100.00")}
    pending, awaiting, approved, rejected = submit(), submit("500.00"), submit(), submit()
    for txn in (awaiting, approved):
        api.post(f"/api/transactions/{txn.id}/approve/", {}, format="json")
    api.post(f"/api/transactions/{rejected.id}/reject/", {"reason": "no"}, format="json")
    response = api.get("/api/transactions/", {"status": "pending,awaiting_second_approval"})
    assert response.status_code == 200, response.content
    assert {t["id"] for t in response.json()["results"]} == {str(pending.id), str(awaiting.id)}
    one = api.get("/api/transactions/", {"status": "rejected"}).json()["results"]
    assert [t["id"] for t in one] == [str(rejected.id)]


def test_it_refuses_status_given_twice_instead_of_keeping_only_the_last(api):
    # ?status=pending&status=approved would otherwise list approved ones only: the list asked for, silently cut.
    submit()
    body = assert_problem(api.get("/api/transactions/?status=pending&status=approved"), 400, "status")
    assert "comma" in body["errors"][0]["message"]


@pytest.mark.parametrize("value", ["pending,maybe", "pending,", ",pending", "pending,,approved", "PENDING", "pending, approved"])
def test_it_refuses_a_status_list_with_any_unknown_or_empty_value_naming_the_status_field(api, value):
    submit()
    body = assert_problem(api.get("/api/transactions/", {"status": value}), 400, "status")
    assert body["code"] == "invalid_request"


def test_the_detail_answers_the_transaction_and_404_for_an_unknown_id(api):
    txn = submit()
    assert api.get(f"/api/transactions/{txn.id}/").json()["id"] == str(txn.id)
    assert_problem(api.get(f"/api/transactions/{uuid.uuid4()}/"), 404)


def test_approving_answers_the_transaction_and_the_events_position(api):
    txn = submit()
    response = api.post(f"/api/transactions/{txn.id}/approve/", {"reason": "fine"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "approved" and body["version"] == 2 and body["decided_by"] == "boss"
    assert body["position"] == eventstore.read_stream(txn.id)[-1].position


def test_approving_twice_is_a_409_problem(api):
    txn = submit()
    api.post(f"/api/transactions/{txn.id}/approve/", {}, format="json")
    body = assert_problem(api.post(f"/api/transactions/{txn.id}/approve/", {}, format="json"), 409)
    assert body["code"] == "transaction_not_pending"


def test_approving_with_a_stale_expected_version_is_a_409_problem(api):
    txn = submit()
    body = assert_problem(api.post(f"/api/transactions/{txn.id}/approve/", {"expected_version": 5}, format="json"), 409)
    assert body["code"] == "stale_version"


def test_approving_an_unknown_transaction_is_a_404_problem(api):
    assert_problem(api.post(f"/api/transactions/{uuid.uuid4()}/approve/", {}, format="json"), 404)


def test_rejecting_needs_a_reason(api):
    txn = submit()
    assert_problem(api.post(f"/api/transactions/{txn.id}/reject/", {}, format="json"), 400, "reason")
    response = api.post(f"/api/transactions/{txn.id}/reject/", {"reason": "duplicate"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "rejected" and response.json()["decision_reason"] == "duplicate"


def test_the_streams_events_come_oldest_first(api):
    txn = submit()
    api.post(f"/api/transactions/{txn.id}/reject/", {"reason": "no"}, format="json")
    events = api.get(f"/api/transactions/{txn.id}/events/").json()["results"]
    assert [e["type"] for e in events] == ["TransactionSubmitted", "TransactionRejected"]
    assert [e["version"] for e in events] == [1, 2]
    assert events[1]["data"] == {"transaction_id": str(txn.id), "reason": "no"}
    assert events[1]["metadata"]["actor"] == "boss"


def test_the_event_feed_pages_by_position(api):
    for _ in range(3):
        submit()
    everything = api.get("/api/events/").json()
    positions = [e["position"] for e in everything["results"]]
    assert everything["last_position"] == positions[-1]
    page = api.get("/api/events/", {"after": positions[0], "limit": 1}).json()
    assert [e["position"] for e in page["results"]] == [positions[1]]
    assert page["last_position"] == positions[1]
    empty = api.get("/api/events/", {"after": positions[-1]}).json()
    assert empty == {"results": [], "last_position": positions[-1]}


@pytest.mark.parametrize("params", [{"limit": 1001}, {"limit": 0}, {"after": -1}, {"after": "x"}])
def test_the_event_feed_refuses_bad_paging(api, params):
    assert_problem(api.get("/api/events/", params), 400, next(iter(params)))


# --- permissions -------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/transactions/", "/api/events/", "/api/analytics/weekly-income/", "/api/dashboard/snapshot/"])
def test_reading_without_credentials_is_a_401_problem(client_for, path):
    response = client_for(None).get(path)
    assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_reading_as_a_non_staff_user_is_a_403_problem(client_for, plain_user):
    assert_problem(client_for(plain_user).get("/api/transactions/"), 403)


def test_staff_without_permissions_may_read_but_not_write(client_for, staff_user):
    txn = submit()
    viewer = client_for(staff_user)
    assert viewer.get("/api/transactions/").status_code == 200
    assert_problem(create(viewer), 403)
    assert_problem(viewer.post(f"/api/transactions/{txn.id}/approve/", {}, format="json"), 403)
    assert Transaction.objects.get(pk=txn.id).status == "pending"


def test_a_clerk_may_submit_but_not_decide(client_for, clerk_user):
    clerk = client_for(clerk_user)
    created = create(clerk)
    assert created.status_code == 201
    assert_problem(clerk.post(f"/api/transactions/{created.json()['id']}/approve/", {}, format="json"), 403)


def test_session_posts_need_the_csrf_token(admin_user):
    from rest_framework.test import APIClient

    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    assert_problem(create(browser), 403)
    assert not Transaction.objects.exists()


def test_an_unknown_api_path_is_a_404_problem(api):
    response = api.get("/api/nothing-here/")
    assert response.status_code == 404
    assert response["Content-Type"] == PROBLEM


@pytest.mark.parametrize("param", ["status", "occurred_before", "amount_min", "cursor"])
def test_an_empty_filter_is_a_400_naming_it_not_silently_ignored(api, param):
    assert_problem(api.get("/api/transactions/", {param: ""}), 400, param)


@pytest.mark.parametrize(("params", "field"), [({"limit": "null"}, "limit"), ({"limit": "500"}, "limit"), ({"cursor": "garbage"}, "cursor")])
def test_a_bad_page_size_or_cursor_is_a_400_naming_it(api, params, field):
    assert_problem(api.get("/api/transactions/", params), 400, field)


def test_an_unknown_format_is_a_400_naming_it(api):
    assert_problem(api.get("/api/transactions/", {"format": "xml"}), 400, "format")


def test_a_body_over_one_mebibyte_is_a_413_problem_and_stores_nothing(api):
    body = b'{"amount": "1.00", "currency": "EUR", "description": "' + b"x" * (1024 * 1024) + b'"}'
    response = api.post("/api/transactions/", data=body, content_type="application/json")
    assert_problem(response, 413)
    assert not Transaction.objects.exists()


def test_datetime_filters_take_any_offset_python_accepts(api):
    # PostgreSQL refuses offsets beyond ±15:59; the filter converts to UTC first.
    response = api.get("/api/transactions/", {"occurred_after": "0216-10-08T15:15:25-21:53"})
    assert response.status_code == 200


def test_a_datetime_filter_out_of_range_is_a_400(api):
    assert_problem(api.get("/api/transactions/", {"occurred_after": "0001-01-01T00:00:00+23:00"}), 400, "occurred_after")


def test_occurred_at_with_an_extreme_offset_is_stored_in_utc(api):
    response = create(api, occurred_at="2026-11-18T09:30:00-21:53")
    assert response.status_code == 201
    assert response.json()["occurred_at"] == "2026-11-19T07:23:00Z"


@pytest.mark.parametrize("decided", ["pending", "approved", "rejected", "reversed"])
def test_the_plain_payload_is_exactly_what_the_model_serializer_writes(decided):
    from transactions import services
    from transactions.serializers import TransactionOutput, transaction_payload

    txn = submit(amount="1234" if decided == "rejected" else "1234.5", currency="JPY" if decided == "rejected" else "USD", reference="R-1", description="two\nlines")
    if decided in ("approved", "reversed"):
        txn = services.transaction_approve(transaction_id=txn.id, actor="checker", reason="ok").transaction
    if decided == "reversed":
        txn = services.transaction_reverse(transaction_id=txn.id, actor="checker", reason="refund").transaction
    elif decided == "rejected":
        txn = services.transaction_reject(transaction_id=txn.id, actor="tester", reason="no").transaction
    txn = Transaction.objects.get(pk=txn.pk)
    assert transaction_payload(txn) == dict(TransactionOutput(txn).data)


def test_an_empty_approval_body_means_what_the_input_serializer_says(api):
    from transactions.serializers import ApproveInput

    payload = ApproveInput(data={})
    assert payload.is_valid() and dict(payload.validated_data) == {"reason": ""}
    txn = submit()
    response = api.post(f"/api/transactions/{txn.id}/approve/", {}, format="json")
    assert response.status_code == 200, response.content
    assert Transaction.objects.get(pk=txn.id).decision_reason == ""
    assert_problem(api.post(f"/api/transactions/{submit().id}/approve/", {"reason": 5}, format="json"), 400, "reason")


@pytest.mark.parametrize("decide", ["approve", "reject"])
def test_the_decided_transaction_a_command_returns_is_the_stored_row(decide):
    from transactions import services

    txn = submit(amount="99.99", currency="EUR", reference="R-2")
    command = services.transaction_approve if decide == "approve" else services.transaction_reject
    decision = command(transaction_id=str(txn.id), actor="checker", reason="checked")
    stored = Transaction.objects.get(pk=txn.id)
    fields = [field.attname for field in Transaction._meta.concrete_fields]
    assert {f: getattr(decision.transaction, f) for f in fields} == {f: getattr(stored, f) for f in fields}
    assert stored.status == ("approved" if decide == "approve" else "rejected") and stored.last_position == decision.position


# --- reversals -------------------------------------------------------------------------------


def approved_by_someone_else(**overrides):
    from transactions import services

    txn = submit(**overrides)
    return services.transaction_approve(transaction_id=txn.id, actor="checker", reason="ok").transaction


def test_reversing_answers_the_reversed_transaction_and_the_events_position(api):
    txn = approved_by_someone_else(amount="40.00", currency="USD")
    response = api.post(f"/api/transactions/{txn.id}/reverse/", {"reason": "chargeback"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["version"], body["decided_by"], body["decision_reason"]) == ("reversed", 3, "boss", "chargeback")
    assert (body["submitted_by"], body["first_approved_by"]) == ("tester", "")
    [*_, event] = eventstore.read_stream(txn.id)
    assert body["position"] == event.position and event.type == "TransactionReversed"
    assert event.data == {"transaction_id": str(txn.id), "amount": "40.00", "currency": "USD", "reason": "chargeback"}
    assert api.get(f"/api/transactions/{txn.id}/").json() == {k: v for k, v in body.items() if k != "position"}


@pytest.mark.parametrize("state", ["pending", "rejected", "reversed"])
def test_reversing_what_is_not_approved_is_a_409_problem(api, state):
    txn = submit() if state in ("pending", "rejected") else approved_by_someone_else()
    if state == "rejected":
        api.post(f"/api/transactions/{txn.id}/reject/", {"reason": "no"}, format="json")
    elif state == "reversed":
        api.post(f"/api/transactions/{txn.id}/reverse/", {"reason": "refund"}, format="json")
    before = len(eventstore.read_stream(txn.id))
    body = assert_problem(api.post(f"/api/transactions/{txn.id}/reverse/", {"reason": "again"}, format="json"), 409)
    assert body["code"] == "transaction_not_approved"
    assert len(eventstore.read_stream(txn.id)) == before


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}, {"reason": 5}])
def test_reversing_needs_a_reason(api, body):
    txn = approved_by_someone_else()
    assert_problem(api.post(f"/api/transactions/{txn.id}/reverse/", body, format="json"), 400, "reason")
    assert Transaction.objects.get(pk=txn.id).status == "approved"


@pytest.mark.parametrize("action", ["approve", "reject", "reverse"])
def test_it_refuses_a_decision_with_a_misspelt_field_instead_of_deciding_without_its_guard(api, action):
    # `expected_verison` ignored would decide whatever the version now is: the check the caller asked for, skipped.
    txn = approved_by_someone_else() if action == "reverse" else submit()
    before = eventstore.last_position()
    response = api.post(f"/api/transactions/{txn.id}/{action}/", {"reason": "r", "expected_verison": 99}, format="json")
    body = assert_problem(response, 400, "expected_verison")
    assert body["code"] == "invalid_request"
    assert eventstore.last_position() == before


def test_reversing_with_a_stale_expected_version_is_a_409_problem(api):
    txn = approved_by_someone_else()
    body = assert_problem(api.post(f"/api/transactions/{txn.id}/reverse/", {"reason": "r", "expected_version": 1}, format="json"), 409)
    assert body["code"] == "stale_version"
    assert api.post(f"/api/transactions/{txn.id}/reverse/", {"reason": "r", "expected_version": 2}, format="json").status_code == 200


def test_reversing_an_unknown_transaction_is_a_404_problem(api):
    assert_problem(api.post(f"/api/transactions/{uuid.uuid4()}/reverse/", {"reason": "r"}, format="json"), 404)


def test_a_retried_reversal_with_the_same_key_replays_the_answer_and_reverses_once(api):
    txn = approved_by_someone_else()
    path = f"/api/transactions/{txn.id}/reverse/"
    first = api.post(path, {"reason": "refund"}, format="json", HTTP_IDEMPOTENCY_KEY="rev-1")
    retry = api.post(path, {"reason": "refund"}, format="json", HTTP_IDEMPOTENCY_KEY="rev-1")
    assert first.status_code == retry.status_code == 200
    assert retry.json() == first.json() and retry["Idempotent-Replayed"] == "true"
    assert [e.type for e in eventstore.read_stream(txn.id)][-1] == "TransactionReversed"
    assert len(eventstore.read_stream(txn.id)) == 3
    assert_problem(api.post(path, {"reason": "other"}, format="json", HTTP_IDEMPOTENCY_KEY="rev-1"), 422)


def test_reversing_needs_the_approve_permission(client_for, staff_user, clerk_user):
    txn = approved_by_someone_else()
    for user in (staff_user, clerk_user):
        body = assert_problem(client_for(user).post(f"/api/transactions/{txn.id}/reverse/", {"reason": "r"}, format="json"), 403)
        assert body["code"] == "permission_denied"
    assert Transaction.objects.get(pk=txn.id).status == "approved"


# --- four eyes --------------------------------------------------------------------------------


def test_approving_your_own_submission_is_a_403_problem_but_rejecting_it_is_allowed(api):
    created = create(api).json()
    assert created["submitted_by"] == "boss"
    body = assert_problem(api.post(f"/api/transactions/{created['id']}/approve/", {}, format="json"), 403)
    assert body["code"] == "own_submission"
    assert [e.type for e in eventstore.read_stream(created["id"])] == ["TransactionSubmitted"]
    withdrawn = api.post(f"/api/transactions/{created['id']}/reject/", {"reason": "entered twice"}, format="json")
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "rejected"


@pytest.fixture
def second_admin(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("second", "second@example.com", "second-password-123")


def test_dual_control_through_the_api_first_then_second_approver(api, client_for, second_admin, settings):
    from decimal import Decimal

    settings.APPROVAL_DUAL_CONTROL = {"EUR": Decimal("10000")}
    txn = submit(amount="10000.00")
    first = api.post(f"/api/transactions/{txn.id}/approve/", {"reason": "one"}, format="json")
    assert first.status_code == 200, first.content
    assert (first.json()["status"], first.json()["first_approved_by"], first.json()["decided_by"]) == ("awaiting_second_approval", "boss", "")
    again = assert_problem(api.post(f"/api/transactions/{txn.id}/approve/", {"reason": "me again"}, format="json"), 403)
    assert again["code"] == "second_approver_required"
    listed = api.get("/api/transactions/", {"status": "awaiting_second_approval"}).json()["results"]
    assert [t["id"] for t in listed] == [str(txn.id)]
    second = client_for(second_admin).post(f"/api/transactions/{txn.id}/approve/", {"reason": "two"}, format="json")
    assert second.status_code == 200, second.content
    body = second.json()
    assert (body["status"], body["version"], body["first_approved_by"], body["decided_by"]) == ("approved", 3, "boss", "second")
    assert [e.type for e in eventstore.read_stream(txn.id)] == ["TransactionSubmitted", "TransactionApprovalRecorded", "TransactionApproved"]


def test_the_list_filters_on_the_new_statuses(api):
    from transactions import services

    reversed_txn = approved_by_someone_else()
    services.transaction_reverse(transaction_id=reversed_txn.id, actor="checker", reason="refund")
    approved_by_someone_else()
    results = api.get("/api/transactions/", {"status": "reversed"}).json()["results"]
    assert [t["id"] for t in results] == [str(reversed_txn.id)]


def test_the_schema_documents_the_reverse_endpoint_the_statuses_and_the_new_fields(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    reverse = schema["paths"]["/api/transactions/{transaction_id}/reverse/"]["post"]
    assert reverse["operationId"] == "transactions_reverse"
    assert {"200", "400", "403", "404", "409", "422"} <= set(reverse["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in reverse["parameters"])
    [status] = [p for p in schema["paths"]["/api/transactions/"]["get"]["parameters"] if p["name"] == "status"]
    assert sorted(status["schema"]["items"]["enum"]) == ["approved", "awaiting_second_approval", "pending", "rejected", "reversed"]
    assert (status["schema"]["type"], status["style"], status["explode"]) == ("array", "form", False)  # comma-separated
    properties = schema["components"]["schemas"]["TransactionOutput"]["properties"]
    assert {"submitted_by", "first_approved_by"} <= set(properties)
