"""POST /api/transactions/bulk-decisions/: per-item outcomes, whole-body 400s naming the item, permissions, idempotency, limits."""
import json
import uuid

import pytest

from core import eventstore
from transactions.models import Transaction
from tests.factories import submit

pytestmark = pytest.mark.django_db
URL = "/api/transactions/bulk-decisions/"
PROBLEM = "application/problem+json"


def post(api, body, **headers):
    return api.post(URL, data=json.dumps(body), content_type="application/json", **headers)


def decisions(*items):
    """decisions((txn, "approve"), (txn, "reject", {"reason": "no"})) -> the request body."""
    return {"decisions": [{"id": str(getattr(item[0], "id", item[0])), "action": item[1], **(item[2] if len(item) > 2 else {})} for item in items]}


def assert_invalid(response, *fields):
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == PROBLEM
    body = response.json()
    assert body["code"] == "invalid_request" and body["instance"] == URL
    assert [error["field"] for error in body["errors"]] == list(fields), body
    return body


def test_it_answers_each_items_outcome_in_order_with_its_transaction_and_the_highest_position(api):
    first, second = submit(), submit()
    response = post(api, decisions((first, "approve", {"reason": "checked"}), (second, "reject", {"reason": "duplicate", "expected_version": 1})))
    assert response.status_code == 200, response.content
    body = response.json()
    approved, rejected = body["results"]
    assert set(approved) == {"id", "action", "status", "transaction", "position"}
    assert (approved["id"], approved["action"], approved["status"]) == (str(first.id), "approve", 200)
    assert approved["transaction"]["status"] == "approved" and approved["transaction"]["decision_reason"] == "checked"
    assert approved["transaction"]["decided_by"] == "boss" and approved["transaction"]["version"] == 2
    assert (rejected["action"], rejected["status"], rejected["transaction"]["status"]) == ("reject", 200, "rejected")
    assert body["position"] == rejected["position"] == eventstore.last_position() > approved["position"]
    # The events carry this request's id, as a single decision's do.
    assert eventstore.read_stream(first.id)[-1].metadata["request_id"] == response["X-Request-ID"]


def test_it_answers_a_refused_items_problem_exactly_as_its_own_endpoint_does_and_decides_the_rest(api):
    decided, pending, fine, missing = submit(), submit(), submit(), uuid.uuid4()
    api.post(f"/api/transactions/{decided.id}/approve/", {}, format="json")
    response = post(api, decisions((decided, "approve"), (missing, "reject", {"reason": "x"}), (pending, "approve", {"expected_version": 3}), (fine, "approve")))
    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["status"], set(r)) for r in results] == [
        (409, {"id", "action", "status", "problem"}),
        (404, {"id", "action", "status", "problem"}),
        (409, {"id", "action", "status", "problem"}),
        (200, {"id", "action", "status", "transaction", "position"}),
    ]
    alone = [
        api.post(f"/api/transactions/{decided.id}/approve/", {}, format="json"),
        api.post(f"/api/transactions/{missing}/reject/", {"reason": "x"}, format="json"),
        api.post(f"/api/transactions/{pending.id}/approve/", {"expected_version": 3}, format="json"),
    ]
    assert [r["problem"] for r in results[:3]] == [single.json() for single in alone]
    assert [r["problem"]["code"] for r in results[:3]] == ["transaction_not_pending", "transaction_not_found", "stale_version"]
    assert Transaction.objects.get(pk=fine.id).status == "approved"


def test_it_refuses_only_the_item_that_rejects_without_a_reason(api):
    blank, fine = submit(), submit()
    response = post(api, decisions((blank, "reject", {"reason": "  "}), (blank, "reject"), (fine, "reject", {"reason": "wrong payee"})))
    first, second, third = response.json()["results"]
    for refused in (first, second):
        assert refused["status"] == 400 and refused["problem"]["code"] == "invalid_request"
        assert [error["field"] for error in refused["problem"]["errors"]] == ["reason"]
    assert third["status"] == 200
    assert Transaction.objects.get(pk=blank.id).status == "pending"


def test_it_runs_a_duplicate_id_after_the_first_so_the_second_gets_its_own_409(api):
    txn = submit()
    response = post(api, decisions((txn, "approve"), (txn, "approve")))
    assert [r["status"] for r in response.json()["results"]] == [200, 409]
    assert response.json()["results"][1]["problem"]["code"] == "transaction_not_pending"
    assert [e.type for e in eventstore.read_stream(txn.id)] == ["TransactionSubmitted", "TransactionApproved"]


def test_it_answers_null_position_when_no_item_was_decided(api):
    response = post(api, decisions((uuid.uuid4(), "approve")))
    assert response.status_code == 200
    assert response.json()["position"] is None and response.json()["results"][0]["status"] == 404


def test_it_keeps_a_unicode_reason_as_sent(api):
    txn, reason = submit(), "Geprüft ✓ — 检查完毕 🧾\nsecond line"
    response = post(api, decisions((txn, "reject", {"reason": reason})))
    assert response.json()["results"][0]["transaction"]["decision_reason"] == reason
    assert eventstore.read_stream(txn.id)[-1].data["reason"] == reason


ID = "3f0c2a1e-5b7d-4c8e-9f10-2a3b4c5d6e7f"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["decisions"]),
        ({"decisions": None}, ["decisions"]),
        ({"decisions": "approve all"}, ["decisions"]),
        ({"decisions": {"id": ID, "action": "approve"}}, ["decisions"]),
        ({"decisions": []}, ["decisions"]),
        ({"decisions": [{"id": ID, "action": "approve"}] * 501}, ["decisions"]),
        ({"decisions": ["approve", None, 3]}, ["decisions[0]", "decisions[1]", "decisions[2]"]),
        ({"decisions": [{"action": "approve"}]}, ["decisions[0].id"]),
        ({"decisions": [{"id": "not-a-uuid", "action": "approve"}]}, ["decisions[0].id"]),
        ({"decisions": [{"id": 5, "action": "approve"}]}, ["decisions[0].id"]),
        ({"decisions": [{"id": ID.replace("-", ""), "action": "approve"}]}, ["decisions[0].id"]),
        ({"decisions": [{"id": ID, "action": "approve"}] * 3 + [{"id": ID, "action": "delete"}]}, ["decisions[3].action"]),
        ({"decisions": [{"id": ID}]}, ["decisions[0].action"]),
        ({"decisions": [{"id": ID, "action": ["approve"]}]}, ["decisions[0].action"]),
        ({"decisions": [{"id": ID, "action": "APPROVE"}]}, ["decisions[0].action"]),
        ({"decisions": [{"id": ID, "action": "reject", "reason": 5}]}, ["decisions[0].reason"]),
        ({"decisions": [{"id": ID, "action": "reject", "reason": None}]}, ["decisions[0].reason"]),
        ({"decisions": [{"id": ID, "action": "reject", "reason": "x" * 1001}]}, ["decisions[0].reason"]),
        ({"decisions": [{"id": ID, "action": "reject", "reason": "ok\x00"}]}, ["decisions[0].reason"]),
        ({"decisions": [{"id": ID, "action": "reject", "reason": "INV\u202eFDP.exe"}]}, ["decisions[0].reason"]),
        ({"decisions": [{"id": ID, "action": "approve", "expected_version": "1.0"}]}, ["decisions[0].expected_version"]),
        ({"decisions": [{"id": ID, "action": "approve", "expected_version": 0}]}, ["decisions[0].expected_version"]),
        ({"decisions": [{"id": ID, "action": "approve", "expected_version": True}]}, ["decisions[0].expected_version"]),
        ({"decisions": [{"id": ID, "action": "approve", "expected_verison": 1}]}, ["decisions[0].expected_verison"]),
        ({"decisions": [{"id": ID, "action": "approve"}], "dry_run": True}, ["dry_run"]),
        (
            {"decisions": [{"id": ID, "action": "approve"}, {"id": "x", "action": "approve"}, {"id": ID, "action": "no", "extra": 1}]},
            ["decisions[1].id", "decisions[2].action", "decisions[2].extra"],
        ),
    ],
)
def test_it_refuses_a_malformed_body_whole_naming_every_field_at_fault_and_decides_nothing(api, body, fields):
    txn = submit()
    text = json.dumps(body).replace(ID, str(txn.id))
    log_before = eventstore.last_position()
    assert_invalid(api.post(URL, data=text, content_type="application/json"), *fields)
    assert eventstore.last_position() == log_before
    assert Transaction.objects.get(pk=txn.id).status == "pending"


def test_it_refuses_a_body_that_is_not_an_object_or_not_json(api):
    assert api.post(URL, data="[]", content_type="application/json").status_code == 400
    response = api.post(URL, data='{"decisions": [', content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "parse_error"


def test_it_needs_the_permission_to_decide(client_for, staff_user, clerk_user):
    txn = submit()
    assert client_for(None).post(URL, decisions((txn, "approve")), format="json").status_code == 401
    for user in (staff_user, clerk_user):
        response = client_for(user).post(URL, decisions((txn, "approve")), format="json")
        assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    assert Transaction.objects.get(pk=txn.id).status == "pending"


# --- Idempotency-Key for the whole request ----------------------------------------------------------------


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_it_replays_a_retry_with_the_same_key_and_appends_nothing_twice(api):
    first, second, decided = submit(), submit(), submit()
    api.post(f"/api/transactions/{decided.id}/reject/", {"reason": "earlier"}, format="json")
    body = decisions((first, "approve"), (decided, "approve"), (second, "reject", {"reason": "no"}))
    answered = post(api, body, HTTP_IDEMPOTENCY_KEY="bulk-1")
    assert [r["status"] for r in answered.json()["results"]] == [200, 409, 200]
    log_after = eventstore.last_position()
    retried = post(api, body, HTTP_IDEMPOTENCY_KEY="bulk-1")
    assert retried.status_code == 200 and retried["Idempotent-Replayed"] == "true"
    assert retried.json() == answered.json()
    assert eventstore.last_position() == log_after
    assert [len(eventstore.read_stream(txn.id)) for txn in (first, second, decided)] == [2, 2, 2]


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_it_answers_422_for_the_same_key_with_another_body_and_decides_nothing(api):
    first, second = submit(), submit()
    post(api, decisions((first, "approve")), HTTP_IDEMPOTENCY_KEY="bulk-2")
    response = post(api, decisions((second, "approve")), HTTP_IDEMPOTENCY_KEY="bulk-2")
    assert response.status_code == 422 and response.json()["code"] == "idempotency_key_reused"
    assert Transaction.objects.get(pk=second.id).status == "pending"


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_it_rolls_back_every_item_with_the_stored_answer_when_a_keyed_request_fails(api, monkeypatch):
    from core.models import IdempotencyRecord
    from transactions import bulk

    first, second = submit(), submit()
    approve = bulk.COMMANDS["approve"]

    def approve_then_fail(*, transaction_id, **kwargs):
        if transaction_id == second.id:
            raise RuntimeError("the database went away")
        return approve(transaction_id=transaction_id, **kwargs)

    monkeypatch.setitem(bulk.COMMANDS, "approve", approve_then_fail)
    api.raise_request_exception = False
    response = post(api, decisions((first, "approve"), (second, "approve")), HTTP_IDEMPOTENCY_KEY="bulk-3")
    assert response.status_code == 500
    # Under a key the batch and its answer commit together: nothing of it stays, and the key is free again.
    assert Transaction.objects.get(pk=first.id).status == "pending"
    assert not IdempotencyRecord.objects.filter(key="bulk-3").exists()
    monkeypatch.setitem(bulk.COMMANDS, "approve", approve)
    assert [r["status"] for r in post(api, decisions((first, "approve"), (second, "approve")), HTTP_IDEMPOTENCY_KEY="bulk-3").json()["results"]] == [200, 200]


# --- size ---------------------------------------------------------------------------------------------------


def _full_batch(reason: str) -> dict:
    return decisions(*[(txn, "reject", {"reason": reason, "expected_version": 1}) for txn in [submit() for _ in range(500)]])


@pytest.mark.needs_postgres
def test_it_takes_500_items_with_1000_character_reasons_in_one_request(api):
    body = _full_batch("r" * 1000)
    assert len(json.dumps(body).encode()) < 1024 * 1024
    response = post(api, body)
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 500 and {r["status"] for r in results} == {200}
    assert Transaction.objects.filter(status="rejected").count() == 500


def test_it_answers_413_for_a_body_over_one_mebibyte_and_decides_nothing(api):
    # 500 reasons of 1000 three-byte characters: about 1.5 MB of UTF-8, over the 1 MiB every body may have.
    body = json.dumps(decisions(*[(uuid.uuid4(), "reject", {"reason": "€" * 1000})] * 500), ensure_ascii=False).encode()
    assert len(body) > 1024 * 1024
    log_before = eventstore.last_position()
    response = api.post(URL, data=body, content_type="application/json")
    assert response.status_code == 413 and response.json()["code"] == "body_too_large"
    assert eventstore.last_position() == log_before


# --- reversals and the four-eyes rules, item by item ------------------------------------------------------


def test_it_mixes_approvals_rejections_and_reversals_each_answered_as_its_own_endpoint_would(api):
    from tests.factories import approved

    to_approve, to_reject, to_reverse, still_pending = submit(), submit(), approved().transaction, submit()
    response = post(
        api,
        decisions(
            (to_approve, "approve"),
            (to_reject, "reject", {"reason": "duplicate"}),
            (to_reverse, "reverse", {"reason": "refunded"}),
            (still_pending, "reverse", {"reason": "too early"}),
            (to_reverse, "reverse"),
        ),
    )
    results = response.json()["results"]
    assert [(r["status"], r.get("transaction", {}).get("status")) for r in results[:3]] == [(200, "approved"), (200, "rejected"), (200, "reversed")]
    assert results[3]["status"] == 409
    assert results[3]["problem"] == api.post(f"/api/transactions/{still_pending.id}/reverse/", {"reason": "too early"}, format="json").json()
    assert results[4]["status"] == 400 and [e["field"] for e in results[4]["problem"]["errors"]] == ["reason"]
    assert eventstore.read_stream(to_reverse.id)[-1].type == "TransactionReversed"
    assert response.json()["position"] == results[2]["position"]


def test_it_lets_an_approval_and_its_reversal_run_in_one_batch_in_order(api):
    txn = submit()
    response = post(api, decisions((txn, "approve"), (txn, "reverse", {"reason": "approved by mistake"})))
    assert [r["status"] for r in response.json()["results"]] == [200, 200]
    assert [e.type for e in eventstore.read_stream(txn.id)] == ["TransactionSubmitted", "TransactionApproved", "TransactionReversed"]


def test_it_refuses_the_submitters_own_approval_item_by_item_with_the_single_endpoints_403(api, admin_user):
    own, theirs = submit(actor=admin_user.get_username()), submit()
    response = post(api, decisions((own, "approve"), (theirs, "approve"), (own, "reject", {"reason": "withdrawn"})))
    results = response.json()["results"]
    assert [r["status"] for r in results] == [403, 200, 200]
    assert results[0]["problem"]["code"] == "own_submission"
    refused_alone = api.post(f"/api/transactions/{submit(actor=admin_user.get_username()).id}/approve/", {}, format="json").json()
    assert {k: v for k, v in results[0]["problem"].items() if k not in ("detail", "instance")} == {
        k: v for k, v in refused_alone.items() if k not in ("detail", "instance")
    }


def test_it_records_a_first_approval_under_dual_control_and_refuses_the_same_approver_again(api, settings):
    from decimal import Decimal

    settings.APPROVAL_DUAL_CONTROL = {"EUR": Decimal("100.00")}
    large = submit(amount="250.00")
    response = post(api, decisions((large, "approve"), (large, "approve")))
    first, again = response.json()["results"]
    assert (first["status"], first["transaction"]["status"]) == (200, "awaiting_second_approval")
    assert (again["status"], again["problem"]["code"]) == (403, "second_approver_required")
    assert eventstore.read_stream(large.id)[-1].type == "TransactionApprovalRecorded"


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("key", [None, "bulk-once"])
def test_it_wakes_the_projector_once_for_the_whole_request_with_or_without_a_key(api, key):
    from core.signals import events_committed

    txns = [submit() for _ in range(5)]
    heard = []
    receiver = lambda sender, last_position, events, **kwargs: heard.append((last_position, len(events)))  # noqa: E731
    events_committed.connect(receiver)
    try:
        response = post(api, decisions(*[(txn, "approve") for txn in txns]), **({"HTTP_IDEMPOTENCY_KEY": key} if key else {}))
    finally:
        events_committed.disconnect(receiver)
    assert heard == [(response.json()["position"], 5)]
