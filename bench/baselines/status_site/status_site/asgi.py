"""ASGI entry point of the baseline site, shaped like the product's (core/asgi.py): Django's WSGI handler on a thread pool."""
import os

from a2wsgi import WSGIMiddleware
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "status_site.settings")
application = WSGIMiddleware(get_wsgi_application(), workers=int(os.environ.get("WEB_THREADS", "8")))
