"""REST views for weekly income and the dashboard snapshot."""
import time

from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import selectors
from analytics.serializers import WeeklyIncomeQuery
from analytics.snapshot import dashboard_snapshot
from core.errors import DomainError

MIN_POSITION_WAIT_SECONDS = 10.0
POLL_SECONDS = 0.05


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


class WeeklyIncomeApi(APIView):
    def get(self, request):
        query = WeeklyIncomeQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        if "min_position" in params:
            wait_for_position(params["min_position"])
        report = selectors.weekly_income(start=params.get("from"), end=params.get("to"), currency=params.get("currency"))
        return Response(
            {
                "time_zone": report.time_zone,
                "week_start_day": report.week_start_day,
                "as_of": report.as_of,
                "results": report.rows,
            }
        )


class DashboardSnapshotApi(APIView):
    def get(self, request):
        return Response(dashboard_snapshot())
