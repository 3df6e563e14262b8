"""Money: Decimal at the edges, exact integer minor units inside, per-currency precision."""
from decimal import Decimal

import pytest

from core.money import MoneyError, format_minor_units, normalize_currency, parse_amount, to_minor_units


@pytest.mark.parametrize(
    ("value", "currency", "expected"),
    [("12.50", "EUR", "12.50"), ("12.5", "EUR", "12.50"), ("1000", "JPY", "1000"), ("1.234", "KWD", "1.234"), (Decimal("7"), "USD", "7.00")],
)
def test_it_accepts_amounts_within_the_currencys_precision(value, currency, expected):
    assert str(parse_amount(value, currency)) == expected


@pytest.mark.parametrize(
    "value", ["0", "-1.00", "12.505", "NaN", "Infinity", "1e3", "abc", 12.5, True, Decimal("NaN"), "1000000000000000"]
)
def test_it_refuses_amounts_that_are_not_positive_exact_money(value):
    with pytest.raises(MoneyError):
        parse_amount(value, "EUR")


def test_it_refuses_fractions_of_a_yen():
    with pytest.raises(MoneyError, match="0 decimal places"):
        parse_amount("100.5", "JPY")


@pytest.mark.parametrize("code", ["XXX", "ABC", "EU", "EURO", "XAU", ""])
def test_it_refuses_codes_that_are_not_payable_iso_4217_currencies(code):
    with pytest.raises(MoneyError):
        normalize_currency(code)


@pytest.mark.parametrize("code", ["\u0131nr", "\u0130NR", "\uff25\uff35\uff32", "EU\u0280"])
def test_it_refuses_letters_outside_ascii_that_upper_case_would_fold_into_a_code(code):
    with pytest.raises(MoneyError, match="three ASCII letters"):
        normalize_currency(code)


def test_it_normalizes_currency_codes_to_upper_case():
    assert normalize_currency("eur") == "EUR"


@pytest.mark.parametrize(
    ("amount", "currency", "minor"), [("12.50", "EUR", 1250), ("1000", "JPY", 1000), ("1.234", "KWD", 1234), ("0.01", "USD", 1)]
)
def test_minor_units_round_trip_exactly(amount, currency, minor):
    assert to_minor_units(amount, currency) == minor
    assert format_minor_units(minor, currency) == amount


def test_converting_an_over_precise_amount_to_minor_units_refuses_to_round():
    with pytest.raises(MoneyError):
        to_minor_units("0.005", "EUR")


@pytest.mark.parametrize("amount", ["9" * 100, "1" + "0" * 19, "9" * 30 + ".5"])
def test_an_amount_far_beyond_the_limit_is_refused_not_a_crash(amount):
    with pytest.raises(MoneyError, match="at most 9999999999999.99 EUR"):
        parse_amount(amount, "EUR")
