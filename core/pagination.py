"""Cursor pagination: stable under concurrent inserts, opaque cursors, a bounded page size, strict input."""
from django.utils.dateparse import parse_datetime
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
        if cursor is False or (cursor is not None and cursor.position is not None and not _is_datetime(cursor.position)):
            raise ValidationError({"cursor": "not a cursor this API handed out"})
        return cursor


def _is_datetime(value: str) -> bool:
    try:
        return parse_datetime(value) is not None
    except ValueError:
        return False
