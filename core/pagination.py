"""Cursor pagination: stable under concurrent inserts, opaque cursors, a bounded page size, strict input."""
import re
from datetime import datetime

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination

from core.fields import parse_digits


class NewestFirstCursorPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200

    def get_page_size(self, request):
        # DRF quietly falls back to the default on a bad limit; a client should hear about it.
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        # ASCII digits only: str.isdigit() also takes "\u0661\u0662" and "\u00b2".
        size = parse_digits(raw)
        if size is None or not 1 <= size <= self.max_page_size:
            raise ValidationError({"limit": f"must be an integer from 1 to {self.max_page_size}, in ASCII digits"})
        return size

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            cursor = False
        # DRF checks a cursor's shape but not its position, which ends up compared with
        # created_at: a forged one would fail inside the query (a 500) instead of here.
        if cursor is False or (cursor is not None and cursor.position is not None and not _is_our_position(cursor.position)):
            raise ValidationError({"cursor": "not a cursor this API handed out"})
        return cursor


# What str(created_at) gives for the positions this paginator hands out: UTC, written +00:00.
# Anything else is forged; an offset beyond ±15:59 would even fail inside PostgreSQL (a 500).
_POSITION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?\+00:00")


def _is_our_position(value: str) -> bool:
    if not _POSITION.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value)  # the shape can still spell a 13th month
    except ValueError:
        return False
    return True
