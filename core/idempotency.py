"""Stripe-style Idempotency-Key: a POST with a key runs once per user and key; retries replay its answer."""
import functools
import hashlib
import json
import re
import uuid
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.http.request import RawPostDataException
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from core import parsers
from core.db import execute_prepared, unit_of_work
from core.errors import Conflict, DomainError, InvalidInput
from core.fields import ExponentNumber
from core.models import IdempotencyRecord

HEADER = "Idempotency-Key"
KEEP_FOR = timedelta(hours=24)
_VALID_KEY = re.compile(r"[\x20-\x7e]{1,255}")


class IdempotencyKeyReused(DomainError):
    status_code = 422
    code = "idempotency_key_reused"
    title = "Idempotency key reused"


class IdempotencyKeyInUse(Conflict):
    code = "idempotency_key_in_use"
    title = "Idempotency key in use"
    retry_after = 1


def idempotency_records_purge(*, older_than: timedelta = KEEP_FOR) -> int:
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=timezone.now() - older_than).delete()
    return deleted


def _fingerprint(request) -> str:
    try:
        # Django keeps the bytes it read, so DRF can still parse request.data afterwards.
        raw = request._request.body
    except RawPostDataException:
        # A multipart form was streamed (by the CSRF check) before we got here: hash what DRF parsed.
        raw = json.dumps(request.data, sort_keys=True, default=str).encode()
    try:
        # Read as the views read it (core.parsers): a repeated key is no JSON we would act on, so
        # such a body is hashed as it came and never matches the body the client fixed it into.
        value = parsers.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        body = raw
    else:
        # Canonical, so key order, spacing and escapes do not matter; typed, so that a number is
        # never the same body as a string ("12.5"), 12.50 not as 12.5 and 1.0 not as 1e0.
        body = json.dumps(_typed(value), separators=(",", ":")).encode()
    return hashlib.sha256(b"\n".join([request.method.encode(), request.path.encode(), body])).hexdigest()


def _typed(value):
    """The parsed body as plain JSON in which every value says what it was written as."""
    if isinstance(value, dict):
        return ["object", sorted(([key, _typed(item)] for key, item in value.items()), key=lambda pair: pair[0])]
    if isinstance(value, list):
        return ["array", [_typed(item) for item in value]]
    if isinstance(value, bool) or value is None:
        return ["literal", value]
    if isinstance(value, ExponentNumber):
        return ["exponent", str(value)]
    if isinstance(value, int | Decimal):
        return ["number", str(value)]
    return ["string", value]


# A key's first use in one statement: a new record, or one older than KEEP_FOR taken over in place
# (a new lease token, so its old request can no longer store an answer). Anything else (a retry, a
# key in use or reused) returns no row and goes the long way. One round trip instead of six.
_CLAIM_SQL = f"""
    INSERT INTO {IdempotencyRecord._meta.db_table} AS r
        (user_id, key, fingerprint, created_at, locked_until, lease_token, status_code, content_type, response_body)
    VALUES (%s, %s, %s, %s, %s, %s, NULL, '', '')
    ON CONFLICT (user_id, key) DO UPDATE SET
        fingerprint = EXCLUDED.fingerprint, created_at = EXCLUDED.created_at, locked_until = EXCLUDED.locked_until,
        lease_token = EXCLUDED.lease_token, status_code = NULL, content_type = '', response_body = ''
    WHERE r.created_at < %s
    RETURNING r.id"""


def _claim_new(user_id: int, key: str, fingerprint: str, now, lease: dict) -> IdempotencyRecord | None:
    """The fresh record leased to this request, or None if the key has a live record."""
    from contextlib import nullcontext

    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    params = [user_id, key, fingerprint, now, lease["locked_until"], lease["lease_token"], now - KEEP_FOR]
    # Alone, the statement commits on its own; inside an atomic block, durable=True refuses it as the long way does.
    with transaction.atomic(durable=True) if connection.in_atomic_block else nullcontext():
        with connection.cursor() as cursor:
            execute_prepared(cursor, _CLAIM_SQL, params)  # planned once per connection (core/db.py)
            row = cursor.fetchone()
    if row is None:
        return None
    record = IdempotencyRecord(id=row[0], user_id=user_id, key=key, fingerprint=fingerprint, created_at=now, **lease)
    record._state.adding, record._state.db = False, connection.alias
    return record


def _claim(user_id: int, key: str, fingerprint: str) -> IdempotencyRecord:
    """A record leased to this request (new, or taken over), or the completed one a retry should replay.

    Committed on its own before the view runs, so a concurrent retry finds the key taken.
    """
    now = timezone.now()
    lease = {"locked_until": now + timedelta(seconds=settings.IDEMPOTENCY_LEASE_SECONDS), "lease_token": uuid.uuid4()}
    fresh = _claim_new(user_id, key, fingerprint, now, lease)
    if fresh is not None:
        return fresh
    records = IdempotencyRecord.objects.filter(user_id=user_id, key=key)
    with transaction.atomic(durable=True):
        # After 24 h a key is forgotten: an old record makes way for a new request.
        records.filter(created_at__lt=now - KEEP_FOR).delete()
        try:
            with transaction.atomic():
                return IdempotencyRecord.objects.create(user_id=user_id, key=key, fingerprint=fingerprint, **lease)
        except IntegrityError:
            pass
        # The row lock makes two retries that both find an expired lease take turns:
        # the second then sees the first one's live lease.
        existing = records.select_for_update().first()
        if existing is None:
            # Released by a request that just failed: the client may retry at once.
            raise IdempotencyKeyInUse(f"A request with this {HEADER} was still being processed.")
        if existing.status_code is None and existing.locked_until is not None and existing.locked_until > now:
            raise IdempotencyKeyInUse(f"A request with this {HEADER} is still being processed.")
        if existing.fingerprint != fingerprint:
            raise IdempotencyKeyReused(f"This {HEADER} was used for a different request.")
        if existing.status_code is None:
            # Its request died without an answer (its lease ran out): this retry runs it instead.
            # Should the old one still finish, it no longer holds the token and rolls back.
            for field, value in lease.items():
                setattr(existing, field, value)
            existing.save(update_fields=list(lease))
        return existing


def _complete(record: IdempotencyRecord, response) -> None:
    """Store the answer, inside the unit of work, if this request still holds the lease."""
    stored = IdempotencyRecord.objects.filter(pk=record.pk, lease_token=record.lease_token, status_code__isnull=True).update(
        status_code=response.status_code,
        content_type=response.content_type or "",
        response_body=JSONRenderer().render(response.data).decode(),
        locked_until=None,
    )
    if stored != 1:
        raise _LeaseLost


def _release(record: IdempotencyRecord) -> None:
    # A 5xx is not an answer to the request, only news that it failed. The unit of work
    # rolled back, so nothing is left behind and running the request again is safe;
    # replaying the failure for 24 h would only keep the client from succeeding.
    try:
        IdempotencyRecord.objects.filter(pk=record.pk, lease_token=record.lease_token, status_code__isnull=True).delete()
    except DatabaseError:
        pass  # the original error matters more; the key is retryable once the lease runs out


class _LeaseLost(Exception):
    """Another request took the key over after this one's lease ran out."""


class _NotAnAnswer(Exception):
    """The view answered with a 5xx: roll the unit back, forget the key, send the response."""

    def __init__(self, response):
        self.response = response


def _replay(record: IdempotencyRecord) -> Response:
    body = json.loads(record.response_body) if record.response_body else None
    response = Response(body, status=record.status_code, content_type=record.content_type or None)
    response["Idempotent-Replayed"] = "true"
    return response


def idempotent(view):
    """Wrap a DRF view method; DRF has authenticated the user before it is called."""

    @functools.wraps(view)
    def wrapper(self, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        # Keys are scoped to a user; these views admit no anonymous callers, but if one did it has no scope.
        if key is None or not request.user.is_authenticated:
            return view(self, request, *args, **kwargs)
        if not _VALID_KEY.fullmatch(key):
            raise InvalidInput(HEADER, f"{HEADER} must be 1 to 255 printable ASCII characters.")
        record = _claim(request.user.pk, key, _fingerprint(request))
        if record.status_code is not None:
            return _replay(record)
        try:
            # The command and its stored answer commit together or not at all: no crash
            # in between can leave a transaction without its answer, or an answer without it.
            with unit_of_work():
                response = _answer(self, view, request, args, kwargs)
                if response.status_code >= 500:
                    raise _NotAnAnswer(response)
                _complete(record, response)
        except _LeaseLost:
            raise IdempotencyKeyInUse(f"A request with this {HEADER} is being processed by a retry.") from None
        except _NotAnAnswer as failed:
            _release(record)
            return failed.response
        except Exception:
            _release(record)
            raise
        return response

    return wrapper


def _answer(self, view, request, args, kwargs):
    try:
        return view(self, request, *args, **kwargs)
    except Exception as exc:
        # Refusals (400, 404, 409) are answers like any other: render them here to store them.
        # The command ran as a savepoint of the unit of work, so its writes are already undone.
        return self.handle_exception(exc)
