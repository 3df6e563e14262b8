"""REST views for weekly income (JSON or CSV, read-your-writes, time travel), the summary and the snapshot."""
import csv
import io

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection
from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import payloads, selectors, waiting
from analytics.renderers import CSVRenderer
from analytics.weekly_income_cache import ANSWERS
from analytics.serializers import SnapshotOutput, SummaryOutput, WeeklyIncomeOutput, WeeklyIncomeQuery
from analytics.projection import CHECKPOINT
from analytics.snapshot import dashboard_snapshot
from core.errors import DomainError, InvalidInput
from core.fields import MAX_BIGINT, parse_digits
from core.params import reject_blank_or_repeated, reject_unknown
from core.request_threads import loop_waits, wait_on_loop
from core.problems import PROBLEM_CONTENT_TYPE, problem_body
from core.schema import PROBLEM_RESPONSES

MIN_POSITION_WAIT_SECONDS = 10.0
# The first four as before reversals (total is the net now), then the reversal columns.
CSV_COLUMNS = ["week_start", "currency", "total", "count", "gross", "reversed", "reversed_count", "net"]
# The query parameters, named once: a serializer instance deep-copies its fields, every time.
QUERY_NAMES = (*WeeklyIncomeQuery().fields, "format")
_KNOWN_NAMES = frozenset(QUERY_NAMES)
POSITION_NAMES = ("min_position", "at")
# Valid query shapes already parsed: dashboards ask the same few again and again.
_PARSED: dict[tuple, dict] = {}
_PARSED_MAX = 1024


class ProjectionBehind(DomainError):
    status_code = 503
    code = "projection_behind"
    title = "Projection not caught up"
    retry_after = 1


def _behind(request, position: int) -> Response:
    """503 for whoever cannot wait; the async view below waits instead and asks again."""
    problem = ProjectionBehind(f"the projection has not reached position {position} within {MIN_POSITION_WAIT_SECONDS:g} s; retry")
    response = Response(
        problem_body(status=503, code=problem.code, title=problem.title, detail=problem.detail, instance=request.path),
        status=503,
        content_type=PROBLEM_CONTENT_TYPE,
        headers={"Retry-After": str(problem.retry_after)},
    )
    response.wait_for_position = position
    return response


def _validated(query_params) -> dict:
    reject_unknown(query_params, QUERY_NAMES)
    reject_blank_or_repeated(query_params, QUERY_NAMES)
    query = WeeklyIncomeQuery(data=query_params)
    query.is_valid(raise_exception=True)
    return dict(query.validated_data)


def _parsed_query(query_params) -> dict:
    """WeeklyIncomeQuery's validated data; a query of a shape seen before (and valid) is not validated again.

    The shape is every parameter but the positions' values (time travel asks a new `at` each
    time), plus the week start setting (the range limit counts weeks). A position is read as
    StrictIntegerField reads it; one that field would refuse, or one given more than once, takes
    the serializer's path to its 400. Invalid queries are never kept: each gets its 400.
    """
    if not _KNOWN_NAMES.issuperset(query_params):
        return _validated(query_params)  # its 400 names the parameter this endpoint does not take
    positions = {}
    for name in POSITION_NAMES:
        if name in query_params:
            values = query_params.getlist(name)
            # Repeated (`?at=4&at=1`) takes the full path too: the canonical copy below would
            # collapse the repeat into one value before reject_blank_or_repeated could see it.
            number = parse_digits(values[0]) if len(values) == 1 else None
            if number is None or number > MAX_BIGINT:
                return _validated(query_params)
            positions[name] = number
    key = (settings.ANALYTICS_WEEK_START,
           *((name, None if name in positions else tuple(query_params.getlist(name))) for name in QUERY_NAMES if name in query_params))
    shape = _PARSED.get(key)
    if shape is None:
        canonical = query_params.copy()
        for name in positions:
            # Any valid position validates alike: none of the checks between fields reads its value.
            canonical.setlist(name, ["0"])
        shape = _validated(canonical)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = shape
    return {**shape, **positions}


def _check_position(field: str, position: int, last: int) -> None:
    if position > last:
        # A position the log has not handed out cannot be waited for: say so at once.
        raise InvalidInput(field, f"no event at position {position}: the log ends at {last}")


def _json_answer(body: bytes) -> HttpResponse:
    # What DRF's Response with JSONRenderer would send (its Vary/Allow headers come from finalize_response).
    return HttpResponse(body, content_type="application/json")


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
            "Income per week and currency, zero-filled for every week in [from, to] and every currency shown: `gross` "
            "and `count` are the approvals whose occurred_at falls in the week, `reversed` and `reversed_count` the "
            "reversals recorded during the week (a reversal counts in the week it happened, so a closed week never "
            "changes), and `total` = `net` = gross - reversed, which can be negative. `as_of` is the last event position reflected. `min_position` waits (up to 10 s) for the "
            "projection to reach a position you wrote (read-your-writes), holding no server thread or database "
            "connection while it waits; a position beyond the end of the log is a 400 at once. `at` answers as of an "
            "earlier position, read from each week's history (it waits like `min_position` if the projection has not "
            "applied it yet). `?format=csv` or `Accept: text/csv` streams CSV with a header row."
        ),
        parameters=[
            WeeklyIncomeQuery,
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"], description="Answer format"),
        ],
        responses={
            (200, "application/json"): WeeklyIncomeOutput,
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description=",".join(CSV_COLUMNS)),
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
                        {"week_start": "2026-11-09", "currency": "EUR", "total": "0.00", "count": 0, "gross": "0.00",
                         "reversed": "0.00", "reversed_count": 0, "net": "0.00"},
                        {"week_start": "2026-11-16", "currency": "EUR", "total": "1039.75", "count": 3, "gross": "1089.75",
                         "reversed": "50.00", "reversed_count": 1, "net": "1039.75"},
                    ],
                },
                response_only=True,
                status_codes=["200"],
            )
        ],
    )
    def get(self, request):
        params = _parsed_query(request.query_params)
        # The weeks are fixed here, once: the answer's cache key names them (the default range moves with the clock).
        weeks = selectors.resolve_range(params.get("from"), params.get("to"))
        currency = params.get("currency")
        window = {"start": weeks[0], "end": weeks[-1], "currency": currency}
        field = "at" if "at" in params else "min_position" if "min_position" in params else None
        as_csv = request.accepted_renderer.format == "csv"
        # `Accept: application/json; indent=4` asks DRF's renderer for indented JSON: that one is rendered as before.
        cacheable = not as_csv and "indent" not in (request.accepted_media_type or "")
        if field == "at":
            # The checks and the history in one statement: time travel asks a new position each time, so an
            # answer kept for a repeat would cost this read a round trip of its own more often than it saves one.
            travel = selectors.weekly_income_at_checked(position=params["at"], **window)
            _check_position("at", params["at"], travel.last)
            if travel.report is None:
                # `at` reads the buckets' history, complete only up to what the projection applied.
                return _behind(request, params["at"])
            report, key = travel.report, None
        else:
            version = None
            if field:
                last, applied, version = selectors.log_and_checkpoint()
                _check_position(field, params[field], last)
                if applied < params[field]:
                    return _behind(request, params[field])
            elif cacheable:
                applied, version = selectors.checkpoint_state()
            # Everything the body depends on: the rows' state (position and checkpoint version), what was asked,
            # and the settings that cut the weeks. Once the projection moves or a rebuild rewrites, the version differs.
            asked = (weeks[0], weeks[-1], currency, settings.ANALYTICS_TIME_ZONE, settings.ANALYTICS_WEEK_START)
            key = None
            if cacheable and version is not None:
                key = ("now", applied, version, *asked)
                body = ANSWERS.get(key)
                if body is not None:
                    return _json_answer(body)
            report = selectors.weekly_income(**window)
            if report.version is not None:
                # Kept under the state the rows statement itself read: the checkpoint may have moved since the check.
                key = ("now", report.as_of, report.version, *asked)

        if as_csv:
            response = StreamingHttpResponse(_csv_lines(report), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = 'attachment; filename="weekly-income.csv"'
            response["X-As-Of"] = str(report.as_of)
            return response
        if not cacheable:
            return Response(payloads.weekly_income_body(report))
        body = payloads.weekly_income_json(report)
        if key is not None:
            ANSWERS.put(key, body)
        return _json_answer(body)


_weekly_income = WeeklyIncomeApi.as_view()


def _release_connection() -> None:
    # The view's own connection goes back to the pool before a long wait. Inside an outer
    # transaction (tests) there is nothing to hand back.
    if not connection.in_atomic_block:
        connection.close()


def weekly_income_view(request, *args, **kwargs):
    """The weekly income endpoint: `min_position` / `at` wait for the projection on the server's event loop.

    The DRF view answers whatever it can at once. When the projection is behind, the server
    (core/asgi.py, which marks the requests it waits for) gets the 503 back marked to wait: it
    awaits the position on its loop, with this thread and the database connection back in their
    pools, and runs the request again. Called any other way (the test client, a plain WSGI
    server), the view waits here, in its thread.
    """
    response = _weekly_income(request, *args, **kwargs)
    position = getattr(response, "wait_for_position", None)
    if position is None:
        return response
    if loop_waits(request):
        return wait_on_loop(response, position=position, timeout=MIN_POSITION_WAIT_SECONDS)
    _release_connection()
    if not async_to_sync(waiting.wait_for_position)(position, timeout=MIN_POSITION_WAIT_SECONDS):
        return response
    return _weekly_income(request, *args, **kwargs)


# drf-spectacular documents the endpoint from the DRF view; CSRF is the DRF view's business.
weekly_income_view.cls = WeeklyIncomeApi
weekly_income_view.initkwargs = {}
weekly_income_view.csrf_exempt = True


class WeeklySummaryApi(APIView):
    @extend_schema(
        summary="Income summary per currency",
        description="This week against last week, and the last 4 weeks against the 4 before: net (`total`), `gross` and "
        "`reversed` per period, with exact percent changes of the net, measured against the earlier period's size "
        "(null when the earlier period's net was zero).",
        responses={200: SummaryOutput, **PROBLEM_RESPONSES(401, 403)},
    )
    def get(self, request):
        return Response({"as_of": selectors.projection_position(CHECKPOINT), "results": selectors.weekly_summary()})


class DashboardSnapshotApi(APIView):
    @extend_schema(
        summary="Dashboard snapshot",
        description="The same object the websocket sends on connect: the last 12 weeks and the pending queue.",
        responses={200: SnapshotOutput, **PROBLEM_RESPONSES(401, 403)},
    )
    def get(self, request):
        return Response(dashboard_snapshot())
