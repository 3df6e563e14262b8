"""WSGI entry point: Django's WSGI handler, which core/asgi.py runs in a thread pool for plain HTTP requests."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
application = get_wsgi_application()
