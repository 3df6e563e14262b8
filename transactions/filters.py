"""Query filters for the transactions list."""
from datetime import timezone

import django_filters
from django.core.exceptions import ValidationError
from django_filters.fields import IsoDateTimeField

from core.money import MoneyError, normalize_currency

from transactions.models import Transaction, TransactionStatus


def validate_currency(value: str) -> None:
    try:
        normalize_currency(value)
    except MoneyError as exc:
        raise ValidationError(str(exc)) from None


class UtcIsoDateTimeField(IsoDateTimeField):
    """ISO 8601 in, UTC out: PostgreSQL refuses offsets beyond ±15:59 that Python accepts."""

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(timezone.utc)
        except OverflowError:
            raise ValidationError("datetime out of range") from None


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class TransactionFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=TransactionStatus.choices)
    currency = django_filters.CharFilter(method="filter_currency", validators=[validate_currency])
    occurred_after = UtcIsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = UtcIsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")
    amount_min = django_filters.NumberFilter(field_name="amount", lookup_expr="gte")
    amount_max = django_filters.NumberFilter(field_name="amount", lookup_expr="lte")
    reference = django_filters.CharFilter(field_name="reference", lookup_expr="exact")

    class Meta:
        model = Transaction
        fields = []

    def filter_currency(self, queryset, name, value):
        return queryset.filter(currency=value.upper())
