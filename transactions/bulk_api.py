"""REST view for bulk decisions: validate the whole body, run transactions.bulk, answer each item's outcome."""
import re
from types import SimpleNamespace

from django.urls import reverse
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.fields import StrictIntegerField, StrictTextField
from core.idempotency import idempotent
from core.problems import problem_exception_handler
from core.schema import IDEMPOTENCY_KEY, PROBLEM_RESPONSES, Problem
from transactions import bulk
from transactions.api import CanDecide
from transactions.serializers import StrictObject, TransactionOutput, transaction_payload

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class TransactionIdField(serializers.UUIDField):
    """A transaction id as the API writes it (8-4-4-4-12 hex digits): not an integer, not 32 bare digits."""

    default_error_messages = {"invalid": "Must be a transaction id such as 3f0c2a1e-5b7d-4c8e-9f10-2a3b4c5d6e7f."}

    def to_internal_value(self, data):
        if not isinstance(data, str) or not _UUID.fullmatch(data):
            self.fail("invalid")
        return super().to_internal_value(data)


class BulkDecisionInput(StrictObject):
    """One decision: the transaction, what to do with it, why, and optionally the version it must be at."""

    id = TransactionIdField()
    action = serializers.ChoiceField(choices=bulk.ACTIONS)
    reason = StrictTextField(
        max_length=1000, multiline=True, required=False, allow_blank=True, default="",
        help_text="Required (not blank) for reject and reverse: an item without one is refused with its own 400",
    )
    expected_version = StrictIntegerField(min_value=1, required=False)


class BulkDecisionsInput(StrictObject):
    """1 to 500 decisions, run in order. Unknown fields, here or in an item, are refused."""

    # A ListField rather than many=True: the schema then says minItems and maxItems.
    decisions = serializers.ListField(child=BulkDecisionInput(), allow_empty=False, min_length=1, max_length=bulk.MAX_DECISIONS)


class BulkDecisionResult(serializers.Serializer):
    """Schema only: one item's outcome, in the order of the request."""

    id = serializers.UUIDField()
    action = serializers.ChoiceField(choices=bulk.ACTIONS)
    status = serializers.IntegerField(help_text="The HTTP status the item's own request would have answered")
    transaction = TransactionOutput(required=False, help_text="The transaction after the decision (status 200 only)")
    position = serializers.IntegerField(required=False, help_text="The decision's event position (status 200 only)")
    problem = Problem(required=False, help_text="The problem+json body the item's own request would have answered (not 200)")


class BulkDecisionsOutput(serializers.Serializer):
    """Schema only: every item's outcome in the order of the request, and the highest position appended."""

    results = BulkDecisionResult(many=True)
    position = serializers.IntegerField(allow_null=True, help_text="The highest position appended; null when no item was decided")


def _result(item: bulk.BulkItemOutcome) -> dict:
    result = {"id": str(item.id), "action": item.action}
    if item.error is None:
        result.update(status=200, transaction=transaction_payload(item.decision.transaction), position=item.decision.position)
        return result
    # The body the item's own endpoint answers (core.problems), with that endpoint as its `instance`.
    path = reverse("transaction-detail", kwargs={"transaction_id": item.id}) + f"{item.action}/"
    problem = problem_exception_handler(item.error, {"request": SimpleNamespace(path=path)}).data
    result.update(status=problem["status"], problem=problem)
    return result


_EXAMPLE_ID = "3f0c2a1e-5b7d-4c8e-9f10-2a3b4c5d6e7f"


class TransactionBulkDecisionsApi(APIView):
    permission_classes = [CanDecide]

    @extend_schema(
        operation_id="transactions_bulk_decisions",
        summary="Approve, reject or reverse up to 500 transactions",
        description=(
            "Each item runs in order as its own command, exactly as its own request to `…/{id}/approve/`, "
            "`…/reject/` or `…/reverse/` would: a refused item (404, 409, 403, 400) answers its problem in "
            "`results` and the others go on; a second item on the same id sees what the first did. A malformed "
            "body (not a list, more than 500 items, an unknown action or field, a wrong type) is a 400 naming "
            "the field (`decisions[3].action`) and decides nothing. `position` is the highest position appended: "
            "pass it as `min_position` to read your writes. The projection runs once for the batch."
        ),
        request=BulkDecisionsInput,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: BulkDecisionsOutput, **PROBLEM_RESPONSES(400, 401, 403, 409, 413, 422, 503)},
        examples=[
            OpenApiExample(
                "Approve one, reject another",
                value={
                    "decisions": [
                        {"id": _EXAMPLE_ID, "action": "approve", "reason": "matches the invoice", "expected_version": 1},
                        {"id": "9b1d4e2f-0c3a-4d5b-8e6f-7a8b9c0d1e2f", "action": "reject", "reason": "duplicate"},
                    ]
                },
                request_only=True,
            ),
            OpenApiExample(
                "One decided, one already decided",
                value={
                    "results": [
                        {
                            "id": _EXAMPLE_ID, "action": "approve", "status": 200, "position": 462,
                            "transaction": {
                                "id": _EXAMPLE_ID, "amount": "12.50", "currency": "EUR", "occurred_at": "2026-11-18T08:30:00Z",
                                "reference": "INV-7", "description": "", "status": "approved", "version": 2,
                                "created_at": "2026-11-21T06:40:40.142000Z", "decided_at": "2026-11-21T07:02:11.500000Z",
                                "decided_by": "admin", "decision_reason": "matches the invoice",
                            },
                        },
                        {
                            "id": "9b1d4e2f-0c3a-4d5b-8e6f-7a8b9c0d1e2f", "action": "reject", "status": 409,
                            "problem": {
                                "type": "urn:ledgerpulse:problem:transaction_not_pending", "title": "Conflict", "status": 409,
                                "detail": "Transaction 9b1d4e2f-0c3a-4d5b-8e6f-7a8b9c0d1e2f is already approved.",
                                "code": "transaction_not_pending",
                                "instance": "/api/transactions/9b1d4e2f-0c3a-4d5b-8e6f-7a8b9c0d1e2f/reject/",
                            },
                        },
                    ],
                    "position": 462,
                },
                response_only=True,
            ),
        ],
    )
    @idempotent
    def post(self, request):
        payload = BulkDecisionsInput(data=request.data)
        payload.is_valid(raise_exception=True)
        outcome = bulk.transaction_bulk_decide(
            decisions=payload.validated_data["decisions"],
            actor=request.user.get_username(),
            request_id=request.id,
            client_request_id=getattr(request, "client_request_id", None),
        )
        return Response({"results": [_result(item) for item in outcome.items], "position": outcome.position})
