"""Input and output serializers for the transactions API: validate in, plain JSON out."""
from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.money import MoneyError, format_amount, normalize_currency, parse_amount
from transactions.models import Transaction


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 datetime that must carry its UTC offset: a naive one is ambiguous."""

    default_error_messages = {"naive": "Datetime must include a UTC offset, e.g. 2026-11-21T09:30:00+01:00."}

    def enforce_timezone(self, value):
        if value.tzinfo is None:
            self.fail("naive")
        return super().enforce_timezone(value)


@extend_schema_field({"type": "string", "pattern": r"^\d+(\.\d+)?$", "example": "12.50"})
class AmountField(serializers.Field):
    """A decimal string (or an exactly parsed JSON number); checked against the currency later."""

    default_error_messages = {"invalid": 'Amount must be a decimal string such as "12.50".'}

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, int):
            return Decimal(data)
        if isinstance(data, (str, Decimal)):
            return data
        self.fail("invalid")

    def to_representation(self, value):
        return str(value)


class TransactionCreateInput(serializers.Serializer):
    amount = AmountField()
    currency = serializers.CharField(max_length=3, min_length=3)
    occurred_at = AwareDateTimeField(required=False)
    reference = serializers.CharField(max_length=140, required=False, allow_blank=True, default="")
    description = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")

    def validate_currency(self, value):
        try:
            return normalize_currency(value)
        except MoneyError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs):
        try:
            attrs["amount"] = parse_amount(attrs["amount"], attrs["currency"])
        except MoneyError as exc:
            raise serializers.ValidationError({"amount": str(exc)}) from None
        return attrs


class ApproveInput(serializers.Serializer):
    reason = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")
    expected_version = serializers.IntegerField(min_value=1, required=False)


class RejectInput(serializers.Serializer):
    reason = serializers.CharField(max_length=1000)
    expected_version = serializers.IntegerField(min_value=1, required=False)


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
        ]

    def get_amount(self, obj) -> str:
        return format_amount(obj.amount, obj.currency)


class DecisionOutput(TransactionOutput):
    """Schema only: the transaction plus the position of the decision's event."""

    position = serializers.IntegerField(read_only=True)

    class Meta(TransactionOutput.Meta):
        fields = TransactionOutput.Meta.fields + ["position"]
