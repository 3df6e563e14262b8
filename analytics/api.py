"""REST views for weekly income (JSON or CSV, read-your-writes, time travel), the summary and the snapshot."""
import csv
import io
import time

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import selectors
from analytics.renderers import CSVRenderer
from analytics.serializers import SnapshotOutput, SummaryOutput, WeeklyIncomeOutput, WeeklyIncomeQuery
from analytics.snapshot import dashboard_snapshot
from core import eventstore
from core.errors import DomainError, InvalidInput
from core.params import reject_blank
from core.schema import PROBLEM_RESPONSES

MIN_POSITION_WAIT_SECONDS = 10.0
POLL_SECONDS = 0.05
CSV_COLUMNS = ["week_start", "currency", "total", "count"]


class ProjectionBehind(DomainError):
    status_code = 503
    code = "projection_behind"
    title = "Projection not caught up"
    retry_after = 1


def wait_for_position(position: int, *, timeout: float | None = None) -> None:
    """Read-your-writes: block until the projection has applied `position`, or give up."""
    timeout = MIN_POSITION_WAIT_SECONDS if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while selectors.projection_position() < position:
        if time.monotonic() >= deadline:
            raise ProjectionBehind(f"the projection has not reached position {position} within {timeout:g} s; retry")
        time.sleep(POLL_SECONDS)


def _csv_lines(report):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in report.rows:
        writer.writerow(row)
        # Hand each line on as it is written instead of building the whole file.
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()


class WeeklyIncomeApi(APIView):
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        summary="Weekly income",
        description=(
            "Approved income per week and currency, zero-filled for every week in [from, to] and every currency "
            "shown. `as_of` is the last event position reflected. `min_position` waits (up to 10 s) for the "
            "projection to reach a position you wrote (read-your-writes); `at` answers as of an earlier position, "
            "replayed from the event log. `?format=csv` or `Accept: text/csv` streams CSV with a header row."
        ),
        parameters=[
            WeeklyIncomeQuery,
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"], description="Answer format"),
        ],
        responses={
            (200, "application/json"): WeeklyIncomeOutput,
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="week_start,currency,total,count"),
            **PROBLEM_RESPONSES(400, 401, 403, 503),
        },
        examples=[
            OpenApiExample(
                "Two weeks, one currency",
                value={
                    "time_zone": "UTC",
                    "week_start_day": "monday",
                    "as_of": 461,
                    "results": [
                        {"week_start": "2026-11-09", "currency": "EUR", "total": "0.00", "count": 0},
                        {"week_start": "2026-11-16", "currency": "EUR", "total": "1089.75", "count": 3},
                    ],
                },
                response_only=True,
                status_codes=["200"],
            )
        ],
    )
    def get(self, request):
        reject_blank(request.query_params, [*WeeklyIncomeQuery().fields, "format"])
        query = WeeklyIncomeQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        window = {"start": params.get("from"), "end": params.get("to"), "currency": params.get("currency")}
        if "at" in params:
            if params["at"] > eventstore.last_position():
                raise InvalidInput("at", f"no event at position {params['at']} yet")
            report = selectors.weekly_income_at(position=params["at"], **window)
        else:
            if "min_position" in params:
                wait_for_position(params["min_position"])
            report = selectors.weekly_income(**window)

        if request.accepted_renderer.format == "csv":
            response = StreamingHttpResponse(_csv_lines(report), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = 'attachment; filename="weekly-income.csv"'
            response["X-As-Of"] = str(report.as_of)
            return response
        return Response(
            {"time_zone": report.time_zone, "week_start_day": report.week_start_day, "as_of": report.as_of, "results": report.rows}
        )


class WeeklySummaryApi(APIView):
    @extend_schema(
        summary="Income summary per currency",
        description="This week against last week, and the last 4 weeks against the 4 before, with exact percent changes "
        "(null when the earlier period had no income).",
        responses={200: SummaryOutput, **PROBLEM_RESPONSES(401, 403)},
    )
    def get(self, request):
        return Response({"as_of": selectors.projection_position(), "results": selectors.weekly_summary()})


class DashboardSnapshotApi(APIView):
    @extend_schema(
        summary="Dashboard snapshot",
        description="The same object the websocket sends on connect: the last 12 weeks and the pending queue.",
        responses={200: SnapshotOutput, **PROBLEM_RESPONSES(401, 403)},
    )
    def get(self, request):
        return Response(dashboard_snapshot())
