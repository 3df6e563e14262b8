"""REST views for transactions: validate input, call one command or selector, serialize."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from core import eventstore
from core.idempotency import idempotent
from core.pagination import NewestFirstCursorPagination
from core.params import reject_blank_or_repeated, reject_unknown
from core.permissions import IsStaff, staff_with
from core.schema import CURRENCY_PARAMETER, IDEMPOTENCY_KEY, PROBLEM_RESPONSES
from core.serializers import EventOutput
from transactions import selectors, services
from transactions.filters import TransactionFilter
from transactions.models import TransactionStatus
from transactions.serializers import (
    ApproveInput,
    DecisionOutput,
    RejectInput,
    ReverseInput,
    TransactionCreateInput,
    TransactionOutput,
    transaction_payload,
)

CanAdd = staff_with("transactions.add_transaction")
CanDecide = staff_with("transactions.approve_transaction")


def _origin(request) -> dict:
    """Who asked, for the event's metadata: the user, our request id and the client's own, if it sent one."""
    return {
        "actor": request.user.get_username(),
        "request_id": request.id,
        "client_request_id": getattr(request, "client_request_id", None),
    }


class TransactionListCreateApi(APIView):
    def get_permissions(self):
        return [CanAdd()] if self.request.method == "POST" else [IsStaff()]

    @extend_schema(
        operation_id="transactions_list",
        summary="List transactions",
        description="Newest first, cursor-paginated: follow `next` until it is null.",
        parameters=[
            OpenApiParameter(
                "status", str, enum=[value for value, _ in TransactionStatus.choices], many=True, style="form", explode=False,
                description="One status or several, comma-separated: `pending,awaiting_second_approval` (an unknown or empty one is a 400)",
            ),
            OpenApiParameter("currency", CURRENCY_PARAMETER, description="ISO 4217 code"),
            OpenApiParameter("occurred_after", OpenApiTypes.DATETIME, description="occurred_at >= this"),
            OpenApiParameter("occurred_before", OpenApiTypes.DATETIME, description="occurred_at < this"),
            OpenApiParameter("amount_min", OpenApiTypes.DECIMAL),
            OpenApiParameter("amount_max", OpenApiTypes.DECIMAL),
            OpenApiParameter("reference", str, description="Exact reference"),
            OpenApiParameter("cursor", str, description="Opaque; taken from `next` or `previous`"),
            OpenApiParameter("limit", int, description="Page size, at most 200 (default 50)"),
        ],
        responses={
            200: inline_serializer(
                "TransactionPage",
                {"next": serializers.URLField(allow_null=True), "previous": serializers.URLField(allow_null=True), "results": TransactionOutput(many=True)},
            ),
            **PROBLEM_RESPONSES(400, 401, 403),
        },
    )
    def get(self, request):
        if len(request.query_params.getlist("status")) > 1:
            # The one parameter that takes a list: say how to give it.
            raise ValidationError({"status": "give several statuses comma-separated in one status parameter"})
        reject_unknown(request.query_params, [*TransactionFilter.base_filters, "cursor", "limit", "format"])
        reject_blank_or_repeated(request.query_params, [*TransactionFilter.base_filters, "cursor", "limit"])
        filterset = TransactionFilter(request.query_params, queryset=selectors.transaction_list())
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        paginator = NewestFirstCursorPagination()
        page = paginator.paginate_queryset(filterset.qs, request, view=self)
        return paginator.get_paginated_response([transaction_payload(txn) for txn in page])

    @extend_schema(
        operation_id="transactions_create",
        summary="Submit a transaction",
        request=TransactionCreateInput,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: TransactionOutput, **PROBLEM_RESPONSES(400, 401, 403, 409, 413, 422, 503)},
        examples=[
            OpenApiExample(
                "An invoice payment",
                value={"amount": "12.50", "currency": "EUR", "occurred_at": "2026-11-18T09:30:00+01:00", "reference": "INV-7"},
                request_only=True,
            )
        ],
    )
    @idempotent
    def post(self, request):
        payload = TransactionCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        txn = services.transaction_submit(**_origin(request), **payload.validated_data)
        return Response(transaction_payload(txn), status=status.HTTP_201_CREATED)


class TransactionDetailApi(APIView):
    @extend_schema(operation_id="transactions_retrieve", summary="A transaction", responses={200: TransactionOutput, **PROBLEM_RESPONSES(401, 403, 404)})
    def get(self, request, transaction_id):
        return Response(transaction_payload(selectors.transaction_get(transaction_id=transaction_id)))


def _decision_response(decision: services.Decision) -> Response:
    body = transaction_payload(decision.transaction)
    body["position"] = decision.position
    return Response(body, status=status.HTTP_200_OK)


def _decision_input(request, serializer_class) -> dict:
    """The validated body; the usual approval sends `{}`, which needs no serializer to mean "no reason, any version"."""
    data = request.data
    if type(data) is dict and not data and serializer_class is ApproveInput:
        return {"reason": ""}
    payload = serializer_class(data=data)
    payload.is_valid(raise_exception=True)
    return payload.validated_data


class TransactionApproveApi(APIView):
    permission_classes = [CanDecide]

    @extend_schema(
        operation_id="transactions_approve",
        summary="Approve a pending transaction",
        description="Appends TransactionApproved. `position` is the event's position: pass it as `min_position` "
        "to the weekly income endpoint to read your write. Its submitter cannot approve it (403 `own_submission`). "
        "Under dual control (APPROVAL_DUAL_CONTROL: an amount at or above its currency's threshold) the first "
        "approval appends TransactionApprovalRecorded and the status becomes `awaiting_second_approval`; another "
        "user's approval then appends TransactionApproved, the first approver's is 403 `second_approver_required`.",
        request=ApproveInput,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: DecisionOutput, **PROBLEM_RESPONSES(400, 401, 403, 404, 409, 413, 422, 503)},
    )
    @idempotent
    def post(self, request, transaction_id):
        decision = services.transaction_approve(transaction_id=transaction_id, **_origin(request), **_decision_input(request, ApproveInput))
        return _decision_response(decision)


class TransactionRejectApi(APIView):
    permission_classes = [CanDecide]

    @extend_schema(
        operation_id="transactions_reject",
        summary="Reject a pending transaction",
        description="Appends TransactionRejected; from `pending` or `awaiting_second_approval`, by anyone with the "
        "permission (its submitter included: a withdrawal).",
        request=RejectInput,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: DecisionOutput, **PROBLEM_RESPONSES(400, 401, 403, 404, 409, 413, 422, 503)},
    )
    @idempotent
    def post(self, request, transaction_id):
        decision = services.transaction_reject(transaction_id=transaction_id, **_origin(request), **_decision_input(request, RejectInput))
        return _decision_response(decision)


class TransactionReverseApi(APIView):
    permission_classes = [CanDecide]

    @extend_schema(
        operation_id="transactions_reverse",
        summary="Reverse an approved transaction",
        description="Appends TransactionReversed (a refund, a chargeback, an approval by mistake); the status becomes "
        "`reversed`. Weekly income counts it against the week in which it happened; earlier weeks never change. "
        "409 `transaction_not_approved` unless the transaction is approved.",
        request=ReverseInput,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: DecisionOutput, **PROBLEM_RESPONSES(400, 401, 403, 404, 409, 413, 422, 503)},
    )
    @idempotent
    def post(self, request, transaction_id):
        decision = services.transaction_reverse(transaction_id=transaction_id, **_origin(request), **_decision_input(request, ReverseInput))
        return _decision_response(decision)


class TransactionEventsApi(APIView):
    @extend_schema(
        operation_id="transactions_events",
        summary="A transaction's events, oldest first",
        responses={200: inline_serializer("EventList", {"results": EventOutput(many=True)}), **PROBLEM_RESPONSES(401, 403, 404)},
    )
    def get(self, request, transaction_id):
        selectors.transaction_get(transaction_id=transaction_id)
        events = eventstore.read_stream(transaction_id)
        return Response({"results": EventOutput(events, many=True).data})
