"""The transaction stream's event data checked field by field, as the read models will read it (core.event_payloads)."""
from __future__ import annotations

import uuid
from core import event_payloads
from core.event_payloads import PayloadError
from core.instants import parse_instant
from core.money import MoneyError, normalize_currency, parse_amount
from transactions import events


_JSON_KINDS = {bool: "true or false", dict: "a JSON object", list: "a JSON array"}


def _text(data: dict, name: str) -> str:
    value = data.get(name)
    if value is None:
        raise PayloadError(name, "missing")
    if not isinstance(value, str):
        raise PayloadError(name, f"must be a JSON string, not {_JSON_KINDS.get(type(value), 'a JSON number')}")
    return value


def _transaction_id(stream_id: str, data: dict) -> None:
    text = _text(data, "transaction_id")
    try:
        same = uuid.UUID(text) == uuid.UUID(stream_id)
    except ValueError:
        raise PayloadError("transaction_id", f"must be a UUID, not {text!r}") from None
    if not same:
        raise PayloadError("transaction_id", f"{text} is not the event's stream_id {stream_id}")


def _currency(data: dict) -> str:
    text = _text(data, "currency")
    try:
        code = normalize_currency(text)
    except MoneyError as exc:
        raise PayloadError("currency", str(exc)) from None
    if code != text:
        raise PayloadError("currency", f"must be upper case ({code}), as the commands store it")
    return code


def _money(data: dict, name: str, currency: str) -> None:
    # Text only: a JSON number comes back from jsonb as a float, and money is never a float.
    text = _text(data, name)
    try:
        parse_amount(text, currency)
    except MoneyError as exc:
        raise PayloadError(name, str(exc).replace("amount", name, 1)) from None


def _instant(data: dict, name: str) -> None:
    try:
        parse_instant(_text(data, name))
    except ValueError as exc:  # one form, which the projector, the rebuild and the verifier all read alike
        raise PayloadError(name, str(exc)) from None


def _checker(*, money: bool = False, occurred_at: bool = False, texts: tuple[str, ...] = (), threshold: bool = False):
    def check(stream_id: str, data: dict) -> None:
        _transaction_id(stream_id, data)
        if money:
            currency = _currency(data)
            _money(data, "amount", currency)
            if threshold:
                _money(data, "threshold", currency)
        if occurred_at:
            _instant(data, "occurred_at")
        for name in texts:
            _text(data, name)
    return check


CHECKS = {
    events.SUBMITTED: _checker(money=True, occurred_at=True, texts=("reference", "description")),
    events.APPROVED: _checker(money=True, occurred_at=True, texts=("reason",)),
    events.REJECTED: _checker(texts=("reason",)),
    events.APPROVAL_RECORDED: _checker(money=True, texts=("reason",), threshold=True),
    events.REVERSED: _checker(money=True, texts=("reason",)),
}


def register() -> None:
    for event_type, check in CHECKS.items():
        event_payloads.register(event_type, check)
