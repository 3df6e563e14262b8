"""Content negotiation that answers an unknown ?format= with a 400 naming it, not a bare 404."""
from django.http import Http404
from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import DefaultContentNegotiation


class StrictContentNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except Http404:
            # dict.fromkeys: the schema view has two renderers per format (yaml, yaml, json, json).
            formats = ", ".join(dict.fromkeys(renderer.format for renderer in renderers))
            raise ValidationError({"format": f"must be one of: {formats}"}) from None
