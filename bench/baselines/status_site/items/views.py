"""The plain DRF endpoint: one UPDATE of a status column."""
from rest_framework.response import Response
from rest_framework.views import APIView

from items.models import Item


class ApproveItem(APIView):
    def post(self, request, item_id):
        updated = Item.objects.filter(pk=item_id, status="pending").update(status="approved")
        return Response({"id": item_id, "status": "approved" if updated else "unchanged"})
