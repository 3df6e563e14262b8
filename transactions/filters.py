"""Query filters for the transactions list."""
import re
from datetime import timezone

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django_filters.fields import BaseCSVField, IsoDateTimeField

from core.fields import is_iso_datetime
from core.money import MoneyError, normalize_currency

from transactions.models import Transaction, TransactionStatus

_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
# Behind a datetime is_iso_datetime() accepted, only its offset can end like this.
_ENDS_WITH_OFFSET = re.compile(r"([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)$")


def validate_currency(value: str) -> None:
    try:
        normalize_currency(value)
    except MoneyError as exc:
        raise ValidationError(str(exc)) from None


class UtcIsoDateTimeField(IsoDateTimeField):
    """ISO 8601 in ASCII with an offset in, UTC out: PostgreSQL refuses offsets beyond ±15:59 that Python accepts.

    Any instant from 0001-01-01 to 9999-12-31 UTC is accepted; one that cannot be expressed
    in UTC (0001-01-01T00:00:00+23:00) is a 400.
    """

    def to_python(self, value):
        # Django's parser also takes other scripts' digits ("\u0662\u0660\u0662\u0666-...") and a trailing NBSP.
        if value not in self.empty_values and not is_iso_datetime(value):
            raise ValidationError("must be an ISO 8601 datetime in ASCII, e.g. 2026-11-21T09:30:00+01:00")
        if value not in self.empty_values and not _ENDS_WITH_OFFSET.search(value):
            # Django would read it in the server's time zone: a guess. Create refuses it, and so do we.
            raise ValidationError("must carry a UTC offset, e.g. 2026-11-21T09:30:00+01:00")
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(timezone.utc)
        except OverflowError:
            raise ValidationError("datetime out of range") from None


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class AsciiDecimalField(forms.DecimalField):
    """A plain decimal in ASCII digits: Decimal() alone also takes "1e3", "\u0661\u0662" and padding."""

    def to_python(self, value):
        if value not in self.empty_values and not (isinstance(value, str) and len(value) <= 40 and _DECIMAL.fullmatch(value)):
            raise ValidationError('must be a decimal such as "12.50", in ASCII digits')
        return super().to_python(value)


class AsciiDecimalFilter(django_filters.NumberFilter):
    field_class = AsciiDecimalField


class NoEmptyItemsCSVField(BaseCSVField):
    """Comma-separated values where an empty item ("pending,") is a mistake, not "no filter"."""

    def clean(self, value):
        if value is not None and any(item.strip() == "" for item in value):
            raise ValidationError("must be one or more comma-separated values, none of them empty")
        return super().clean(value)


class StatusInFilter(django_filters.BaseInFilter, django_filters.ChoiceFilter):
    """`?status=pending,awaiting_second_approval`: one or more statuses, each a known one."""

    base_field_class = NoEmptyItemsCSVField


class TransactionFilter(django_filters.FilterSet):
    status = StatusInFilter(choices=TransactionStatus.choices)
    currency = django_filters.CharFilter(method="filter_currency", validators=[validate_currency])
    occurred_after = UtcIsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = UtcIsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")
    amount_min = AsciiDecimalFilter(field_name="amount", lookup_expr="gte")
    amount_max = AsciiDecimalFilter(field_name="amount", lookup_expr="lte")
    reference = django_filters.CharFilter(field_name="reference", lookup_expr="exact")

    class Meta:
        model = Transaction
        fields = []

    def filter_currency(self, queryset, name, value):
        return queryset.filter(currency=value.upper())
