"""Idempotency-Key on the transaction commands: one run per user and key, retries replay the first answer."""
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from core import eventstore
from core.errors import DomainError
from core.idempotency import idempotency_records_purge
from core.models import IdempotencyRecord
from transactions import services
from transactions.models import Transaction
from tests.factories import submit

pytestmark = pytest.mark.django_db
PROBLEM = "application/problem+json"
BODY = {"amount": "12.50", "currency": "EUR", "occurred_at": "2026-11-18T09:30:00+01:00", "reference": "INV-7"}


def create(client, key=None, **overrides):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post("/api/transactions/", {**BODY, **overrides}, format="json", **headers)


def approve(client, txn_id, key, body=None):
    return client.post(f"/api/transactions/{txn_id}/approve/", body or {}, format="json", HTTP_IDEMPOTENCY_KEY=key)


def assert_replay_of(replay, first):
    assert replay.status_code == first.status_code
    assert replay.content == first.content
    assert replay["Content-Type"] == first["Content-Type"]
    assert replay["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")


def assert_problem(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    assert response.json()["code"] == code
    return response.json()


def test_a_retried_create_replays_the_201_and_appends_nothing(api):
    first = create(api, key="order-1")
    assert first.status_code == 201, first.content
    assert first.json()["amount"] == "12.50"  # DRF still parsed the body that the fingerprint read
    events = len(eventstore.read_all())

    replay = create(api, key="order-1")

    assert_replay_of(replay, first)
    assert len(eventstore.read_all()) == events == 1
    assert Transaction.objects.count() == 1


def test_the_same_body_in_another_key_order_and_spacing_is_the_same_request(api):
    first = api.post("/api/transactions/", b'{"currency": "EUR", "amount": 12.50}', content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")
    replay = api.post("/api/transactions/", b'{"amount":12.50,"currency":"EUR"}', content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")
    assert_replay_of(replay, first)
    assert Transaction.objects.count() == 1


def test_a_retried_approval_replays_the_200_with_its_position(api):
    txn = submit()
    first = approve(api, txn.id, "decide-1", {"reason": "fine"})
    assert first.status_code == 200
    assert first.json()["position"] == eventstore.read_stream(txn.id)[-1].position

    replay = approve(api, txn.id, "decide-1", {"reason": "fine"})

    assert_replay_of(replay, first)
    assert [e.type for e in eventstore.read_stream(txn.id)] == ["TransactionSubmitted", "TransactionApproved"]


def test_a_retried_rejection_replays_the_200(api):
    txn = submit()
    path = f"/api/transactions/{txn.id}/reject/"
    first = api.post(path, {"reason": "duplicate"}, format="json", HTTP_IDEMPOTENCY_KEY="r")
    replay = api.post(path, {"reason": "duplicate"}, format="json", HTTP_IDEMPOTENCY_KEY="r")
    assert first.status_code == 200
    assert_replay_of(replay, first)
    assert len(eventstore.read_stream(txn.id)) == 2


def test_a_409_refusal_is_stored_and_replayed_as_a_problem(api):
    txn = submit()
    assert approve(api, txn.id, "first").status_code == 200
    refused = approve(api, txn.id, "second")
    assert_problem(refused, 409, "transaction_not_pending")

    replay = approve(api, txn.id, "second")

    assert_replay_of(replay, refused)
    assert replay["Content-Type"] == PROBLEM
    assert len(eventstore.read_stream(txn.id)) == 2


def test_a_400_refusal_is_replayed_even_after_the_cause_is_gone(api):
    refused = create(api, key="bad", amount="0")
    assert refused.status_code == 400
    replay = create(api, key="bad", amount="0")
    assert_replay_of(replay, refused)
    assert not Transaction.objects.exists()


def test_the_same_key_with_another_body_is_a_422_and_runs_nothing(api):
    assert create(api, key="order-1").status_code == 201
    body = assert_problem(create(api, key="order-1", amount="99.00"), 422, "idempotency_key_reused")
    assert "Idempotency-Key" in body["detail"]
    assert Transaction.objects.count() == 1


def test_a_different_decimal_text_is_another_body(api):
    api.post("/api/transactions/", b'{"amount": 12.50, "currency": "EUR"}', content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")
    other = api.post("/api/transactions/", b'{"amount": 12.5, "currency": "EUR"}', content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")
    assert_problem(other, 422, "idempotency_key_reused")


def test_the_same_key_and_body_on_another_path_is_a_422_and_runs_nothing(api):
    decided, other = submit(), submit()
    assert approve(api, decided.id, "shared", {"reason": "ok"}).status_code == 200
    assert_problem(approve(api, other.id, "shared", {"reason": "ok"}), 422, "idempotency_key_reused")
    rejecting = api.post(f"/api/transactions/{decided.id}/reject/", {"reason": "ok"}, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    assert_problem(rejecting, 422, "idempotency_key_reused")
    assert Transaction.objects.get(pk=other.id).status == "pending"


def test_two_users_may_use_the_same_key_independently(api, client_for, clerk_user):
    clerk = client_for(clerk_user)
    mine = create(api, key="same")
    theirs = create(clerk, key="same", amount="99.00")
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]
    assert not theirs.has_header("Idempotent-Replayed")
    assert_replay_of(create(clerk, key="same", amount="99.00"), theirs)
    assert Transaction.objects.count() == 2


@pytest.mark.parametrize("key", ["x" * 256, "", "tab\there", "café"])
def test_a_bad_key_is_a_400_naming_the_header(api, key):
    body = assert_problem(create(api, key=key), 400, "invalid_request")
    assert "Idempotency-Key" in [error["field"] for error in body["errors"]]
    assert not Transaction.objects.exists() and not IdempotencyRecord.objects.exists()


def test_a_key_of_255_printable_characters_is_accepted(api):
    assert create(api, key="~ " + "x" * 253).status_code == 201


def test_a_request_without_the_header_runs_every_time(api):
    first, second = create(api), create(api)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert not second.has_header("Idempotent-Replayed")
    assert Transaction.objects.count() == 2 and not IdempotencyRecord.objects.exists()


def test_a_key_still_in_progress_is_a_409_and_runs_nothing(api, admin_user):
    IdempotencyRecord.objects.create(user_id=admin_user.pk, key="busy", fingerprint="0" * 64)
    response = create(api, key="busy")
    assert_problem(response, 409, "idempotency_key_in_use")
    assert response["Retry-After"] == "1"
    assert not Transaction.objects.exists()


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_retry_while_the_first_request_runs_is_a_409_then_replays(admin_user, client_for, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    original = services.transaction_submit

    def slow_submit(**kwargs):
        entered.set()
        assert release.wait(10)
        return original(**kwargs)

    monkeypatch.setattr(services, "transaction_submit", slow_submit)

    def first_request():
        try:
            return create(client_for(admin_user), key="slow")
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(first_request)
        assert entered.wait(10)
        retry = create(client_for(admin_user), key="slow")
        release.set()
        first = running.result(timeout=10)

    assert_problem(retry, 409, "idempotency_key_in_use")
    assert first.status_code == 201
    assert_replay_of(create(client_for(admin_user), key="slow"), first)
    assert Transaction.objects.count() == 1


def test_a_record_older_than_a_day_is_not_replayed_but_replaced(api):
    first = create(api, key="old")
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))

    again = create(api, key="old")

    assert again.status_code == 201 and not again.has_header("Idempotent-Replayed")
    assert again.json()["id"] != first.json()["id"]
    assert Transaction.objects.count() == 2
    record = IdempotencyRecord.objects.get()
    assert record.created_at > timezone.now() - timedelta(minutes=1)


def test_purge_removes_records_older_than_a_day_and_keeps_the_rest(api):
    create(api, key="old")
    create(api, key="fresh")
    IdempotencyRecord.objects.filter(key="old").update(created_at=timezone.now() - timedelta(hours=24, seconds=1))

    assert idempotency_records_purge() == 1

    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]
    assert idempotency_records_purge(older_than=timedelta(0)) == 1
    assert not IdempotencyRecord.objects.exists()


class Unavailable(DomainError):
    status_code = 503
    code = "unavailable"


@pytest.mark.parametrize(("error", "status"), [(RuntimeError("bug"), 500), (Unavailable("try later"), 503)])
def test_a_failure_in_the_view_forgets_the_key_so_a_retry_runs(api, monkeypatch, error, status):
    def broken(**kwargs):
        raise error

    original = services.transaction_submit
    monkeypatch.setattr(services, "transaction_submit", broken)
    api.raise_request_exception = False
    assert create(api, key="flaky").status_code == status
    assert not IdempotencyRecord.objects.exists()

    monkeypatch.setattr(services, "transaction_submit", original)
    retry = create(api, key="flaky")
    assert retry.status_code == 201 and not retry.has_header("Idempotent-Replayed")
    assert Transaction.objects.count() == 1


def test_the_hourly_purge_task_forgets_keys_older_than_a_day(api):
    from datetime import timedelta

    from django.utils import timezone

    from core.models import IdempotencyRecord
    from core.tasks import purge_idempotency_records

    api.post("/api/transactions/", {"amount": "1.00", "currency": "EUR"}, format="json", HTTP_IDEMPOTENCY_KEY="old")
    api.post("/api/transactions/", {"amount": "2.00", "currency": "EUR"}, format="json", HTTP_IDEMPOTENCY_KEY="new")
    IdempotencyRecord.objects.filter(key="old").update(created_at=timezone.now() - timedelta(hours=25))
    assert purge_idempotency_records.delay().get() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]
