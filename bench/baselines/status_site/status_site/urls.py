"""/healthz and POST /items/<id>/approve/."""
from django.http import HttpResponse
from django.urls import path

from items.views import ApproveItem


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [path("healthz", healthz), path("items/<int:item_id>/approve/", ApproveItem.as_view())]
