"""Input and output serializers for the transactions API: validate in, plain JSON out."""
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.fields import AwareDateTimeField, ExponentNumber, StrictIntegerField, StrictTextField
from core.money import MAX_AMOUNT_MINOR, MoneyError, format_amount, format_minor_units, normalize_currency, parse_amount
from core.validation import occurred_at_problem
from transactions.models import Transaction

# The shape core.money accepts, so the amount can be judged before the currency is known.
_DECIMAL_STRING = re.compile(r"-?[0-9]+(\.[0-9]+)?")


@extend_schema_field({"type": "string", "pattern": r"^\d+(\.\d+)?$", "example": "12.50"})
class AmountField(serializers.Field):
    """A decimal string (or an exactly parsed JSON number), checked against the sibling currency.

    The currency check lives here rather than in Serializer.validate(), which DRF skips as soon
    as any field failed: a body with a bad amount and a bad reference must hear about both.
    """

    default_error_messages = {
        "invalid": 'amount must be a decimal string such as "12.50"',
        "exponent": 'amount must not use an exponent (1e3); send a decimal string such as "1000.00"',
        "positive": "amount must be greater than zero",
    }

    def to_internal_value(self, data):
        if isinstance(data, ExponentNumber):
            self.fail("exponent")
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, int):
            amount = Decimal(data)
        elif isinstance(data, Decimal):
            amount = data
        elif isinstance(data, str) and _DECIMAL_STRING.fullmatch(data):
            amount = Decimal(data)
        else:
            self.fail("invalid")
        if amount <= 0:
            self.fail("positive")
        currency = self._currency()
        if currency is None:
            return amount  # the currency field reports its own error
        try:
            return parse_amount(amount, currency)
        except MoneyError as exc:
            raise serializers.ValidationError(str(exc), code="invalid") from None
        except InvalidOperation:
            # Past 60 digits Decimal cannot even quantize it: far beyond the limit.
            raise serializers.ValidationError(
                f"amount must be at most {format_minor_units(MAX_AMOUNT_MINOR, currency)} {currency}", code="invalid"
            ) from None

    def _currency(self) -> str | None:
        raw = getattr(self.parent, "initial_data", {}).get("currency")
        try:
            return normalize_currency(raw)
        except MoneyError:
            return None

    def to_representation(self, value):
        return str(value)


class StrictObject(serializers.Serializer):
    """A JSON object with only the declared keys: a misspelt `expected_verison` must not be ignored."""

    default_error_messages = {"unknown": "Unknown field."}

    def to_internal_value(self, data):
        unknown = {key: [self.error_messages["unknown"]] for key in data if key not in self.fields} if isinstance(data, Mapping) else {}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if unknown and isinstance(exc.detail, dict):
                # Every field at fault at once, the unknown ones included.
                raise serializers.ValidationError({**exc.detail, **unknown}, code="unknown") from None
            raise
        if unknown:
            raise serializers.ValidationError(unknown, code="unknown")
        return value


class TransactionCreateInput(StrictObject):
    """A new transaction; a misspelt `ocurred_at` is refused, never left to default to now."""

    amount = AmountField()
    currency = serializers.CharField(max_length=3, min_length=3)
    occurred_at = AwareDateTimeField(required=False)
    reference = StrictTextField(max_length=140, required=False, allow_blank=True, default="")
    description = StrictTextField(max_length=1000, multiline=True, required=False, allow_blank=True, default="")

    def validate_currency(self, value):
        try:
            return normalize_currency(value)
        except MoneyError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_occurred_at(self, value):
        problem = occurred_at_problem(value)
        if problem:
            raise serializers.ValidationError(f"occurred_at {problem}")
        return value


class ApproveInput(StrictObject):
    reason = StrictTextField(max_length=1000, multiline=True, required=False, allow_blank=True, default="")
    expected_version = StrictIntegerField(min_value=1, required=False)


class RejectInput(StrictObject):
    reason = StrictTextField(max_length=1000, multiline=True)
    expected_version = StrictIntegerField(min_value=1, required=False)


class ReverseInput(StrictObject):
    reason = StrictTextField(max_length=1000, multiline=True, help_text="Why: a refund, a chargeback, approved by mistake")
    expected_version = StrictIntegerField(min_value=1, required=False)


class TransactionOutput(serializers.ModelSerializer):
    amount = serializers.SerializerMethodField(help_text='Decimal string with the currency\'s minor digits, e.g. "12.50"')

    class Meta:
        model = Transaction
        fields = [
            "id",
            "amount",
            "currency",
            "occurred_at",
            "reference",
            "description",
            "status",
            "version",
            "created_at",
            "decided_at",
            "decided_by",
            "decision_reason",
            "submitted_by",
            "first_approved_by",
        ]
        extra_kwargs = {
            "status": {"help_text": "pending, awaiting_second_approval (dual control: one approval recorded), approved, "
                                    "rejected or reversed"},
            "decided_by": {"help_text": "Who made the latest decision (approve, reject or reverse)"},
            "submitted_by": {"help_text": 'Who submitted it ("" when the log does not say); they cannot approve it'},
            "first_approved_by": {"help_text": 'Dual control: who recorded the first approval; "" unless one was recorded'},
        }

    def get_amount(self, obj) -> str:
        return format_amount(obj.amount, obj.currency)


def _iso(value):
    """A datetime as TransactionOutput (DRF's DateTimeField) writes it: in the current time zone, UTC as `Z`."""
    if value is None:
        return None
    text = value.astimezone(timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def transaction_payload(txn: Transaction) -> dict:
    """TransactionOutput's JSON, built directly: a ModelSerializer costs about 1 ms of introspection per
    instance, the largest Python cost of an approval (TransactionOutput stays as the schema's description)."""
    return {
        "id": str(txn.id),
        "amount": format_amount(txn.amount, txn.currency),
        "currency": txn.currency,
        "occurred_at": _iso(txn.occurred_at),
        "reference": txn.reference,
        "description": txn.description,
        "status": txn.status,
        "version": txn.version,
        "created_at": _iso(txn.created_at),
        "decided_at": _iso(txn.decided_at),
        "decided_by": txn.decided_by,
        "decision_reason": txn.decision_reason,
        "submitted_by": txn.submitted_by,
        "first_approved_by": txn.first_approved_by,
    }


class DecisionOutput(TransactionOutput):
    """Schema only: the transaction plus the position of the decision's event."""

    position = serializers.IntegerField(read_only=True)

    class Meta(TransactionOutput.Meta):
        fields = TransactionOutput.Meta.fields + ["position"]
