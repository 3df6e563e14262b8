"""REST views for transactions: validate input, call one command or selector, serialize."""
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from core import eventstore
from core.idempotency import idempotent
from core.pagination import NewestFirstCursorPagination
from core.permissions import IsStaff, staff_with
from core.serializers import EventOutput
from transactions import selectors, services
from transactions.filters import TransactionFilter
from transactions.serializers import (
    ApproveInput,
    RejectInput,
    TransactionCreateInput,
    TransactionOutput,
)

CanAdd = staff_with("transactions.add_transaction")
CanDecide = staff_with("transactions.approve_transaction")


def _actor(request) -> str:
    return request.user.get_username()


class TransactionListCreateApi(APIView):
    def get_permissions(self):
        return [CanAdd()] if self.request.method == "POST" else [IsStaff()]

    def get(self, request):
        filterset = TransactionFilter(request.query_params, queryset=selectors.transaction_list())
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        paginator = NewestFirstCursorPagination()
        page = paginator.paginate_queryset(filterset.qs, request, view=self)
        return paginator.get_paginated_response(TransactionOutput(page, many=True).data)

    @idempotent
    def post(self, request):
        payload = TransactionCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        txn = services.transaction_submit(actor=_actor(request), request_id=request.id, **payload.validated_data)
        return Response(TransactionOutput(txn).data, status=status.HTTP_201_CREATED)


class TransactionDetailApi(APIView):
    def get(self, request, transaction_id):
        return Response(TransactionOutput(selectors.transaction_get(transaction_id=transaction_id)).data)


def _decision_response(decision: services.Decision) -> Response:
    body = TransactionOutput(decision.transaction).data
    body["position"] = decision.position
    return Response(body, status=status.HTTP_200_OK)


class TransactionApproveApi(APIView):
    permission_classes = [CanDecide]

    @idempotent
    def post(self, request, transaction_id):
        payload = ApproveInput(data=request.data)
        payload.is_valid(raise_exception=True)
        decision = services.transaction_approve(
            transaction_id=transaction_id, actor=_actor(request), request_id=request.id, **payload.validated_data
        )
        return _decision_response(decision)


class TransactionRejectApi(APIView):
    permission_classes = [CanDecide]

    @idempotent
    def post(self, request, transaction_id):
        payload = RejectInput(data=request.data)
        payload.is_valid(raise_exception=True)
        decision = services.transaction_reject(
            transaction_id=transaction_id, actor=_actor(request), request_id=request.id, **payload.validated_data
        )
        return _decision_response(decision)


class TransactionEventsApi(APIView):
    def get(self, request, transaction_id):
        selectors.transaction_get(transaction_id=transaction_id)
        events = eventstore.read_stream(transaction_id)
        return Response({"results": EventOutput(events, many=True).data})
