"""Stripe-style Idempotency-Key: a POST with a key runs once per user and key; retries replay its answer."""
import functools
import hashlib
import json
import re
from datetime import timedelta
from decimal import Decimal

from django.db import DatabaseError, IntegrityError, transaction
from django.http.request import RawPostDataException
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from core.errors import Conflict, DomainError, InvalidInput
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
        # Canonical JSON, so key order and spacing do not matter; Decimal keeps 12.50 apart from 12.5.
        body = json.dumps(json.loads(raw, parse_float=Decimal), sort_keys=True, separators=(",", ":"), default=str).encode()
    except (ValueError, RecursionError):
        body = raw
    return hashlib.sha256(b"\n".join([request.method.encode(), request.path.encode(), body])).hexdigest()


def _claim(user_id: int, key: str, fingerprint: str) -> IdempotencyRecord:
    """A new in-progress record, or the completed one a retry should replay."""
    records = IdempotencyRecord.objects.filter(user_id=user_id, key=key)
    # After 24 h a key is forgotten: an old record makes way for a new request.
    records.filter(created_at__lt=timezone.now() - KEEP_FOR).delete()
    try:
        # Committed on its own before the view runs, so a concurrent retry finds the key taken.
        # (Inside an outer transaction it is a savepoint, and the retry waits on the unique index instead.)
        with transaction.atomic():
            return IdempotencyRecord.objects.create(user_id=user_id, key=key, fingerprint=fingerprint)
    except IntegrityError:
        existing = records.first()
    if existing is None or existing.status_code is None:
        # Still running, or it just failed and was forgotten: either way the client should retry shortly.
        raise IdempotencyKeyInUse(f"A request with this {HEADER} is still being processed.")
    if existing.fingerprint != fingerprint:
        raise IdempotencyKeyReused(f"This {HEADER} was used for a different request.")
    return existing


def _complete(record: IdempotencyRecord, response) -> None:
    record.status_code = response.status_code
    record.content_type = response.content_type or ""
    record.response_body = JSONRenderer().render(response.data).decode()
    record.save(update_fields=["status_code", "content_type", "response_body"])


def _forget(record: IdempotencyRecord) -> None:
    # A 5xx is not an answer to the request, only news that it failed. The commands are
    # atomic, so the failure left nothing behind and running the request again is safe;
    # replaying the failure for 24 h would only keep the client from succeeding.
    try:
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
    except DatabaseError:
        pass  # the original error matters more; the key answers 409 until the purge


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
            response = view(self, request, *args, **kwargs)
        except Exception as exc:
            try:
                # Refusals (400, 404, 409) are answers like any other: render them here to store them.
                response = self.handle_exception(exc)
            except Exception:
                _forget(record)
                raise
        if response.status_code >= 500:
            _forget(record)
        else:
            _complete(record, response)
        return response

    return wrapper
