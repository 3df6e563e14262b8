"""CSV for weekly income: chosen by `?format=csv` or `Accept: text/csv`."""
import json

from rest_framework.renderers import BaseRenderer


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        # Successful CSV answers stream past this renderer; what reaches it is an
        # error body, which stays problem+json (the response sets that content type).
        return json.dumps(data).encode()
