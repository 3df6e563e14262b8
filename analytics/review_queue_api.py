"""REST view for the review queue: per-week decisions and time to decision, pending now (JSON or CSV)."""
import csv
import io

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.renderers import CSVRenderer
from analytics.review_queue_selectors import review_queue
from analytics.review_queue_serializers import ReviewQueueOutput, ReviewQueueQuery
from core.params import reject_blank_or_repeated, reject_unknown
from core.schema import PROBLEM_RESPONSES

CSV_COLUMNS = [
    "week_start", "approved", "rejected", "reversed", "decisions",
    "time_to_decision_p50_seconds", "time_to_decision_p90_seconds", "by_admin",
]
QUERY_NAMES = ("from", "to", "format")


def csv_text(weeks: list[dict]) -> str:
    """One row per week; `by_admin` as `actor=n` joined by `;` (usernames hold neither), nulls as empty cells."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for week in weeks:
        writer.writerow({**week, "by_admin": _inert(";".join(f"{a['actor']}={a['decisions']}" for a in week["by_admin"]))})
    return buffer.getvalue()


def _inert(cell: str) -> str:
    """A cell a spreadsheet would run as a formula (Django usernames may start with +, - or @) is quoted
    with a leading apostrophe, as OWASP advises for CSV: `@x=3` would otherwise be evaluated on opening."""
    return f"'{cell}" if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


class ReviewQueueApi(APIView):
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        summary="Review queue",
        description=(
            "Per week (of the decision, cut like weekly income): approvals, rejections and reversals, the time from "
            "submission to approval or rejection (p50 and p90 in whole seconds, nearest rank; null in a week without "
            "any) and decisions per admin; zero-filled for every week in [from, to] (default: the last 12). "
            "`pending` is now: transactions pending or awaiting a second approval, and the oldest one's age at "
            "read time. `as_of` is the last event position reflected. `?format=csv` or `Accept: text/csv` answers "
            "the weeks as CSV with a header row (`by_admin` as `actor=n;...`; the pending figures are JSON only)."
        ),
        parameters=[
            ReviewQueueQuery,
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"], description="Answer format"),
        ],
        responses={
            (200, "application/json"): ReviewQueueOutput,
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description=",".join(CSV_COLUMNS)),
            **PROBLEM_RESPONSES(400, 401, 403),
        },
        examples=[
            OpenApiExample(
                "One quiet week and one busy one",
                value={
                    "as_of": 812,
                    "time_zone": "Europe/Berlin",
                    "week_start_day": "monday",
                    "pending": {"count": 4, "oldest_submitted_at": "2026-11-20T08:15:02.118000Z", "oldest_age_seconds": 97311},
                    "weeks": [
                        {"week_start": "2026-11-09", "approved": 0, "rejected": 0, "reversed": 0, "decisions": 0,
                         "time_to_decision_p50_seconds": None, "time_to_decision_p90_seconds": None, "by_admin": []},
                        {"week_start": "2026-11-16", "approved": 17, "rejected": 2, "reversed": 1, "decisions": 20,
                         "time_to_decision_p50_seconds": 1260, "time_to_decision_p90_seconds": 30144,
                         "by_admin": [{"actor": "ana", "decisions": 12}, {"actor": "ben", "decisions": 8}]},
                    ],
                },
                response_only=True,
                status_codes=["200"],
            )
        ],
    )
    def get(self, request):
        reject_unknown(request.query_params, QUERY_NAMES)
        reject_blank_or_repeated(request.query_params, QUERY_NAMES)
        query = ReviewQueueQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        report = review_queue(start=query.validated_data.get("from"), end=query.validated_data.get("to"))
        if request.accepted_renderer.format == "csv":
            response = HttpResponse(csv_text(report.weeks), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = 'attachment; filename="review-queue.csv"'
            response["X-As-Of"] = str(report.as_of)
            return response
        return Response(
            {
                "as_of": report.as_of,
                "time_zone": report.time_zone,
                "week_start_day": report.week_start_day,
                "pending": report.pending,
                "weeks": report.weeks,
            }
        )
