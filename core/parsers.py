"""JSON parsing that keeps numbers exact (12.50 is Decimal("12.50"), never a float) and refuses ambiguity."""
import json
from decimal import Decimal

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from core.fields import ExponentNumber


class DuplicateKey(ValueError):
    def __init__(self, key: str):
        self.key = key
        super().__init__(f'duplicate key "{key}"')


class DuplicateKeyError(ParseError):
    """{"amount": "1.00", "amount": "1000.00"}: which one the client meant is unknowable, so neither."""

    def __init__(self, key: str):
        self.field = key
        super().__init__(f'JSON parse error - the key "{key}" appears more than once in one object.')


def _refuse_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _number(literal: str) -> Decimal:
    # The literal is all we get to see of the exponent: Decimal("1e3") == Decimal("1000").
    if "e" in literal or "E" in literal:
        return ExponentNumber(literal)
    return Decimal(literal)


def _object(pairs) -> dict:
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise DuplicateKey(key)
        obj[key] = value
    return obj


def loads(text: str):
    return json.loads(text, parse_float=_number, parse_constant=_refuse_constant, object_pairs_hook=_object)


class DecimalJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            return loads(stream.read().decode(encoding))
        except DuplicateKey as exc:
            raise DuplicateKeyError(exc.key) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}.") from None
        except RecursionError:
            # [[[[...]]]] a few thousand deep fits in 1 MiB and would otherwise be a 500.
            raise ParseError("JSON parse error - the document is nested too deeply.") from None
