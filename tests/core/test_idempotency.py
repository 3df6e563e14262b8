"""Idempotency-Key on the transaction commands: one run per user and key, retries replay the first answer."""
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta

import psycopg
import pytest
from django.db import connection, connections
from django.utils import timezone

from core import eventstore, idempotency
from core.errors import Conflict, DomainError
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


def in_progress(user, key, *, fingerprint="0" * 64, lease=timedelta(seconds=10)):
    """A record as a request that is still running (or died) leaves it."""
    return IdempotencyRecord.objects.create(
        user_id=user.pk, key=key, fingerprint=fingerprint, locked_until=timezone.now() + lease, lease_token=uuid.uuid4()
    )


def test_a_key_still_in_progress_is_a_409_and_runs_nothing(api, admin_user):
    in_progress(admin_user, "busy")
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


def test_a_refusal_raised_after_the_append_is_stored_and_the_commands_writes_are_undone(api, monkeypatch):
    original = eventstore.append

    def append_then_refuse(**kwargs):
        original(**kwargs)
        raise Conflict("refused after appending")

    monkeypatch.setattr(eventstore, "append", append_then_refuse)
    refused = create(api, key="k")
    assert_problem(refused, 409, "conflict")
    # The command was a savepoint of the unit of work: its event and row are gone, its answer is kept.
    assert eventstore.read_all() == [] and not Transaction.objects.exists()
    assert IdempotencyRecord.objects.get().status_code == 409

    monkeypatch.undo()
    assert_replay_of(create(api, key="k"), refused)


# --- leases: requests that die, and retries that take over ---------------------------------


class Crash(BaseException):
    """The process dies here: none of our except clauses run, the database rolls back what was open."""


class Boom(Exception):
    """An unexpected error: answered 500."""


def raw_connection():
    params = connection.settings_dict
    return psycopg.connect(
        host=params["HOST"], port=params["PORT"] or 5432, user=params["USER"], password=params["PASSWORD"] or None, dbname=params["NAME"]
    )


def in_thread(request, *args, **kwargs):
    try:
        return request(*args, **kwargs)
    finally:
        connections.close_all()


def fail_once_after(monkeypatch, owner, name, error):
    original = getattr(owner, name)
    armed = [True]

    def then_fail(*args, **kwargs):
        result = original(*args, **kwargs)
        if armed:
            armed.pop()
            raise error
        return result

    monkeypatch.setattr(owner, name, then_fail)


def test_a_key_whose_lease_ran_out_is_taken_over_by_a_retry_with_the_same_body(api, monkeypatch):
    fail_once_after(monkeypatch, idempotency, "_claim", Crash())
    with pytest.raises(Crash):
        create(api, key="died")
    died = IdempotencyRecord.objects.get()
    assert died.status_code is None and died.locked_until > timezone.now()
    assert_problem(create(api, key="died"), 409, "idempotency_key_in_use")

    IdempotencyRecord.objects.update(locked_until=timezone.now() - timedelta(milliseconds=1))
    retry = create(api, key="died")

    assert retry.status_code == 201 and not retry.has_header("Idempotent-Replayed")
    record = IdempotencyRecord.objects.get()
    assert record.lease_token != died.lease_token and record.status_code == 201
    assert Transaction.objects.count() == 1
    assert_replay_of(create(api, key="died"), retry)


def test_a_key_whose_lease_ran_out_is_still_a_422_for_another_body(api, admin_user):
    in_progress(admin_user, "died", lease=timedelta(seconds=-1))
    assert_problem(create(api, key="died"), 422, "idempotency_key_reused")
    assert not Transaction.objects.exists()


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_two_retries_cannot_both_take_over_an_expired_lease(admin_user, client_for, monkeypatch):
    fail_once_after(monkeypatch, idempotency, "_claim", Crash())
    with pytest.raises(Crash):
        create(client_for(admin_user), key="k")
    IdempotencyRecord.objects.update(locked_until=timezone.now() - timedelta(seconds=1))
    record_id = IdempotencyRecord.objects.get().pk

    with raw_connection() as other, ThreadPoolExecutor(1) as pool:
        # Another retry is taking the key over: it holds the row while it renews the lease.
        other.execute("SELECT 1 FROM core_idempotency_record WHERE id = %s FOR UPDATE", [record_id])
        retry = pool.submit(in_thread, create, client_for(admin_user), key="k")
        time.sleep(0.3)
        assert not retry.done()
        other.execute(
            "UPDATE core_idempotency_record SET locked_until = now() + interval '10 seconds', lease_token = %s WHERE id = %s",
            [uuid.uuid4(), record_id],
        )
        other.commit()
        response = retry.result(timeout=10)

    assert_problem(response, 409, "idempotency_key_in_use")
    assert not Transaction.objects.exists()


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_request_that_outlives_its_lease_stores_nothing_and_the_retry_that_took_over_wins(admin_user, client_for, monkeypatch, settings):
    settings.IDEMPOTENCY_LEASE_SECONDS = 1
    entered, release = threading.Event(), threading.Event()
    original = services.transaction_submit
    calls = []

    def first_one_stalls(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            entered.set()
            assert release.wait(10)
        return original(**kwargs)

    monkeypatch.setattr(services, "transaction_submit", first_one_stalls)
    with ThreadPoolExecutor(1) as pool:
        stalled = pool.submit(in_thread, create, client_for(admin_user), key="slow")
        assert entered.wait(10)
        time.sleep(1.2)  # the stalled request's lease runs out
        retry = create(client_for(admin_user), key="slow")
        release.set()
        late = stalled.result(timeout=10)

    assert retry.status_code == 201 and not retry.has_header("Idempotent-Replayed")
    # The stalled request did run its command, but no longer held the key: all of it rolled back.
    assert len(calls) == 2
    assert_problem(late, 409, "idempotency_key_in_use")
    assert Transaction.objects.count() == 1 and len(eventstore.read_all()) == 1
    assert_replay_of(create(client_for(admin_user), key="slow"), retry)


POINTS = ["after_claim", "after_append", "after_command", "during_storing", "after_commit"]


def fail_at(monkeypatch, point, command, error):
    """Make the next request fail at `point`, once."""
    if point == "after_commit":
        original = idempotency.unit_of_work
        armed = [True]

        @contextmanager
        def unit_then_fail():
            with original():
                yield
            if armed:
                armed.pop()
                raise error

        monkeypatch.setattr(idempotency, "unit_of_work", unit_then_fail)
        return
    owner, name = {
        "after_claim": (idempotency, "_claim"),
        "after_append": (eventstore, "append"),
        "after_command": (services, command),
        "during_storing": (idempotency, "_complete"),  # the UPDATE ran, the commit did not
    }[point]
    fail_once_after(monkeypatch, owner, name, error)


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["crash", "error"])
@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("endpoint", ["create", "approve"])
def test_a_request_that_dies_at_any_point_runs_exactly_once_when_retried(admin_user, client_for, monkeypatch, settings, endpoint, point, kind):
    settings.IDEMPOTENCY_LEASE_SECONDS = 1
    client = client_for(admin_user)
    client.raise_request_exception = False
    if endpoint == "create":
        command, expected_status = "transaction_submit", 201

        def send():
            return create(client, key="k")

    else:
        command, expected_status = "transaction_approve", 200
        txn = submit()

        def send():
            return approve(client, txn.id, "k", {"reason": "checked"})

    events_before = len(eventstore.read_all())
    fail_at(monkeypatch, point, command, Crash() if kind == "crash" else Boom())

    if kind == "crash":
        with pytest.raises(Crash):
            send()
        connection.close()  # the process is gone, and its connection with it
    else:
        assert send().status_code == 500

    committed = point == "after_commit"
    assert len(eventstore.read_all()) == events_before + committed
    if committed:
        answer = send()
        assert answer.status_code == expected_status and answer["Idempotent-Replayed"] == "true"
    else:
        # Released at once after an error we saw; otherwise held until its lease runs out.
        released = kind == "error" and point != "after_claim"
        if not released:
            busy = send()
            assert_problem(busy, 409, "idempotency_key_in_use")
            assert busy["Retry-After"] == "1"
            time.sleep(1.1)
        answer = send()
        assert answer.status_code == expected_status, answer.content
        assert not answer.has_header("Idempotent-Replayed")

    assert len(eventstore.read_all()) == events_before + 1
    body = answer.json()
    if endpoint == "create":
        assert Transaction.objects.get().id == uuid.UUID(body["id"])
    else:
        [decision] = [e for e in eventstore.read_stream(txn.id) if e.type == "TransactionApproved"]
        assert body["position"] == decision.position and body["status"] == "approved"
    again = send()
    assert again.content == answer.content and again["Idempotent-Replayed"] == "true"


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_it_claims_a_new_key_in_one_statement_committed_on_its_own(admin_user):
    from django.test.utils import CaptureQueriesContext

    from core.db import prepared_name

    with CaptureQueriesContext(connection) as queries:
        record = idempotency._claim(admin_user.pk, "one-trip", "f" * 64)
    # One statement: the claim's INSERT, prepared in the same query the first time a connection sends it.
    [statement] = [q["sql"] for q in queries.captured_queries]
    assert f"EXECUTE {prepared_name(idempotency._CLAIM_SQL)}(" in statement
    stored = IdempotencyRecord.objects.get(pk=record.pk)
    assert (stored.key, stored.fingerprint, stored.lease_token, stored.status_code) == ("one-trip", "f" * 64, record.lease_token, None)
    assert stored.locked_until > timezone.now()


def test_it_refuses_to_claim_inside_a_transaction_of_the_caller(admin_user):
    from django.db import transaction

    with pytest.raises(RuntimeError, match="durable"):
        with transaction.atomic():
            idempotency._claim(admin_user.pk, "nested", "f" * 64)


def post_raw(client, path, raw: bytes, key: str):
    return client.post(path, raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (b'{"reason": 12.5}', b'{"reason": "12.5"}'),
        (b'{"expected_version": 1.0}', b'{"expected_version": "1.0"}'),
        (b'{"expected_version": 1}', b'{"expected_version": "1"}'),
        (b'{"reason": "a", "reason": "b"}', b'{"reason": "b"}'),
        (b'{"reason": null}', b'{"reason": "None"}'),
    ],
)
def test_it_tells_a_fixed_body_from_the_refused_one_instead_of_replaying_the_old_error(api, first, second):
    txn = submit()
    path = f"/api/transactions/{txn.id}/approve/"
    post_raw(api, path, first, "k")
    assert_problem(post_raw(api, path, second, "k"), 422, "idempotency_key_reused")
    assert Transaction.objects.get(pk=txn.id).version <= 2


def test_it_tells_a_number_written_with_an_exponent_from_the_same_number_without(api):
    assert post_raw(api, "/api/transactions/", b'{"amount": 10.5e0, "currency": "EUR"}', "c").status_code == 400
    assert_problem(post_raw(api, "/api/transactions/", b'{"amount": 10.5, "currency": "EUR"}', "c"), 422, "idempotency_key_reused")
    assert not Transaction.objects.exists()


def test_it_still_replays_the_same_json_with_other_spacing_key_order_and_escapes(api):
    first = post_raw(api, "/api/transactions/", b'{"amount": "12.50", "currency": "EUR", "reference": "caf\\u00e9"}', "k")
    replay = post_raw(api, "/api/transactions/", '{ "reference":"café" ,\n"currency":"EUR","amount":"12.50"}'.encode(), "k")
    assert_replay_of(replay, first)
    assert Transaction.objects.count() == 1
