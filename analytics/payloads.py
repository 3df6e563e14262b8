"""Weekly income's JSON body built and encoded by plain functions: the bytes DRF's JSONRenderer writes, without its per-request work."""
from __future__ import annotations

import json

from analytics.selectors import WeeklyIncomeReport

# DRF's JSONRenderer with its default settings (COMPACT_JSON, UNICODE_JSON, STRICT_JSON).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def weekly_income_body(report: WeeklyIncomeReport) -> dict:
    return {"time_zone": report.time_zone, "week_start_day": report.week_start_day, "as_of": report.as_of, "results": report.rows}


def weekly_income_json(report: WeeklyIncomeReport) -> bytes:
    text = _ENCODER.encode(weekly_income_body(report))
    # As DRF does: U+2028/U+2029 are valid JSON but end a line in JavaScript.
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()
