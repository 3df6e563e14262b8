"""Currencies and exact money: Decimal at the edges, integer minor units inside."""
import re
from decimal import Decimal, localcontext

from iso4217 import Currency

# ASCII digits only, no padding, no exponent: "\u0661\u0662", "\u00a012.50" and "1e3" are refused.
_DECIMAL_STRING = re.compile(r"-?[0-9]+(\.[0-9]+)?")
# One transaction is at most 10^15 - 1 minor units (9,999,999,999,999.99 EUR): beyond any
# real payment, and small enough that the sums stay provably exact (see docs/api.md, "Limits").
MAX_AMOUNT_MINOR = 10**15 - 1
# Totals are NUMERIC(38, 0) in minor units. Positions are bigint, so the log holds fewer than
# 2^63 events; 2^63 * 10^15 < 10^34 < 10^38: no bucket can outgrow its column.
TOTAL_DIGITS = 38
# Decimal's default context keeps 28 digits; a 38-digit total must not be rounded.
_EXACT_DIGITS = 60


class MoneyError(ValueError):
    """An amount or currency that cannot be money."""


def _exponents() -> dict[str, int]:
    # Funds, metals and test codes (XAU, XTS, ...) have no minor unit: not payable.
    return {c.code: c.exponent for c in Currency if c.exponent is not None}


CURRENCY_EXPONENTS: dict[str, int] = _exponents()


def currency_exponent(code: str) -> int:
    try:
        return CURRENCY_EXPONENTS[code]
    except KeyError:
        raise MoneyError(f"{code!r} is not an ISO 4217 currency code") from None


def normalize_currency(code: str) -> str:
    # isascii() first: isalpha() and upper() would also fold "\u0131nr" (a dotless i) into "INR".
    if not isinstance(code, str) or len(code) != 3 or not (code.isascii() and code.isalpha()):
        raise MoneyError("currency must be an ISO 4217 code of three ASCII letters")
    upper = code.upper()
    currency_exponent(upper)
    return upper


def parse_amount(value, currency: str) -> Decimal:
    """A positive Decimal with no more fraction digits than the currency allows."""
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, str) and _DECIMAL_STRING.fullmatch(value):
        amount = Decimal(value)
    else:
        # Floats (and bools, and "1e3" strings) are refused: money is never binary floating point.
        raise MoneyError('amount must be a decimal string such as "12.50"')
    if not amount.is_finite():
        raise MoneyError("amount must be a finite number")
    if amount <= 0:
        raise MoneyError("amount must be greater than zero")
    exponent = currency_exponent(currency)
    quantum = Decimal(1).scaleb(-exponent)
    if amount.adjusted() >= 20:
        # Far past the limit; refused before quantize, which would need more digits than it has.
        raise MoneyError(f"amount must be at most {format_minor_units(MAX_AMOUNT_MINOR, currency)} {currency}")
    with localcontext(prec=_EXACT_DIGITS):
        if amount != amount.quantize(quantum):
            raise MoneyError(f"{currency} allows at most {exponent} decimal places")
        if amount.scaleb(exponent) > MAX_AMOUNT_MINOR:
            raise MoneyError(f"amount must be at most {format_minor_units(MAX_AMOUNT_MINOR, currency)} {currency}")
        return amount.quantize(quantum)


def to_minor_units(amount: str | Decimal, currency: str) -> int:
    """Exact conversion: "12.50" EUR -> 1250; refuses anything that would round."""
    exponent = currency_exponent(currency)
    with localcontext(prec=_EXACT_DIGITS):
        scaled = Decimal(amount).scaleb(exponent)
        if scaled != scaled.to_integral_value():
            raise MoneyError(f"{amount} {currency} has more than {exponent} decimal places")
        return int(scaled)


def format_minor_units(minor: int, currency: str) -> str:
    """1250 EUR -> "12.50"; 1250 JPY -> "1250"."""
    exponent = currency_exponent(currency)
    with localcontext(prec=_EXACT_DIGITS):
        return str(Decimal(int(minor)).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent)))


def format_amount(amount: Decimal, currency: str) -> str:
    exponent = currency_exponent(currency)
    with localcontext(prec=_EXACT_DIGITS):
        return str(Decimal(amount).quantize(Decimal(1).scaleb(-exponent)))
